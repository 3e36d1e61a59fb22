"""Fixtures for the notes integration: a real App over a temporary store, and a small Hub.

:class:`tests.hub.TestHub` (sampling in the background, as the daemon does)
keeps the Hub's promises, so the source is tested against the protocol;
``test_daemon_e2e.py`` runs it inside the real daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ambient.app import App
from ambient.config import Config, MemorySection
from integrations.notes.options import NotesOptions
from integrations.notes.source import NotesSource
from tests.fakes import FakeSampler
from tests.hub import TestHub

T = TypeVar("T")


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def make_config(home: Path, **sources: dict[str, Any]) -> Config:
    return Config(home=home, memory=MemorySection(enabled=False), sources=sources)


@pytest.fixture(scope="session")
def model_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny real model (the project's ``tiny_model_path`` fixture when there is one)."""
    try:
        path: Path = request.getfixturevalue("tiny_model_path")
        return path
    except pytest.FixtureLookupError:
        from ambient.models import build_tiny_model

        return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def notes_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    return folder


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    application = App(make_config(tmp_path / "home"), sampler=FakeSampler())
    yield application
    application.close()


@pytest.fixture
def hub(app: App) -> TestHub:
    return TestHub(app, background=True, use_memory=False)


@dataclasses.dataclass
class Running:
    source: NotesSource
    hub: TestHub
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def running_source(hub: TestHub, options: NotesOptions) -> AsyncIterator[NotesSource]:
    """A set-up NotesSource whose run() is going; cancelled and unloaded on exit."""
    source = NotesSource(hub, options)
    await source.setup()
    task = asyncio.get_running_loop().create_task(source.run())
    try:
        await wait_for(lambda: source.watcher is not None and source.watcher.alive)
        yield source
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.unload()
        await hub.idle()


def notes_options(folder: Path, **overrides: Any) -> NotesOptions:
    values: dict[str, Any] = {"folders": (str(folder),), "quiet_ms": 100, "n": 2, "max_tokens": 3}
    values.update(overrides)
    return NotesOptions(**values)
