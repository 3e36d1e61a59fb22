"""The web server over a running daemon: the REST API, the WebSocket of live events, and the web UI.

:func:`serve` puts a daemon and its server together (``ambient run`` uses it)::

    async with serve(config) as server:
        print(server.url)
        await stop_requested.wait()

Routes are the core API's (:mod:`ambient.api`) and every installed place's
(:meth:`ambient.sources.Source.routes`); the WebSocket (:mod:`ambient.sockets`)
hands each place the message types it names.

Middlewares, outermost first:

1. security headers on every response (a strict Content-Security-Policy:
   the UI loads nothing from elsewhere);
2. errors as JSON: ``{"error": message}`` with a 4xx for anything the client
   got wrong (an :class:`AmbientError` carries its own status), never a 500
   for bad input;
3. the guard: loopback Host, the UI's own Origin, body size, then the token
   in ``Authorization: Bearer`` (see :mod:`ambient.security`) for every
   ``/api`` route. The page (``/``) and its static files hold no data and are
   public; the WebSocket takes the token as its first message when the
   handshake has no header (:mod:`ambient.sockets`).

Under the prefix of an API for other apps (a :class:`~ambient.validation.ClientAPI` a place's
routes declare, e.g. ``/v1``) the guard is :mod:`ambient.clients` instead, after the same Host
check: a client key, the origins in ``server.client_origins`` with CORS, and that API's error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from aiohttp import web

from ambient import __version__, api, api_memory, clients, places
from ambient.api import DAEMON, SITE, Site
from ambient.app import App
from ambient.config import Config
from ambient.daemon import Daemon
from ambient.errors import AmbientError, ConfigError
from ambient.fsutil import write_atomic
from ambient.keys import KeyStore
from ambient.openapi import build_openapi
from ambient.security import (
    LOOPBACK_HOSTS,
    OLD_COOKIE_PREFIX,
    WRONG_TOKEN,
    Unauthorized,
    check_host,
    check_origin,
    check_token,
    load_or_create_token,
    local_port,
    token_matches,
)
from ambient.sockets import EVENTS_PATH, PLACES, SOCKETS, close_sockets, events, signs_in_by_message
from ambient.sources import Source
from ambient.validation import ClientAPI, Handler, Route

_LOGGER = logging.getLogger(__name__)

RUNTIME_FILE = "daemon.json"
WEB_DIR = Path(__file__).parent / "web"
STATIC_FILES = {
    "app.js": "text/javascript",
    "mic-worklet.js": "text/javascript",
    "style.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
PUBLIC_ROUTES = ("/", "/static/{name}")  # the page and its static files: they hold no data
CLIENT_APIS = web.AppKey("client_apis", Mapping[str, ClientAPI])  # APIs for other apps, by path prefix
CLIENT_KEYS = web.AppKey("client_keys", KeyStore)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def routes(installed: Mapping[str, type[Source]]) -> list[Route]:
    """Every route of the API: the core's, then each place's."""
    out = [*api.ROUTES, *api_memory.ROUTES]
    for cls in installed.values():
        out.extend(cls.routes())
    return out


def create_app(
    daemon: Daemon, site: Site, installed: Mapping[str, type[Source]] | None = None
) -> web.Application:
    """The aiohttp application for ``daemon`` (``installed``: the places; default every installed one)."""
    found = dict(places.installed() if installed is None else installed)
    app = web.Application(
        client_max_size=daemon.config.server.max_body_bytes,
        middlewares=[headers_middleware, errors_middleware, guard_middleware],
    )
    app[DAEMON] = daemon
    app[SITE] = site
    app[PLACES] = found
    app[SOCKETS] = set()
    table = routes(found)
    app[CLIENT_APIS] = clients.apis_of(table)
    app[CLIENT_KEYS] = KeyStore(daemon.config.home)
    app.on_response_prepare.append(clients.cors_headers)
    api.add_routes(app, table)
    app.router.add_get(EVENTS_PATH, events)
    app.router.add_get("/api/openapi.json", _openapi_route(table))
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.on_shutdown.append(close_sockets)
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
        for name in request.cookies:
            if name.startswith(OLD_COOKIE_PREFIX):  # an earlier version's token cookie: gone
                response.del_cookie(name, path="/")
    return response


def error_response(
    status: int, message: str, client: ClientAPI | None = None, exc: BaseException | None = None
) -> web.Response:
    """``{"error": message}``, or the error shape of the API for other apps the request was under."""
    body = client.error_body(status, message, exc) if client is not None else {"error": message}
    return web.json_response(body, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    client = clients.api_at(request.app[CLIENT_APIS], request.path)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, _http_message(request, exc), client)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except AmbientError as exc:
        return error_response(exc.http_status, str(exc), client, exc)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        _LOGGER.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(500, "internal error: the daemon's log has the details", client, exc)


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
    client = clients.api_at(request.app[CLIENT_APIS], request.path)
    if client is None:
        check_origin(request)
    config = request.app[DAEMON].config
    limit = config.server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    if client is not None:  # an API for other apps: a client key, the configured origins (ambient.clients)
        return await clients.guard(
            request,
            handler,
            origins=config.server.client_origins,
            keys=request.app[CLIENT_KEYS],
            ui_token=request.app[SITE].token,
            run_blocking=request.app[DAEMON].run_blocking,
        )
    route = _route_of(request)
    if route not in PUBLIC_ROUTES and not (route == EVENTS_PATH and signs_in_by_message(request)):
        check_token(request.app[SITE].token, request)
    return await handler(request)


def _route_of(request: web.Request) -> str | None:
    """The path pattern of the route the request matched (None: no route)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


