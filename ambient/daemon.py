"""The daemon: places in, offers out. It knows nothing of HTTP.

Start-up and shutdown live in :class:`Daemon` (an async context manager)::

    async with Daemon(config) as daemon:
        offer = await daemon.offer_now(event)

Start-up opens the store (offers left streaming by a crash are marked failed),
loads the model and the memory index in worker threads, starts the sampling
worker and the places. Shutdown stops the places, refuses new events, cancels
in-flight sampling (the partial offer is stored as cancelled), ends every live
event stream, and closes the store. The web server (:mod:`ambient.server`) is
put on top of a running daemon by whoever runs it (``ambient run``).

The daemon implements :class:`ambient.sources.Hub`. It never writes into a
source or sends text anywhere on its own: it stores offers and publishes them
to subscribers; everything else is a person's action through the API.

Threads: the event loop only schedules. Sampling (torch) runs in one
``ambient-sampling`` thread (the model is one), memory (chromadb, embeddings)
in one ``ambient-memory`` thread, store reads and writes in the default pool.
Tokens come back to the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ambient import __version__, forgetting
from ambient.app import App
from ambient.config import Config
from ambient.context import BuiltContext, Fragment
from ambient.errors import AmbientError, MemoryUnavailable
from ambient.events import EventBus, Subscriber
from ambient.forgetting import PlaceCleanup, Report, Target
from ambient.hub import offer_for_event
from ambient.memory_api import MemoryIndexProtocol
from ambient.offers import OfferOutcome
from ambient.pipeline import Job, Pipeline
from ambient.sampling.base import Token
from ambient.scopes import View
from ambient.source_host import SourceHost
from ambient.sources import SourceEvent
from ambient.tree import Node, Offer

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


class Daemon:
    """The running service: implements the places' Hub; the HTTP API is built on top of it."""

    def __init__(self, config: Config, app: App | None = None, *, queue_size: int = 32) -> None:
        self.config = config
        self.app = app if app is not None else App(config)
        self._owns_app = app is None
        self.events = EventBus()
        self.sources = SourceHost(self, config)
        self.pipeline = Pipeline(
            self._run_job, debounce_s=config.server.debounce_ms / 1000, maxsize=queue_size
        )
        self.started_at = 0.0
        self.memory_ready = False
        self._sampling_pool: ThreadPoolExecutor | None = None
        self._memory_pool: ThreadPoolExecutor | None = None
        self._offer_callbacks: list[Callable[[Offer], Awaitable[None] | None]] = []
        self._index_task: asyncio.Task[None] | None = None
        self._index_again = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running = False
        self._intake_stopped = False

    # ------------------------------------------------------------- lifespan
    async def __aenter__(self) -> Daemon:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.events.bind(asyncio.get_running_loop())
        self._sampling_pool = ThreadPoolExecutor(1, thread_name_prefix="ambient-sampling")
        self._memory_pool = ThreadPoolExecutor(1, thread_name_prefix="ambient-memory")
        self._running = True
        failed = await self.run_blocking(self._open_store)
        if failed:
            _LOGGER.warning("%d offer(s) left streaming by the last run were marked failed", failed)
        await asyncio.gather(self._in_sampling(self._load_sampler), self._in_memory(self._load_memory))
        self.pipeline.start()
        await self.sources.start()
        self.started_at = time.time()
        self.schedule_index()

    def _open_store(self) -> int:
        store = self.app.store
        store.on_change(self._on_store_change)
        return store.fail_unfinished_offers("daemon stopped while sampling")

    def _load_sampler(self) -> None:
        self.app.sampler  # noqa: B018 - load the model now, not at the first event

    def _load_memory(self) -> None:
        try:
            self.memory_ready = self.app.memory is not None
        except ImportError as exc:  # the memory package is not installed
            self.app.memory_warning = f"memory is off: {exc}"
            self.memory_ready = False

    async def stop(self) -> None:
        """Shut down cleanly: nothing acknowledged is lost, in-flight sampling is stored as cancelled."""
        if not self._running:
            return
        await self.stop_intake()
        self._running = False
        await self._wait_for_background()
        for pool in (self._sampling_pool, self._memory_pool):
            if pool is not None:
                await asyncio.to_thread(pool.shutdown, True)
        if self._owns_app:
            await asyncio.to_thread(self.app.close)

    async def stop_intake(self) -> None:
        """Stop taking work: the places stop, waiting events are refused, live streams end."""
        if self._intake_stopped:
            return
        self._intake_stopped = True
        await self.sources.stop()
        await self.pipeline.close()
        self.events.close()

    async def idle(self) -> None:
        """Wait until the background work started so far (indexing, offer callbacks) is done."""
        while pending := [t for t in (self._index_task, *self._tasks) if t is not None and not t.done()]:
            await asyncio.wait(pending)

    async def _wait_for_background(self, timeout: float = 30.0) -> None:
        pending = [t for t in (self._index_task, *self._tasks) if t is not None and not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()

    # ------------------------------------------------------------- threads
    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (files, SQLite) in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))

    async def _in_sampling(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._sampling_pool, fn)

    async def _in_memory(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._memory_pool, fn)

    # -------------------------------------------------------------- the hub
    async def submit(self, event: SourceEvent) -> None:
        """Queue an event (debounced per key; a newer one cancels the older one's sampling)."""
        self.pipeline.submit(event)

    async def offer_now(self, event: SourceEvent) -> Offer:
        """Sample for ``event`` right away and return the finished offer."""
        job = self.pipeline.submit(dataclasses.replace(event, debounce=False), wait=True)
        assert job.waiter is not None
        return await job.waiter

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send a live event to every subscriber (thread-safe)."""
        self.events.publish(kind, data)

    def on_offer(self, callback: Callable[[Offer], Awaitable[None] | None]) -> None:
        self._offer_callbacks.append(callback)

    def subscribe(self) -> Subscriber:
        return self.events.subscribe()

    def unsubscribe(self, sub: Subscriber) -> None:
        self.events.unsubscribe(sub)

    # ------------------------------------------------------------ pipeline
    async def _run_job(self, job: Job) -> Offer:
        """Build the context, sample (streaming tokens out), store and publish one offer."""
        begun: dict[str, Offer] = {}
        try:
            outcome = await self._sample(job, begun)
        except Exception as exc:
            await self._publish_failed(job.event, begun.get("offer"), exc)
            raise
        self.publish(
            "offer_done",
            {"offer": outcome.offer.as_dict(), "nodes": [n.as_dict() for n in outcome.nodes]},
        )
        self._after_offer(outcome.offer)
        return outcome.offer

    async def _sample(self, job: Job, begun: dict[str, Offer]) -> OfferOutcome:
        event = job.event

        def on_begin(offer: Offer, context: BuiltContext) -> None:
            begun["offer"] = offer
            data = {
                "offer_id": offer.id,
                "parent_id": offer.parent_id,
                "tree_id": offer.tree_id,
                "n": offer.settings.get("n"),
                "source": event.source,
                "provenance": context.provenance,
            }
            self.events.call_soon(self.publish, "offer_started", data)

        def on_token(branch: int, token: Token) -> None:
            offer_id = begun["offer"].id
            self.events.call_soon(self.publish, "token", _token_event(offer_id, branch, token))

        work = functools.partial(
            offer_for_event,
            self.app,
            event,
            use_memory=self.memory_ready,
            on_token=on_token,
            on_begin=on_begin,
            cancel=job.cancel,
        )
        return await self._in_sampling(work)

    async def _publish_failed(self, event: SourceEvent, offer: Offer | None, exc: Exception) -> None:
        reason = str(exc) if isinstance(exc, AmbientError) else f"{type(exc).__name__}: {exc}"
        data: dict[str, Any] = {"parent_id": event.parent_id, "error": reason, "offer": None, "nodes": []}
        if offer is not None:
            stored, nodes = await self.run_blocking(self._offer_with_nodes, offer.id)
            data.update(offer_id=offer.id, offer=stored.as_dict(), nodes=[n.as_dict() for n in nodes])
        self.publish("offer_failed", data)

    def _offer_with_nodes(self, offer_id: str) -> tuple[Offer, list[Node]]:
        store = self.app.store
        offer = store.get_offer(offer_id)
        return offer, [store.get_node(i) for i in offer.node_ids]

    def _after_offer(self, offer: Offer) -> None:
        for callback in self._offer_callbacks:
            try:
                result = callback(offer)
            except Exception:
                _LOGGER.exception("an on_offer callback failed")
                continue
            if inspect.isawaitable(result):
                self._spawn(result)
        self.schedule_index()

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await awaitable
            except Exception:
                _LOGGER.exception("an on_offer callback failed")

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_store_change(self, event: str, node: Node) -> None:
        """Store listener (called in the writing thread): tell the UI."""
        kind = "node_created" if event == "created" else "node_updated"
        self.events.call_soon(self.publish, kind, {"node": node.as_dict(tokens=False)})

    # --------------------------------------------------------------- memory
    def schedule_index(self) -> None:
        """Index new and changed nodes in the background (coalesced: one run at a time)."""
        if not self.memory_ready or not self._running:
            return
        if self._index_task is not None and not self._index_task.done():
            self._index_again = True
            return
        self._index_task = asyncio.get_running_loop().create_task(self._index_loop())

    async def _index_loop(self) -> None:
        while True:
            self._index_again = False
            try:
                count = await self._in_memory(self.app.index_pending)
                _LOGGER.info("indexed %d node(s)", count)
            except Exception:
                _LOGGER.exception("background indexing failed")
            if not self._index_again:
                return

    async def forget(self, target: Target, cleanups: Sequence[PlaceCleanup] = ()) -> Report:
        """Forget ``target`` everywhere (in the memory thread: never beside indexing); tell the UI."""
        report = await self._in_memory(functools.partial(forgetting.forget, self.app, target, cleanups))
        f = report.forgotten
        self.publish("forgotten", {"node_ids": f.node_ids, "tree_ids": f.tree_ids, "moved_ids": f.moved_ids})
        return report

    async def search(self, query: str, k: int, view: View | None = None) -> list[Fragment]:
        """Past fragments close in meaning to ``query`` (within ``view``'s walls, if given)."""
        memory = self._memory()
        return await self._in_memory(functools.partial(memory.search, query, k, view=view))

    def _memory(self) -> MemoryIndexProtocol:
        memory = self.app.memory if self.memory_ready else None
        if memory is None:
            reason = self.app.memory_warning or "memory is off: set memory.enabled = true in ambient.toml"
            raise MemoryUnavailable(reason)
        return memory

    # --------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        model = self.config.model
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "uptime_s": round(time.time() - self.started_at, 3) if self.started_at else 0.0,
            "model": {
                "backend": model.backend,
                "path": model.path if model.backend == "local" else model.name,
                "sampler": self.app.sampler.name,
            },
            "queue": self.pipeline.status(),
            "sources": self.sources.status(),
            "memory": {
                "enabled": self.config.memory.enabled,
                "available": self.memory_ready,
                "warning": self.app.memory_warning,
            },
            "adapter": _adapter_status_of(self.app.sampler),
            "subscribers": len(self.events.subscribers),
        }


def _adapter_status_of(sampler: Any) -> dict[str, Any]:
    """The personal adapter a sampler uses (only the local one takes adapters) and why one was refused."""
    adapter = getattr(sampler, "adapter", None)
    return {
        "name": getattr(adapter, "name", None),
        "share": float(getattr(sampler, "adapter_share", 0.0)) if adapter is not None else 0.0,
        "problem": getattr(sampler, "adapter_problem", None),
    }


def _token_event(offer_id: str, branch: int, token: Token) -> dict[str, Any]:
    return {
        "offer_id": offer_id,
        "branch": branch,
        "text": token.text,
        "logprob": token.logprob,
        "top": [{"text": a.text, "logprob": a.logprob} for a in token.top],
        **(token.extra or {}),  # per-token signals, shown live
    }
