"""Load: 50 WebSocket clients while 1,000 note saves arrive (compressed to 45 s), the tiny real model.

Bounded queues, latest wins, no client falls behind, bounded memory, and no event lost that
should have produced an offer: the latest save of every note gets a finished offer. The same
measurement writes the ``load`` section of BENCHMARKS.md (``ambient bench load``).
``AMBIENT_LOAD_SAVES`` and ``AMBIENT_LOAD_SECONDS`` change the size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ambient.config import load_config
from integrations.notes import bench_load as load

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


def test_many_clients_and_a_flood_of_saves_lose_no_latest_save(tmp_path: Path, tiny_model_path: Path) -> None:
    saves = int(os.environ.get("AMBIENT_LOAD_SAVES", str(load.SAVES)))
    seconds = float(os.environ.get("AMBIENT_LOAD_SECONDS", str(load.SECONDS)))
    config = load_config(env={"AMBIENT_HOME": str(tmp_path / "home")})
    r = load.measure(config, tiny_model_path, tmp_path, saves=saves, seconds=seconds)
    print("load:", r)
    assert r["lost"] == 0 and r["latest_offered"] == load.NOTES
    assert r["queue_max_waiting"] <= r["queue_bound"]
    assert r["offers"].get("streaming", 0) == 0 and r["offers"].get("failed", 0) == 0
    assert r["clients_disconnected_slow"] == 0
    assert r["events_per_client_min"] == r["events_per_client_max"]  # every client saw every event
    assert r["offers_seen_by_clients"] >= r["offers"]["done"]
    assert r["rss_end_mib"] - r["rss_start_mib"] < 150
    assert r["fds_end"] - r["fds_start"] < 20
