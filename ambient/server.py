"""The aiohttp application: REST API, WebSocket of live events, and the web UI.

Middlewares, outermost first:

1. security headers on every response (a strict Content-Security-Policy:
   the UI loads nothing from elsewhere);
2. errors as JSON: ``{"error": message}`` with a 4xx for anything the client
   got wrong (an :class:`AmbientError` carries its own status), never a 500
   for bad input;
3. the guard: loopback Host, the UI's own Origin, body size, then the token
   (see :mod:`ambient.security`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Protocol, cast

from aiohttp import WSMsgType, web

from ambient import api
from ambient.api import DAEMON, Handler
from ambient.daemon import Daemon, Subscriber
from ambient.errors import AmbientError
from ambient.openapi import build_openapi
from ambient.security import (
    check_host,
    check_origin,
    check_token,
    cookie_name,
    local_port,
    supplied_token,
)

_LOGGER = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css", "favicon.svg": "image/svg+xml"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("websockets", set)


def create_app(daemon: Daemon) -> web.Application:
    app = web.Application(
        client_max_size=daemon.config.server.max_body_bytes,
        middlewares=[headers_middleware, errors_middleware, guard_middleware],
    )
    app[DAEMON] = daemon
    app[SOCKETS] = set()
    api.add_routes(app)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.on_shutdown.append(_close_sockets)
    return app


# -------------------------------------------------------------- middlewares
@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, _http_message(request, exc))
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except AmbientError as exc:
        return error_response(exc.http_status, str(exc))
    except asyncio.CancelledError:
        raise
    except Exception:
        _LOGGER.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(500, "internal error: the daemon's log has the details")


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404 and exc.text and exc.text.startswith("404"):
        return f"no route {request.method} {request.path}: see /api/openapi.json"
    if exc.status == 405:
        return f"{request.method} is not allowed on {request.path}: allowed {exc.headers.get('Allow', '')}"
    if exc.status == 413:
        limit = request.app[DAEMON].config.server.max_body_bytes
        return f"the body is larger than {limit} bytes (server.max_body_bytes)"
    return exc.text or exc.reason


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    port = local_port(request)
    check_host(request, port)
    check_origin(request)
    limit = request.app[DAEMON].config.server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    given, _ = supplied_token(request, port)
    check_token(request.app[DAEMON].token, given)
    return await handler(request)


# ------------------------------------------------------------------- pages
async def index(request: web.Request) -> web.StreamResponse:
    """The UI. Opened with ``?token=``, it sets the cookie and drops the token from the address bar."""
    port = local_port(request)
    _, where = supplied_token(request, port)
    if where == "query" and port is not None:
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(
            cookie_name(port), request.app[DAEMON].token, httponly=True, samesite="Strict", path="/"
        )
        return response
    return web.FileResponse(WEB_DIR / "index.html", headers={"Content-Type": "text/html; charset=utf-8"})


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound(text=f"no static file {name!r}")
    return web.FileResponse(WEB_DIR / name, headers={"Content-Type": f"{STATIC_FILES[name]}; charset=utf-8"})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_openapi())


# --------------------------------------------------------------- WebSocket
async def events(request: web.Request) -> web.StreamResponse:
    """Live events (JSON ``{type, data}``), and speech from the browser.

    Types: see :data:`ambient.openapi.EVENT_TYPES` (hello, offer_started, token, offer_done,
    offer_failed, picked, node_created, node_updated, note_changed, note_accepted, transcript,
    speech_status). The client may send ``"ping"``, and speech: a ``speech_start`` text message,
    binary 16-bit little-endian mono PCM frames, then ``speech_stop`` (see :class:`SpeechLink`).
    """
    daemon = request.app[DAEMON]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    sub = daemon.subscribe()
    request.app[SOCKETS].add(ws)
    pump = asyncio.get_running_loop().create_task(_pump(sub, ws))
    speech = SpeechLink(daemon, ws)
    try:
        await ws.send_str(json.dumps({"type": "hello", "data": daemon.status()}))
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if msg.data == "ping":
                    await ws.send_str(json.dumps({"type": "pong", "data": {}}))
                else:
                    await speech.text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await speech.frames(msg.data)
    finally:
        await speech.close()
        daemon.unsubscribe(sub)
        request.app[SOCKETS].discard(ws)
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    return ws


SPEECH_OFF = "speech is off: add [sources.speech] to ambient.toml"


class SpeechInput(Protocol):
    """What the WebSocket needs from the speech source (integrations/speech)."""

    async def feed_pcm16(self, session_id: str, frames: bytes, sample_rate: int = 16000) -> None: ...

    async def end_session(self, session_id: str) -> None: ...


class SpeechLink:
    """One socket's speech session: ``speech_start``, binary PCM frames, ``speech_stop`` (or the close).

    Every problem is an ``{"type": "error", "message"}`` text to this client; the socket stays open.
    """

    def __init__(self, daemon: Daemon, ws: web.WebSocketResponse) -> None:
        self.daemon = daemon
        self.ws = ws
        self.session: str | None = None
        self.sample_rate = 16000
        self._ending: set[asyncio.Task[None]] = set()

    def _source(self) -> SpeechInput | None:
        source = self.daemon.sources.get("speech")
        return cast(SpeechInput, source) if source is not None else None

    async def error(self, message: str) -> None:
        payload = {"type": "error", "message": message, "data": {"message": message}}
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(json.dumps(payload, ensure_ascii=False))

    def _off(self) -> str:
        problem = self.daemon.sources.problems.get("speech")
        return f"speech is off ({problem})" if problem else SPEECH_OFF

    async def text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            await self.error('a text message must be "ping" or a JSON object with a "type"')
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "speech_start":
            await self._start(message)
        elif kind == "speech_stop":
            await self._stop(message.get("session"))
        else:
            await self.error(f"unknown message type {kind!r}: expected speech_start or speech_stop")

    async def _start(self, message: dict[str, Any]) -> None:
        if self._source() is None:
            await self.error(self._off())
            return
        session, rate = message.get("session"), message.get("sample_rate", 16000)
        if not isinstance(session, str) or not session:
            await self.error('speech_start needs "session": a string id')
            return
        if not isinstance(rate, int) or isinstance(rate, bool):
            await self.error(f'speech_start "sample_rate" must be an integer (Hz), got {rate!r}')
            return
        if self.session is not None and self.session != session:
            self._end(self.session)
        self.session, self.sample_rate = session, rate

    async def _stop(self, session: Any) -> None:
        if self.session is None or (session is not None and session != self.session):
            await self.error(f"no speech session {session!r} is running on this socket")
            return
        self._end(self.session)
        self.session = None

    async def frames(self, data: bytes) -> None:
        source = self._source()
        if source is None:
            await self.error(self._off())
            return
        if self.session is None:
            await self.error('send {"type": "speech_start", "session": ID} before audio frames')
            return
        try:
            await source.feed_pcm16(self.session, data, self.sample_rate)
        except AmbientError as exc:
            await self.error(str(exc))

    def _end(self, session: str) -> None:
        """End a session in the background (it waits for the last transcription); the socket goes on."""
        source = self._source()
        if source is None:
            return
        task = asyncio.get_running_loop().create_task(self._end_quietly(source, session))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _end_quietly(self, source: SpeechInput, session: str) -> None:
        try:
            await source.end_session(session)
        except Exception:
            _LOGGER.exception("speech session %s did not end cleanly", session)

    async def close(self) -> None:
        """The socket closed: end its session."""
        if self.session is not None:
            self._end(self.session)
            self.session = None
        if self._ending:
            await asyncio.gather(*self._ending, return_exceptions=True)


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


async def _close_sockets(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"daemon stopping")
