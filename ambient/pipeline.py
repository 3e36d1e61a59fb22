"""The event pipeline: debounce per key, a bounded queue, latest wins, one sampling worker.

Every :class:`SourceEvent` becomes a :class:`Job`. Events are keyed by
``source:key``; a newer event for a key supersedes the older one: a pending
debounce timer is dropped, and a queued or running job has its ``cancel``
event set (sampling stops at the next step and the partial offer is stored as
cancelled). The queue is bounded: when it is full the oldest waiting job is
dropped to make room for the newest. One worker runs jobs one at a time,
because the model is one.

The pipeline only schedules; what a job does is the ``run_job`` coroutine it
is given (the daemon's offer flow).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ambient.errors import AmbientError
from ambient.sources import SourceEvent
from ambient.tree import Offer

_LOGGER = logging.getLogger(__name__)


class Busy(AmbientError):
    """The daemon cannot take the event (shutting down, or the queue dropped it)."""

    http_status = 503


class Superseded(AmbientError):
    """A newer event for the same key replaced this one before it was sampled."""

    http_status = 409


@dataclasses.dataclass(eq=False)
class Job:
    event: SourceEvent
    key: str
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    entered: float = dataclasses.field(default_factory=time.perf_counter)
    waiter: asyncio.Future[Offer] | None = None

    def resolve(self, offer: Offer) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(offer)

    def fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)


RunJob = Callable[[Job], Awaitable[Offer]]


class Pipeline:
    def __init__(self, run_job: RunJob, *, debounce_s: float, maxsize: int = 32) -> None:
        self._run_job = run_job
        self.debounce_s = debounce_s
        self.maxsize = maxsize
        self._queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=maxsize)
        self._timers: dict[str, tuple[asyncio.TimerHandle, Job]] = {}
        self._latest: dict[str, Job] = {}
        self._worker: asyncio.Task[None] | None = None
        self.current: Job | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.closing = False
        self.dropped = 0
        self.done = 0

    # ----------------------------------------------------------------- control
    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="ambient-sampling-worker")

    async def close(self, timeout: float = 30.0) -> None:
        """Refuse new events, drop waiting ones, cancel the running one and wait for it to be stored."""
        self.closing = True
        for handle, job in self._timers.values():
            handle.cancel()
            job.fail(Busy("the daemon is shutting down"))
        self._timers.clear()
        while not self._queue.empty():
            job = self._queue.get_nowait()
            job.cancel.set()
            job.fail(Busy("the daemon is shutting down"))
        if self.current is not None:
            self.current.cancel.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            _LOGGER.warning("sampling did not stop within %.0f s of being cancelled", timeout)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    # ------------------------------------------------------------------ events
    def submit(self, event: SourceEvent, *, wait: bool = False) -> Job:
        """Take ``event``: debounce it (unless it asks not to), superseding older ones for its key."""
        if self.closing:
            raise Busy("the daemon is shutting down: try again after it restarts")
        job = Job(event, f"{event.source}:{event.key}")
        if wait:
            job.waiter = asyncio.get_running_loop().create_future()
        self._supersede(job.key)
        self._latest[job.key] = job
        if event.debounce and self.debounce_s > 0:
            handle = asyncio.get_running_loop().call_later(self.debounce_s, self._fire, job)
            self._timers[job.key] = (handle, job)
        else:
            self._enqueue(job)
        return job

    def _supersede(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[0].cancel()
            timer[1].fail(Superseded(f"a newer event for {key} replaced this one"))
        older = self._latest.get(key)
        if older is not None:
            older.cancel.set()

    def _fire(self, job: Job) -> None:
        self._timers.pop(job.key, None)
        self._enqueue(job)

    def _enqueue(self, job: Job) -> None:
        if self._queue.full():
            oldest = self._queue.get_nowait()
            oldest.cancel.set()
            oldest.fail(Busy(f"dropped: more than {self.maxsize} events were waiting"))
            self.dropped += 1
            _LOGGER.warning("queue full: dropped the oldest waiting event (%s)", oldest.key)
        self._queue.put_nowait(job)

    # ------------------------------------------------------------------ worker
    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            if job.cancel.is_set():
                job.fail(Superseded(f"a newer event for {job.key} replaced this one"))
                self._forget(job)
                continue
            self.current = job
            self._idle.clear()
            try:
                job.resolve(await self._run_job(job))
            except asyncio.CancelledError:
                job.fail(Busy("the daemon is shutting down"))
                raise
            except Exception as exc:
                job.fail(exc)
            finally:
                self.current = None
                self._idle.set()
                self.done += 1
                self._forget(job)

    def _forget(self, job: Job) -> None:
        if self._latest.get(job.key) is job:
            del self._latest[job.key]

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        return {
            "waiting": self._queue.qsize(),
            "debouncing": len(self._timers),
            "max": self.maxsize,
            "in_flight": self.current.key if self.current is not None else None,
            "done": self.done,
            "dropped": self.dropped,
        }
