"""The tuning place: the daemon tunes when idle after every N new picks (tiny model, real picks and store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ambient import adapters, places
from ambient.app import App
from ambient.config import load_config
from ambient.errors import ConfigError
from integrations.tuning.source import TuningOptions, TuningSource
from tests.hub import TestHub
from tests.tuning_data import fill_store, picked


@pytest.fixture
def app(tmp_path: Path, tiny_model_path: Path) -> App:
    env = {
        "AMBIENT_HOME": str(tmp_path / "home"),
        "AMBIENT_MODEL_PATH": str(tiny_model_path),
        "AMBIENT_MEMORY_ENABLED": "false",
        "AMBIENT_TUNE_EVERY_PICKS": "3",
        "AMBIENT_TUNE_MIN_PAIRS": "10",
        "AMBIENT_TUNE_RANGE_PROMPTS": "0",
        "AMBIENT_TUNE_CONTEXT_TOKENS": "32",
    }
    application = App(load_config(env=env))
    yield application
    application.close()


async def test_it_tunes_when_idle_after_enough_new_picks(app: App) -> None:
    assert "tuning" in places.installed()
    hub = TestHub(app)
    place = TuningSource(hub, TuningOptions(idle_s=0, check_s=1))
    await place.setup()
    await hub.run_blocking(fill_store, app.store, picked()[:2])
    assert await place.check() is False  # 2 new picks: fewer than tune.every_picks
    await hub.run_blocking(fill_store, app.store, picked()[2:4])
    assert await place.check() is True
    assert adapters.names(app.config.home) == ["personal-001"]
    assert place.status()["adapter"] == "personal-001" and place.status()["runs"] == 1
    (event,) = hub.of_kind("tuned")
    assert event["adapter"] == "personal-001" and "accuracy_base" in event["evaluation"]
    assert await place.check() is False  # nothing new since
    await hub.run_blocking(fill_store, app.store, picked()[4:7])
    place.last_offer = float("inf")  # an offer just now: not idle
    assert await place.check() is False
    place.options = TuningOptions(idle_s=0, check_s=1)
    place.last_offer = 0.0
    assert await place.check() is True and adapters.names(app.config.home)[-1] == "personal-002"


async def test_off_by_default(tmp_path: Path, tiny_model_path: Path) -> None:
    app = App(load_config(env={"AMBIENT_HOME": str(tmp_path), "AMBIENT_MODEL_PATH": str(tiny_model_path)}))
    try:
        place = TuningSource(TestHub(app), TuningOptions())
        with pytest.raises(ConfigError, match=r"off \(tune.every_picks = 0\)"):
            await place.setup()
    finally:
        app.close()
