"""`ambient bench latency` on the tiny model: it runs end to end and reports what it promises."""

from __future__ import annotations

from pathlib import Path

from ambient.bench import latency
from ambient.config import load_config


def test_latency_bench_measures_the_daemon_and_the_sampler(tmp_path: Path) -> None:
    config = load_config(env={"AMBIENT_HOME": str(tmp_path)}).replace(sampling__n=2)
    result = latency.run(config, events=4, models=("tiny", "nonsense"))
    tiny, skipped = result["models"]
    assert skipped == {"model": "nonsense", "skipped": "unknown model 'nonsense': use tiny or default"}
    for key in ("end_to_end_ms", "sampler_in_daemon_ms", "sampler_direct_ms", "overhead_ms"):
        assert 0 < tiny[key]["p50"] <= tiny[key]["p95"]
    assert tiny["end_to_end_ms"]["p50"] >= tiny["overhead_ms"]["p50"]
    markdown = latency.to_markdown(result)
    assert f"| tiny (2-layer test model) | {tiny['device']} |" in markdown
    assert "skipped: unknown model" in markdown and "Target: daemon overhead under 20 ms" in markdown
    assert not (tmp_path / "ambient.sqlite3").exists()  # the benchmark keeps its own store
