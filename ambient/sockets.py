"""The WebSocket of live events: events out to every UI, places' messages in.

Each socket gets a :class:`~ambient.events.Subscriber` (a bounded queue pumped
into the socket) and one handler per place that takes socket messages
(:class:`ambient.sources.SocketHandler`); the text ``"ping"`` is answered here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from ambient.api import DAEMON, SITE
from ambient.daemon import Daemon
from ambient.events import Subscriber
from ambient.sources import SocketHandler, Source

_LOGGER = logging.getLogger(__name__)

SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("websockets", set)
PLACES: web.AppKey[dict[str, type[Source]]] = web.AppKey("places", dict)


async def events(request: web.Request) -> web.StreamResponse:
    """Live events (JSON ``{type, data}``) out; places' messages in.

    Types out: see :data:`ambient.openapi.EVENT_TYPES`. The client may send ``"ping"``; any other
    text is a JSON object whose ``type`` a place names in its socket handler (the speech place:
    ``speech_start``, ``speech_stop`` and binary PCM frames).
    """
    daemon = request.app[DAEMON]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    sub = daemon.subscribe()
    request.app[SOCKETS].add(ws)
    pump = asyncio.get_running_loop().create_task(_pump(sub, ws))
    handlers = SocketHandlers(request.app[PLACES], daemon, ws)
    try:
        hello = {**daemon.status(), "port": request.app[SITE].port}
        await ws.send_str(json.dumps({"type": "hello", "data": hello}))
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if msg.data == "ping":
                    await ws.send_str(json.dumps({"type": "pong", "data": {}}))
                else:
                    await handlers.text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await handlers.frames(msg.data)
    finally:
        await handlers.close()
        daemon.unsubscribe(sub)
        request.app[SOCKETS].discard(ws)
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    return ws


class _Peer:
    """A place's view of one socket (:class:`ambient.sources.SocketPeer`)."""

    def __init__(self, daemon: Daemon, ws: web.WebSocketResponse, name: str) -> None:
        self.daemon, self.ws, self.name = daemon, ws, name

    async def send(self, kind: str, data: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(json.dumps({"type": kind, "data": data}, ensure_ascii=False))

    async def error(self, message: str) -> None:
        await send_error(self.ws, message)

    def running(self) -> Source | None:
        return self.daemon.sources.get(self.name)

    def problem(self) -> str | None:
        return self.daemon.sources.problems.get(self.name)


async def send_error(ws: web.WebSocketResponse, message: str) -> None:
    """``{"type": "error", "message"}`` to one client; the socket stays open."""
    payload = {"type": "error", "message": message, "data": {"message": message}}
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_str(json.dumps(payload, ensure_ascii=False))


class SocketHandlers:
    """One socket's handlers, one per place that has one, and which message goes to which."""

    def __init__(self, installed: dict[str, type[Source]], daemon: Daemon, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.by_type: dict[str, SocketHandler] = {}
        self.binary: SocketHandler | None = None
        self.all: list[SocketHandler] = []
        for name, cls in installed.items():
            if cls.socket_handler is None:
                continue
            handler = cls.socket_handler(_Peer(daemon, ws, name))
            self.all.append(handler)
            self.by_type.update(dict.fromkeys(handler.message_types, handler))
            if handler.binary and self.binary is None:
                self.binary = handler

    async def text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):
            await send_error(self.ws, 'a text message must be "ping" or a JSON object with a "type"')
            return
        kind = message.get("type") if isinstance(message, dict) else None
        handler = self.by_type.get(kind) if isinstance(kind, str) else None
        if handler is None:
            expected = " or ".join(self.by_type) or '"ping"'
            await send_error(self.ws, f"unknown message type {kind!r}: expected {expected}")
            return
        await handler.message(message)

    async def frames(self, data: bytes) -> None:
        if self.binary is None:
            await send_error(self.ws, "binary frames are not taken here: no place reads them")
            return
        await self.binary.frames(data)

    async def close(self) -> None:
        for handler in self.all:
            try:
                await handler.close()
            except Exception:
                _LOGGER.exception("a socket handler did not close cleanly")


async def _pump(sub: Subscriber, ws: web.WebSocketResponse) -> None:
    while True:
        message = await sub.queue.get()
        if message is None:
            code, why = (1013, b"too slow: reconnect") if sub.overflowed else (1001, b"daemon stopping")
            await ws.close(code=code, message=why)
            return
        try:
            await ws.send_str(message)
        except ConnectionError:
            return


async def close_sockets(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"daemon stopping")


