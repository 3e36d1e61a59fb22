"""Who may use an API for other apps (a :class:`~ambient.validation.ClientAPI`, e.g. ``/v1``).

The UI's rules (:mod:`ambient.security`) keep every other app out: its token is the UI's alone
and only its own page's Origin is let in. An API for other apps is reached differently, and
only under its own path prefix:

* the Host check is the same as everywhere (loopback with this port: no DNS rebinding);
* a request carries a client key (:mod:`ambient.keys`) in ``Authorization: Bearer KEY``, as the
  OpenAI SDKs send it; the UI's token is not a client key and is refused;
* a request with an ``Origin`` (a browser, or an Electron app such as Obsidian, whose plugins send
  ``app://obsidian.md``) is let in only when ``server.client_origins`` lists that origin; its
  answers then carry ``Access-Control-Allow-Origin`` for it, and the CORS preflight
  (``OPTIONS`` with ``Access-Control-Request-Method``) is answered under the prefix only;
* errors have the shape that API's clients read (:attr:`ClientAPI.error_body`).

A handler finds the key it was called with by :func:`client_key`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from aiohttp import web

from ambient.keys import Key, KeyStore
from ambient.security import Refused, Unauthorized, bearer_token, token_matches
from ambient.validation import ClientAPI, Handler

T = TypeVar("T")
RunBlocking = Callable[..., Awaitable[Any]]

CLIENT_KEY = web.RequestKey("client_key", Key)
CLIENT_ORIGIN = web.RequestKey("client_origin", str)
PREFLIGHT_MAX_AGE_S = 600
ALLOWED_METHODS = "GET, POST, OPTIONS"
_HEADER_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")
NO_KEY = (
    "no client key: send 'Authorization: Bearer KEY' with a key from `ambient keys add NAME` "
    "(the API key setting of the app)"
)
WRONG_KEY = (
    "this is not a client key (or it was removed): make one with `ambient keys add NAME` and put it "
    "in the app's API key setting (the UI's token is never one)"
)


def apis_of(routes: Iterable[Any]) -> dict[str, ClientAPI]:
    """The APIs for other apps among ``routes`` (:class:`~ambient.validation.Route`), by prefix.

    Raises ValueError for a declaration that would leave a route under the wrong rules: a client
    route outside its prefix, a UI route inside one, a prefix over the UI's ``/api``.
    """
    apis: dict[str, ClientAPI] = {}
    for route in routes:
        if route.client is not None:
            api = route.client
            if not api.prefix.startswith("/") or api.prefix.rstrip("/") in ("", "/api") or api.covers("/api"):
                raise ValueError(f"an API for other apps cannot live at {api.prefix!r}")
            if not api.covers(route.path):
                raise ValueError(f"{route.method} {route.path} is outside its API's prefix {api.prefix}")
            apis.setdefault(api.prefix, api)
    for route in routes:
        holder = api_at(apis, route.path)
        if holder is not None and route.client != holder:
            raise ValueError(f"{route.method} {route.path} is under {holder.prefix}, not one of its routes")
    return apis


def api_at(apis: Mapping[str, ClientAPI], path: str) -> ClientAPI | None:
    """The API for other apps whose prefix covers ``path``, if any."""
    for api in apis.values():
        if api.covers(path):
            return api
    return None


def allowed_origin(request: web.Request, origins: Iterable[str]) -> str | None:
    """The request's Origin when ``server.client_origins`` lists it; None without one; else refused."""
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    if origin.strip().lower() not in {o.lower() for o in origins}:
        raise Refused(
            f"Origin {origin!r} may not use this API: add it to server.client_origins in ambient.toml "
            "(e.g. client_origins = [\"app://obsidian.md\"]) and restart ambient"
        )
    return origin


def preflight(request: web.Request, origin: str | None) -> web.Response:
    """The answer to a CORS preflight from an allowed origin (no body, nothing done)."""
    response = web.Response(status=204)
    if origin is None:
        return response
    response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
    asked = request.headers.get("Access-Control-Request-Headers", "").strip()
    if asked and _HEADER_LIST.fullmatch(asked):  # the headers its SDK sends (Authorization, x-stainless-*)
        response.headers["Access-Control-Allow-Headers"] = asked
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
    return response


async def authenticate(
    request: web.Request, keys: KeyStore, ui_token: str, run_blocking: RunBlocking
) -> Key:
    """The client key of ``request`` (checked off the event loop: it reads the keys file)."""
    given = bearer_token(request)
    if not given:
        raise Unauthorized(NO_KEY)
    if token_matches(ui_token, given):  # said plainly: the UI's token opens the UI only
        raise Unauthorized(WRONG_KEY)
    key: Key | None = await run_blocking(keys.verify, given)
    if key is None:
        raise Unauthorized(WRONG_KEY)
    return key


async def guard(
    request: web.Request,
    handler: Handler,
    *,
    origins: Iterable[str],
    keys: KeyStore,
    ui_token: str,
    run_blocking: RunBlocking,
) -> web.StreamResponse:
    """The checks of a request under an API for other apps, after the Host check; then ``handler``."""
    origin = allowed_origin(request, origins)
    if origin is not None:
        request[CLIENT_ORIGIN] = origin  # from here on, its answers (errors too) are readable there
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return preflight(request, origin)
    request[CLIENT_KEY] = await authenticate(request, keys, ui_token, run_blocking)
    return await handler(request)


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: an allowed origin may read the answer (streamed ones included)."""
    origin = request.get(CLIENT_ORIGIN)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")


def client_key(request: web.Request) -> Key:
    """The key a request under an API for other apps was made with (set by :func:`guard`)."""
    return request[CLIENT_KEY]
