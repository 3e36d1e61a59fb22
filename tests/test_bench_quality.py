"""The quality gate and the llama.cpp column of the sampling benchmark, on the real model, small."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ambient.bench import quality, sampling
from ambient.config import Config, load_config


@pytest.fixture
def config(tmp_path: Path, default_model_path: Path) -> Config:
    """The prepared default model; the bundled GGUF is joined into this home's models folder (about 1 s)."""
    return load_config(env={"AMBIENT_HOME": str(tmp_path)}).replace(model__path=str(default_model_path))


def test_gate() -> None:
    assert quality.passes_gate(0.001, 0.99, 0.005, 0.95)
    assert not quality.passes_gate(0.001, 0.97, 0.005, 0.95)  # under 98% top-1
    assert not quality.passes_gate(0.006, 0.99, 0.005, 0.95)  # less faithful than llama.cpp
    assert not quality.passes_gate(0.001, 0.985, 0.0001, 0.99)


def test_quality_on_the_real_model(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quality, "TEXTS", {"code": quality.CODE})
    monkeypatch.setattr(quality, "TOKENS_PER_TEXT", 96)
    result = quality.run(config)
    rows = {r["candidate"].split(":")[0].split(" (")[0]: r for r in result["rows"]}
    default = rows["ambient default"]
    assert default["positions"] == 96  # every position of the text is compared
    assert default["kl"] < 1e-6 and default["top1"] == 1.0, default  # float16 holds the weights exactly
    llama = rows["llama.cpp"]
    assert 0 < llama["kl"] < 0.1, llama  # llama.cpp's own arithmetic: close, not equal
    int8_all = rows["int8 every linear layer"]
    assert int8_all["kl"] > default["kl"]
    markdown = quality.to_markdown(result)
    assert "| candidate | mean KL (nats)" in markdown and "llama.cpp" in markdown


def test_llama_column(config: Config) -> None:
    out: dict[str, Any] | None = sampling._bench_llama(config, "The tide turns and the", 4, (1, 2), 1)
    assert out is not None
    assert out["decode_tps"] > 0 and out["prefill_s"] > 0
    assert set(out["branches"]) == {1, 2}
    assert out["branches"][2]["wall_s"] > 0
