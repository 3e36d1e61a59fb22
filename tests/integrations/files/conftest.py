"""Fixtures for the notes integration: a real App over a temporary store, and a small Hub.

:class:`MiniHub` implements :class:`ambient.sources.Hub` the simplest way that
keeps its promises (one sampling at a time, a newer event for a key cancels
the older one, on_offer callbacks after each offer), so the source is tested
against the protocol; ``test_daemon_e2e.py`` runs it inside the real daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ambient.app import App
from ambient.config import Config, MemorySection
from ambient.offers import make_offer, options_from
from ambient.sources import SourceEvent
from ambient.tree import Offer
from integrations.files.options import NotesOptions
from integrations.files.source import NotesSource
from tests.fakes import FakeSampler

T = TypeVar("T")


class MiniHub:
    def __init__(self, app: App) -> None:
        self.app = app
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.offers: list[Offer] = []
        self.events: list[SourceEvent] = []
        self._callbacks: list[Callable[[Offer], Awaitable[None] | None]] = []
        self._cancels: dict[str, threading.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._model = asyncio.Lock()

    async def submit(self, event: SourceEvent) -> None:
        self.events.append(event)
        older = self._cancels.get(event.key)
        if older is not None:
            older.set()
        cancel = self._cancels[event.key] = threading.Event()
        task = asyncio.get_running_loop().create_task(self._run(event, cancel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def offer_now(self, event: SourceEvent) -> Offer:
        return await self._run(event, threading.Event())

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        self.published.append((kind, data))

    def on_offer(self, callback: Callable[[Offer], Awaitable[None] | None]) -> None:
        self._callbacks.append(callback)

    async def _run(self, event: SourceEvent, cancel: threading.Event) -> Offer:
        options = options_from(
            self.app.config.sampling, n=event.n, temperature=event.temperature, max_tokens=event.max_tokens
        )
        async with self._model:
            outcome = await asyncio.to_thread(
                make_offer,
                self.app,
                event.parent_id,
                options,
                source={"kind": event.source, "key": event.key, **event.meta},
                source_text=event.text,
                use_memory=False,
                cancel=cancel,
            )
        for callback in self._callbacks:
            result = callback(outcome.offer)
            if inspect.isawaitable(result):
                await result
        self.offers.append(outcome.offer)
        return outcome.offer

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks))


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
def hub(app: App) -> MiniHub:
    return MiniHub(app)


@dataclasses.dataclass
class Running:
    source: NotesSource
    hub: MiniHub
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def running_source(hub: MiniHub, options: NotesOptions) -> AsyncIterator[NotesSource]:
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
        await hub.drain()


def notes_options(folder: Path, **overrides: Any) -> NotesOptions:
    values: dict[str, Any] = {"folders": (str(folder),), "quiet_ms": 100, "n": 2, "max_tokens": 3}
    values.update(overrides)
    return NotesOptions(**values)
