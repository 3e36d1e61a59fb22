"""`ambient bench soak`: the slope it reports, and a few seconds of the real thing (the full run is
`ambient bench soak --minutes 60`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ambient.config import load_config
from integrations.notes import bench_soak as soak
from integrations.notes.bench_load import bench_config

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


def test_the_slope_is_least_squares_per_minute() -> None:
    line = [(t, 100 + 0.5 * t / 60) for t in range(0, 600, 5)]
    assert soak.slope_per_min(line) == pytest.approx(0.5)
    # one high sample at each end moves an endpoint slope a lot, a fitted one little
    noisy = [(t, v + (3.0 if i in (0, len(line) - 1) else 0.0)) for i, (t, v) in enumerate(line)]
    assert abs(soak.slope_per_min(noisy) - 0.5) < 0.05
    assert soak.slope_per_min([(0, 1.0)]) == 0.0
    assert soak.slope_per_min([(5, 1.0), (5, 2.0)]) == 0.0


def _samples(minutes: int, grow_until_s: float) -> list[dict[str, float]]:
    """RSS that climbs 1 MiB/min until ``grow_until_s``, then stays flat."""
    out = []
    for t in range(0, minutes * 60 + 1, 5):
        rss = 400 + min(t, grow_until_s) / 60
        out.append({"t_s": float(t), "rss_mib": rss, "anon_mib": rss - 100, "threads": 13, "fds": 26})
    return out


def test_the_slope_skips_the_warm_up() -> None:
    samples = _samples(60, grow_until_s=600)
    r = soak._summary(samples, 100, {"done": 100, "dropped": 0}, {"clients": 5}, ((1, 1, 1), (2, 2, 2)))
    assert r["slope_from_min"] == 10 and r["slope_to_min"] == 60
    assert r["slope_samples"] == len([s for s in samples if s["t_s"] >= 600])
    assert r["rss_slope_mib_per_min"] == pytest.approx(0.0, abs=1e-3)
    assert r["rss_first_minute_mib"] == 401.0 and r["rss_last_minute_mib"] == 410.0
    text = soak.to_markdown(r)
    assert "from minute 10 to minute 60" in text and "Load average" in text
    # a run shorter than 30 minutes fits its last two thirds
    short = soak._summary(_samples(6, 0), 10, {"done": 10, "dropped": 0}, {}, ((1, 1, 1), (1, 1, 1)))
    assert short["slope_from_min"] == 2


def test_a_short_soak_with_clients_in_their_own_process(tmp_path: Path, tiny_model_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    config = load_config(env={"AMBIENT_HOME": str(tmp_path / "h")})
    cfg = bench_config(config, tiny_model_path, tmp_path / "home", folder)
    r = asyncio.run(soak._soak(cfg, folder, seconds=3.0, clients=2))
    assert r["saves"] >= 10 and r["clients"] == 2
    assert r["events_per_client_min"] > 0  # the child process's clients saw the daemon's events
    assert r["clients_disconnected_slow"] == 0
    assert r["samples"][0]["rss_mib"] > r["samples"][0]["anon_mib"] > 0
    assert "2 WebSocket clients in a child process" in soak.to_markdown(r)
