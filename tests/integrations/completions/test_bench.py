"""``ambient bench completions`` at a tiny size, so it cannot rot: the benchmark's own functions, a real
daemon on the tiny model, llama-cpp-python's server on the real bundled GGUF (2 tokens a choice), both
through the official openai SDK.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ambient.commands.bench import benchmarks
from ambient.config import load_config
from ambient.errors import InvalidInput
from ambient.models import default_gguf_path
from integrations.completions import bench
from integrations.completions.source import CompletionsSource
from tests.conftest import models_cache_dir

PROMPT = "The river runs past the old mill and under the stone bridge, and the miller's daughter counts"


def test_the_place_offers_its_benchmark() -> None:
    assert CompletionsSource.benchmarks() == {"completions": "integrations.completions.bench"}
    assert benchmarks()["completions"] == "integrations.completions.bench"
    assert bench.LONG  # minutes: not part of `ambient bench all`


def test_without_llama_cpp_it_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a)
    )
    with pytest.raises(InvalidInput, match=r"install llama-cpp-python\[server\] \(`make setup-server`\)"):
        bench.check_llama()


def test_the_benchmark_at_a_tiny_size(tmp_path: Path, tiny_model_path: Path) -> None:
    config = load_config(env={"AMBIENT_HOME": str(tmp_path / "user")})
    cfg = bench.bench_config(config, tiny_model_path, tmp_path / "home")
    gguf = default_gguf_path(models_cache_dir())
    n = 3
    result = bench.measure(cfg, gguf, PROMPT, tmp_path, threads=2, max_tokens=2, n=n, runs=1)

    assert result["section"] == "completions" and result["n"] == n and result["max_tokens"] == 2
    assert result["prompt_tokens"] > 10 and result["llama_prompt_tokens"] > 10
    assert set(result["cases"]) == {"plain", "echo", "no_logprobs"}
    for name, case in result["cases"].items():
        ambient = case["ambient_n"]
        assert len(ambient["times_s"]) == 1 and ambient["median_s"] > 0
        assert 1 <= ambient["tokens"][0] <= 2 * n  # the end of text may stop a choice early
        llama = case["llama"]
        assert llama["server_n"] >= 1 and llama["timed_requests"] >= 1 and llama["median_s"] > 0
        assert llama["requests"] == -(-n // llama["server_n"])  # as many requests as n choices take
        assert case["llama_over_ambient_n"] == pytest.approx(
            llama["median_s"] / ambient["median_s"], rel=0.02
        )
        if name == "no_logprobs":
            assert "ambient_1" not in case
        else:
            assert case["n_over_1"] == pytest.approx(
                ambient["median_s"] / case["ambient_1"]["median_s"], rel=0.02
            )
    echo = result["cases"]["echo"]["llama"]
    assert echo["timed_requests"] <= bench.LLAMA_ECHO_REQUESTS
    assert echo["estimated"] == (echo["requests"] > echo["timed_requests"])
    assert len(result["load_before"]) == 3 and len(result["load_after"]) == 3

    markdown = bench.to_markdown(result)
    assert markdown.startswith("## Completions: a Loom request through the openai SDK")
    assert "| echo true, logprobs 4 |" in markdown and "| echo false, no logprobs |" in markdown
    assert "The machine is shared" in markdown and "load average" in markdown
