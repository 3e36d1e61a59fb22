"""`ambient bench notes`, its parts on small sizes (the full run is `ambient bench notes`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ambient.config import load_config
from integrations.notes import bench

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


def test_idle_watching_uses_almost_no_cpu(tmp_path: Path) -> None:
    config = bench._bench_config(load_config(env={"AMBIENT_HOME": str(tmp_path / "h")}), tmp_path / "h", None)
    result = asyncio.run(bench._idle(config, tmp_path / "idle", count=300, seconds=1.0, polling_seconds=0.5))
    assert result["notes"] == 300 and result["events"] == 0
    assert result["core_percent"] < 5  # generous: the machine may be busy; the full run checks < 1 %
    assert "polling observer" in "\n".join(bench._idle_markdown(result))


def test_reusing_the_prefix_cache_gives_the_same_logprobs(tmp_path: Path, model_path: Path) -> None:
    config = load_config(env={"AMBIENT_HOME": str(tmp_path / "h")}).replace(
        model__path=str(model_path), model__device="cpu", memory__enabled=False
    )
    result = bench._prefix_reuse(config, sizes=(96,), repeats=1)
    [row] = result["rows"]
    assert 0 < row["reused_tokens"] < row["prompt_tokens"]
    assert row["max_logprob_diff"] < 1e-3
    assert "| **" in "\n".join(bench._prefix_markdown(result))


def test_markdown() -> None:
    summary = {"p50": 1.0, "p95": 2.0, "min": 0.5, "max": 3.0}
    result = {
        "quick": False,
        "model": "/m/gemma-3-270m",
        "load_average": [0.5, 0.4, 0.3],
        "cpus": 2,
        "latency": {
            "saves": 12,
            "quiet_ms": 250,
            "n": 4,
            "max_tokens": 8,
            "first_token_ms": summary,
            "recorded_ms": summary,
            "prefill_ms": summary,
            "prompt_tokens": 700,
            "note_chars": 3000,
            "no_prefix_cache": {"first_token_ms": {**summary, "p50": 4.0}, "prefill_ms": summary},
        },
        "idle": {
            "notes": 10000,
            "folders": 100,
            "seconds": 60.0,
            "cpu_s": 0.01,
            "core_percent": 0.02,
            "events": 0,
            "threads": 9,
            "polling": {"seconds": 15.0, "cpu_s": 3.0, "core_percent": 20.0},
        },
        "prefix": {"skipped": "model.backend = openai"},
    }
    md = bench.to_markdown(result)
    assert "**1.0 ms**" in md and "target < 1 %: met" in md and "**4.0× faster**" in md
    assert "Not measured: model.backend" in md
