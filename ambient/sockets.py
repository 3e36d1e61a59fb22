"""The WebSocket of live events: events out to every UI, places' messages in.

A browser cannot give a WebSocket headers, so the socket signs in with its
first message, ``{"type": "auth", "token": TOKEN}``; until then it receives
nothing, and a missing or wrong token closes it (code 4401, the reason says
why). A first message rather than a subprotocol: a subprotocol travels in a
request header (``Sec-WebSocket-Protocol``) that proxies and logs record, and
the server must echo it back; the first message is read only by this handler.
A client that can set headers (the CLI, benchmarks, tests) may send
``Authorization: Bearer TOKEN`` with the handshake instead.

Each signed-in socket gets a :class:`~ambient.events.Subscriber` (a bounded
queue pumped into the socket) and one handler per place that takes socket
messages (:class:`ambient.sources.SocketHandler`); the text ``"ping"`` is
answered here. A message over :data:`MAX_MESSAGE_BYTES` closes the socket
with code 1009 and a reason; bad JSON (deeply nested too) is an error event,
and the socket stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ambient.api import DAEMON, SITE
from ambient.daemon import Daemon
from ambient.events import Subscriber
from ambient.security import WRONG_TOKEN, token_matches
from ambient.sources import SocketHandler, Source

_LOGGER = logging.getLogger(__name__)

EVENTS_PATH = "/api/events"
MAX_MESSAGE_BYTES = 64 * 1024
AUTH_TIMEOUT_S = 10.0
UNAUTHORIZED = 4401  # a private close code, after HTTP's 401
AUTH_MESSAGE = '{"type": "auth", "token": TOKEN}'
TOO_BIG = f"message too big: at most {MAX_MESSAGE_BYTES // 1024} KiB a message"

SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("websockets", set)
PLACES: web.AppKey[dict[str, type[Source]]] = web.AppKey("places", dict)


async def events(request: web.Request) -> web.StreamResponse:
    """Live events (JSON ``{type, data}``) out; places' messages in.

    Types out: see :data:`ambient.openapi.EVENT_TYPES`. The client may send ``"ping"``; any other
    text is a JSON object whose ``type`` a place names in its socket handler (the speech place:
    ``speech_start``, ``speech_stop`` and binary PCM frames).
    """
    ws = _Socket(heartbeat=30.0, max_msg_size=MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    try:
        if signs_in_by_message(request) and not await _sign_in(ws, request.app[SITE].token):
            return ws
        await _serve(request, ws)
    finally:
        request.app[SOCKETS].discard(ws)
    return ws


async def _serve(request: web.Request, ws: web.WebSocketResponse) -> None:
    daemon = request.app[DAEMON]
    sub = daemon.subscribe()
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
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)


def signs_in_by_message(request: web.Request) -> bool:
    """Whether the socket's first message must carry the token (the handshake has no header for it)."""
    return "Authorization" not in request.headers and "token" not in request.query


class _Socket(web.WebSocketResponse):
    """A server WebSocket that says why when it closes on a message over the cap (aiohttp gives no reason)."""

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not message:
            message = TOO_BIG.encode()
        return await super().close(code=code, message=message, drain=drain)


async def _sign_in(ws: web.WebSocketResponse, expected: str) -> bool:
    """Read the first message, which must carry the token; without it, close the socket and say why."""
    try:
        msg = await ws.receive(timeout=AUTH_TIMEOUT_S)
    except TimeoutError:
        return await _refuse(ws, f"no token within {AUTH_TIMEOUT_S:g} s: send {AUTH_MESSAGE} first")
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        return False  # gone, or closed already (a message over the cap: 1009)
    given = _auth_token(msg.data) if msg.type == WSMsgType.TEXT else None
    if given is None:
        return await _refuse(ws, f"sign in first: the first message must be {AUTH_MESSAGE}")
    if not token_matches(expected, given):
        return await _refuse(ws, WRONG_TOKEN)
    return True


def _auth_token(data: str) -> str | None:
    """The token of ``{"type": "auth", "token": ...}``, or None if ``data`` is not that."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("type") != "auth":
        return None
    token = message.get("token")
    return token if isinstance(token, str) and token else None


async def _refuse(ws: web.WebSocketResponse, reason: str) -> bool:
    # A close frame's reason is at most 123 bytes of UTF-8.
    await ws.close(code=UNAUTHORIZED, message=reason.encode()[:123].decode(errors="ignore").encode())
    return False


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