# ------------------------------------------------------------------- pages
def page_url(host: str, port: int, token: str) -> str:
    """The UI's address with the token in the fragment, which browsers never send to a server."""
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/#token={token}"


async def index(request: web.Request) -> web.StreamResponse:
    """The UI. A link with ``?token=`` (an older form) is redirected to ``/#token=``."""
    if "token" in request.query:
        if not token_matches(request.app[SITE].token, request.query["token"]):
            raise Unauthorized(WRONG_TOKEN)
        return web.Response(status=303, headers={"Location": f"/#token={request.app[SITE].token}"})
    return web.FileResponse(WEB_DIR / "index.html", headers={"Content-Type": "text/html; charset=utf-8"})


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound(text=f"no static file {name!r}")
    return web.FileResponse(WEB_DIR / name, headers={"Content-Type": f"{STATIC_FILES[name]}; charset=utf-8"})


def _openapi_route(table: list[Route]) -> Handler:
    document = build_openapi(table)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    return openapi


# ------------------------------------------------------------------ server
class Server:
    """The HTTP server of one daemon, on the loopback address."""

    # A connection that has not sent a whole request (headers trickling in byte by byte, or
    # nothing at all) or sits idle between requests is closed after this long.
    idle_timeout_s = 15.0

    def __init__(self, daemon: Daemon, *, port: int | None = None) -> None:
        config = daemon.config
        if config.server.host not in LOOPBACK_HOSTS:
            raise ConfigError(
                f"server.host = {config.server.host!r}: the daemon only listens on the loopback "
                "address (127.0.0.1, ::1 or localhost); reach it from elsewhere through an SSH tunnel"
            )
        self.daemon = daemon
        self.host = config.server.host
        self.port = config.server.port if port is None else port
        self.token = ""
        self.web_app: web.Application | None = None
        self._socket: socket.socket | None = None
        self._runner: web.AppRunner | None = None

    def reserve(self) -> None:
        """Take the port now, so that a port in use fails before anything slow starts."""
        if self._socket is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        address = "127.0.0.1" if self.host == "localhost" else self.host
        try:
            self._socket = socket.create_server((address, self.port), family=family)
        except OSError as exc:
            raise AmbientError(
                f"cannot listen on {self.host}:{self.port} ({exc.strerror}): is ambient "
                "already running? (`ambient status`) Or pick another port with `ambient run --port N`"
            ) from None
        self.port = int(self._socket.getsockname()[1])

    async def __aenter__(self) -> Server:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.reserve()
        assert self._socket is not None
        home = self.daemon.config.home
        self.token = await asyncio.to_thread(load_or_create_token, home)
        installed = await asyncio.to_thread(places.installed)  # importing reads files
        self.web_app = create_app(self.daemon, Site(self.token, self.port), installed)
        self._runner = web.AppRunner(
            self.web_app, access_log=None, shutdown_timeout=5.0, keepalive_timeout=self.idle_timeout_s
        )
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()
        # Only now: whoever finds the daemon by this file finds it answering, its places running.
        await asyncio.to_thread(self._write_runtime_file)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            await asyncio.to_thread(self._remove_runtime_file)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    @property
    def url(self) -> str:
        """The UI's address, the token in its fragment (``http://127.0.0.1:PORT/#token=...``)."""
        return page_url(self.host, self.port, self.token)

    @property
    def runtime_file(self) -> Path:
        return self.daemon.config.home / RUNTIME_FILE

    def _write_runtime_file(self) -> None:
        info = {"pid": os.getpid(), "host": self.host, "port": self.port, "version": __version__}
        write_atomic(self.runtime_file, json.dumps(info) + "\n", mode=0o600)

    def _remove_runtime_file(self) -> None:
        try:
            info = json.loads(self.runtime_file.read_text())
        except (OSError, ValueError):
            return
        if info.get("pid") == os.getpid():
            self.runtime_file.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def serve(
    config: Config, app: App | None = None, *, port: int | None = None, queue_size: int = 32
) -> AsyncIterator[Server]:
    """A daemon and its server, started in that order (the port taken first) and stopped cleanly.

    At the end the daemon stops taking work first (waiting requests are answered), then the
    server closes, then the daemon lets go of the model and the store.
    """
    daemon = Daemon(config, app, queue_size=queue_size)
    server = Server(daemon, port=port)
    server.reserve()
    try:
        async with daemon:
            try:
                await server.start()
                yield server
            finally:
                await daemon.stop_intake()
                await server.stop()
    finally:
        await server.stop()
