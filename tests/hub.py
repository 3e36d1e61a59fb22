"""One small Hub for the tests of places (and the Discord benchmark's harness), over a real App.

It keeps the promises of :class:`ambient.sources.Hub` the simplest way: one
sampling at a time, a newer event for a key cancels the older one's sampling,
on_offer callbacks after each offer, memory indexed in the background when it
is on. Events become offers through :func:`ambient.hub.offer_for_event`, the
same function the daemon uses. ``tests/test_daemon.py`` and the places'
end-to-end tests run the real daemon instead.

``background=False`` (the default) samples inside ``submit()``, so a test can
assert right after it; ``background=True`` samples in a task, as the daemon
does, and :meth:`drain` waits for it. ``defaults`` fill the overrides an event
leaves unset (e.g. few tokens, for speed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ambient import forgetting
from ambient.app import App
from ambient.forgetting import Report, Target
from ambient.hub import offer_for_event
from ambient.offers import Overrides
from ambient.sources import SourceEvent
from ambient.tree import Offer

T = TypeVar("T")


class TestHub:
    __test__ = False  # not a test class, whatever its name

    def __init__(
        self,
        app: App,
        *,
        defaults: Overrides | None = None,
        background: bool = False,
        use_memory: bool | None = None,
    ) -> None:
        self.app = app
        self.defaults = defaults or Overrides()
        self.background = background
        self.use_memory = app.config.memory.enabled if use_memory is None else use_memory
        self.events: list[SourceEvent] = []
        self.offers: list[Offer] = []
        self.published: list[tuple[str, dict[str, Any]]] = []  # what the place published
        self.offered = asyncio.Event()
        self.index_requests = 0
        self.forgotten: list[Target] = []
        self._callbacks: list[Callable[[Offer], Awaitable[None] | None]] = []
        self._cancels: dict[str, threading.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._model = asyncio.Lock()  # one sampling at a time, like the daemon

    # ------------------------------------------------------------ the Hub
    async def submit(self, event: SourceEvent) -> None:
        self.events.append(event)
        older = self._cancels.get(event.key)
        if older is not None:
            older.set()
        cancel = self._cancels[event.key] = threading.Event()
        if not self.background:
            await self._run(event, cancel)
            return
        self._spawn(self._run(event, cancel))

    async def offer_now(self, event: SourceEvent) -> Offer:
        self.events.append(event)
        return await self._run(event, threading.Event())

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        assert threading.current_thread() is threading.main_thread(), f"{kind} published off the event loop"
        self.published.append((kind, data))

    def on_offer(self, callback: Callable[[Offer], Awaitable[None] | None]) -> None:
        self._callbacks.append(callback)

    def schedule_index(self) -> None:
        self.index_requests += 1
        if self.use_memory:
            self._spawn(self.run_blocking(self.app.index_pending))

    async def forget(self, target: Target) -> Report:
        self.forgotten.append(target)
        return await asyncio.to_thread(forgetting.forget, self.app, target)

    # ------------------------------------------------------------ for tests
    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """The data of every published event of ``kind``."""
        return [data for k, data in self.published if k == kind]

    async def idle(self) -> None:
        """Wait until nothing is sampling or indexing (as :meth:`ambient.daemon.Daemon.idle`)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    # -------------------------------------------------------------- inside
    async def _run(self, event: SourceEvent, cancel: threading.Event) -> Offer:
        event = dataclasses.replace(event, overrides=event.overrides.under(self.defaults))
        async with self._model:
            outcome = await asyncio.to_thread(
                offer_for_event, self.app, event, use_memory=self.use_memory, cancel=cancel
            )
        for callback in self._callbacks:
            result = callback(outcome.offer)
            if inspect.isawaitable(result):
                await result
        self.offers.append(outcome.offer)
        self.offered.set()
        return outcome.offer

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
