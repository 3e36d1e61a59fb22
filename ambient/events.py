"""Publish/subscribe of live events (``{"type", "data"}`` JSON), from any thread to every subscriber.

The daemon publishes (offers starting, tokens, nodes created, a place's news);
the server subscribes one :class:`Subscriber` per WebSocket. Each subscriber has
a bounded queue: one that cannot keep up is dropped (``overflowed``) rather than
slowing everyone else. Publishing from a worker thread hops to the event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

SUBSCRIBER_QUEUE = 4096


class Subscriber:
    """One live-event listener (a WebSocket); bounded, dropped when it cannot keep up."""

    def __init__(self, maxsize: int = SUBSCRIBER_QUEUE) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False

    def put(self, message: str) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.close(overflow=True)

    def close(self, overflow: bool = False) -> None:
        """Tell the reader to stop (``None`` is the end mark)."""
        self.overflowed = self.overflowed or overflow
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class EventBus:
    """The subscribers of one event loop; :meth:`publish` is safe from any thread."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver on ``loop`` (call from the loop's thread)."""
        self._loop, self._loop_thread = loop, threading.get_ident()

    def call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        """Call ``fn`` on the loop, from whatever thread we are on (dropped once the loop has closed)."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            fn(*args)
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop has closed: nobody is listening any more
            pass

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send ``{"type": kind, "data": data}`` to every subscriber."""
        if threading.get_ident() != self._loop_thread:
            self.call_soon(self.publish, kind, data)
            return
        message = json.dumps({"type": kind, "data": data}, ensure_ascii=False, separators=(",", ":"))
        for sub in list(self.subscribers):
            sub.put(message)
            if sub.overflowed:
                self.subscribers.discard(sub)

    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def close(self) -> None:
        """End every subscriber's stream."""
        for sub in list(self.subscribers):
            sub.close()
