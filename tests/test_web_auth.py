"""Who may use the web server, and the WebSocket's edges (aiohttp's test client, the real app and store).

The token travels only in ``Authorization: Bearer`` (every /api route) and as the WebSocket's first
message, never in a cookie or a URL a server sees; the page and its static files are public. Deeply
nested JSON is bad input (400, or an error event with the socket kept); a message over the cap closes
the socket with 1009 and a reason. A token file left empty by a crash is replaced.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType, web
from aiohttp.test_utils import TestClient

from ambient import sockets
from ambient.api import DAEMON
from ambient.app import App
from ambient.daemon import Daemon
from ambient.errors import AmbientError
from ambient.security import load_or_create_token
from tests.fakes import FakeSampler
from tests.test_server import make_config
from tests.web_app import bearer, token, web_app

pytestmark = pytest.mark.strict_loop  # the daemon never blocks its event loop

MAX_BODY = 200_000  # room for "[" x 100,000 within the body limit
DEEP = "[" * 100_000


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[web.Application]:
    config = make_config(tmp_path, server__max_body_bytes=MAX_BODY)
    app = App(config, sampler=FakeSampler())
    async with Daemon(config, app) as daemon:
        yield web_app(daemon)
    app.close()


@pytest.fixture
async def anonymous(served: web.Application, aiohttp_client: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(served)
    return client


def own_origin(client: TestClient[Any, Any]) -> dict[str, str]:
    return {"Origin": f"http://127.0.0.1:{client.port}"}


async def sign_in(ws: ClientWebSocketResponse, given: str) -> dict[str, Any]:
    """Send the auth message; the first event after it, the hello."""
    await ws.send_str(json.dumps({"type": "auth", "token": given}))
    hello: dict[str, Any] = await ws.receive_json(timeout=5)
    return hello


async def closed(ws: ClientWebSocketResponse) -> tuple[int, str]:
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.CLOSE, msg
    return int(msg.data), str(msg.extra)


# --------------------------------------------------------------- HTTP
async def test_api_routes_take_the_token_only_in_the_bearer_header(
    served: web.Application, anonymous: TestClient[Any, Any]
) -> None:
    for method, path in (("GET", "/api/status"), ("GET", "/api/openapi.json"), ("POST", "/api/trees")):
        resp = await anonymous.request(method, path, json={"text": "x"})
        assert resp.status == 401, path
        assert "no token" in (await resp.json())["error"]
    resp = await anonymous.get("/api/status", headers={"Authorization": "Bearer " + "x" * 43})
    assert resp.status == 401 and "wrong token" in (await resp.json())["error"]
    resp = await anonymous.get("/api/status", params={"token": token(served)})  # the right one, in the URL
    assert resp.status == 401 and "Authorization: Bearer" in (await resp.json())["error"]
    old_cookie = f"ambient_token_{anonymous.port}"  # where an earlier version kept the token
    resp = await anonymous.get("/api/status", headers={"Cookie": f"{old_cookie}={token(served)}"})
    assert resp.status == 401  # no cookie carries the token, not even the right one
    assert resp.cookies[old_cookie]["max-age"] == "0"  # and the browser is told to forget it
    resp = await anonymous.get("/api/status", headers=bearer(served))
    assert resp.status == 200 and "Set-Cookie" not in resp.headers


async def test_the_page_and_its_files_are_public_with_their_checks(anonymous: TestClient[Any, Any]) -> None:
    page = await anonymous.get("/")
    assert page.status == 200 and "<title>ambient</title>" in await page.text()
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer" and "Set-Cookie" not in page.headers
    for name in ("app.js", "style.css", "favicon.svg"):
        resp = await anonymous.get(f"/static/{name}")
        assert resp.status == 200 and "Set-Cookie" not in resp.headers, name
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert (await anonymous.get("/static/server.py")).status == 404
    resp = await anonymous.get("/", headers={"Host": f"evil.example:{anonymous.port}"})
    assert resp.status == 403 and "DNS rebinding" in (await resp.json())["error"]


async def test_a_url_token_is_redirected_to_the_fragment(
    served: web.Application, anonymous: TestClient[Any, Any]
) -> None:
    resp = await anonymous.get(f"/?token={token(served)}", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/#token={token(served)}"
    assert "Set-Cookie" not in resp.headers
    resp = await anonymous.get("/?token=" + "y" * 43, allow_redirects=False)
    assert resp.status == 401 and "wrong token" in (await resp.json())["error"]


@pytest.mark.parametrize(
    "body",
    [DEEP, '{"text": ' * 20_000, "[" * 60_000 + "]" * 60_000],
    ids=["open-arrays", "open-objects", "closed-arrays"],
)
async def test_deeply_nested_json_is_a_400(
    served: web.Application, anonymous: TestClient[Any, Any], body: str
) -> None:
    headers = {**bearer(served), "Content-Type": "application/json"}
    resp = await anonymous.post("/api/trees", data=body.encode(), headers=headers)
    assert resp.status == 400
    assert "nested too deeply" in (await resp.json())["error"]
    assert (await anonymous.get("/api/status", headers=bearer(served))).status == 200


# ---------------------------------------------------------- WebSocket
async def test_the_socket_receives_nothing_before_it_signs_in(
    served: web.Application, anonymous: TestClient[Any, Any]
) -> None:
    daemon = served[DAEMON]
    ws = await anonymous.ws_connect("/api/events", headers=own_origin(anonymous))
    daemon.publish("note_changed", {"path": "secret.md"})
    with pytest.raises(asyncio.TimeoutError):
        await ws.receive(timeout=0.3)
    assert daemon.status()["subscribers"] == 0  # not subscribed to anything yet
    hello = await sign_in(ws, token(served))
    assert hello["type"] == "hello" and hello["data"]["pid"] == os.getpid()
    assert daemon.status()["subscribers"] == 1
    daemon.publish("note_changed", {"path": "later.md"})
    assert (await ws.receive_json(timeout=5))["data"] == {"path": "later.md"}
    await ws.close()


@pytest.mark.parametrize(
    ("first", "says"),
    [
        (json.dumps({"type": "auth", "token": "z" * 43}), "wrong token"),
        ('{"type": "auth", "token": "\\ud800x\\udc80"}', "wrong token"),  # lone surrogates
        (json.dumps({"type": "auth"}), "first message must be"),
        (json.dumps({"type": "auth", "token": 7}), "first message must be"),
        ("ping", "first message must be"),
        (json.dumps({"type": "speech_start", "session": "s"}), "first message must be"),
        ("[" * 60_000, "first message must be"),
        (b"\x00\x01", "first message must be"),
    ],
    ids=["wrong", "surrogates", "no-token", "number", "ping", "other-type", "deep", "binary"],
)
async def test_a_socket_without_the_token_is_closed_with_4401_and_why(
    served: web.Application, anonymous: TestClient[Any, Any], first: str | bytes, says: str
) -> None:
    ws = await anonymous.ws_connect("/api/events", headers=own_origin(anonymous))
    await (ws.send_bytes(first) if isinstance(first, bytes) else ws.send_str(first))
    code, reason = await closed(ws)
    assert code == sockets.UNAUTHORIZED and says in reason
    assert served[DAEMON].status()["subscribers"] == 0


async def test_a_silent_socket_is_closed_in_time(
    anonymous: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sockets, "AUTH_TIMEOUT_S", 0.2)
    ws = await anonymous.ws_connect("/api/events", headers=own_origin(anonymous))
    code, reason = await closed(ws)
    assert code == sockets.UNAUTHORIZED and reason.startswith("no token within 0.2 s")


async def test_the_handshake_keeps_its_checks(
    served: web.Application, anonymous: TestClient[Any, Any]
) -> None:
    resp = await anonymous.get("/api/events", headers={"Origin": "http://evil.example"})
    assert resp.status == 403  # another page in the browser: refused before any upgrade
    resp = await anonymous.get("/api/events", params={"token": token(served)})
    assert resp.status == 401 and "not taken" in (await resp.json())["error"]
    resp = await anonymous.get("/api/events", headers={"Authorization": "Bearer " + "w" * 43})
    assert resp.status == 401 and "wrong token" in (await resp.json())["error"]
    ws = await anonymous.ws_connect("/api/events", headers=bearer(served))  # a client that sets headers
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await ws.close()


async def test_deep_json_on_the_socket_is_an_error_event_and_the_socket_stays(
    served: web.Application, anonymous: TestClient[Any, Any]
) -> None:
    ws = await anonymous.ws_connect("/api/events", headers=own_origin(anonymous))
    await sign_in(ws, token(served))
    for deep in ("[" * 65_000, '{"type": ' * 6_000, "[" * 30_000 + "]" * 30_000):
        assert len(deep) <= sockets.MAX_MESSAGE_BYTES
        await ws.send_str(deep)
        event = await ws.receive_json(timeout=5)
        assert event["type"] == "error" and "JSON object" in event["message"]
    await ws.send_str("ping")
    assert (await ws.receive_json(timeout=5))["type"] == "pong"
    await ws.close()


@pytest.mark.parametrize("signed_in", [True, False], ids=["signed-in", "first-message"])
async def test_a_message_over_the_cap_closes_with_1009_and_a_reason(
    served: web.Application, anonymous: TestClient[Any, Any], signed_in: bool
) -> None:
    ws = await anonymous.ws_connect("/api/events", headers=own_origin(anonymous))
    if signed_in:
        await sign_in(ws, token(served))
    await ws.send_str("x" * (sockets.MAX_MESSAGE_BYTES + 1))
    code, reason = await closed(ws)
    assert code == 1009 and reason == "message too big: at most 64 KiB a message"
    assert (await anonymous.get("/api/status", headers=bearer(served))).status == 200


# --------------------------------------------------------- token file
def test_token_file_is_private_and_reused(tmp_path: Path) -> None:
    made = load_or_create_token(tmp_path)
    mode = stat.S_IMODE(os.stat(tmp_path / "token").st_mode)
    assert mode == 0o600 and len(made) >= 32
    os.chmod(tmp_path / "token", 0o644)
    assert load_or_create_token(tmp_path) == made
    assert stat.S_IMODE(os.stat(tmp_path / "token").st_mode) == 0o600


@pytest.mark.parametrize("left", ["", "  \n", "\n\n"], ids=["empty", "blank", "newlines"])
def test_a_token_file_left_empty_by_a_crash_is_replaced(tmp_path: Path, left: str) -> None:
    path = tmp_path / "token"
    path.write_text(left)
    os.chmod(path, 0o600)
    made = load_or_create_token(tmp_path)
    assert len(made) >= 32 and path.read_text() == made + "\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_token(tmp_path) == made  # and kept from then on


def test_a_token_file_with_something_else_is_kept_and_named(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("not a token\n")
    with pytest.raises(AmbientError, match="delete it and start again"):
        load_or_create_token(tmp_path)
    assert path.read_text() == "not a token\n"  # a person's file is not overwritten
