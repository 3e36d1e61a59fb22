"""Who may drive the daemon: attackers' requests are refused, and the refusal is tested.

Extends ``tests/test_server.py`` (token, Host, Origin, size refusals through the test client)
with what needs a real socket: a slowloris client trickling its headers byte by byte does not
block anyone and is cut off; WebSockets that never sign in hear nothing and are cut off; a body
larger than announced or never finished; tokens in odd places (even the right token in a cookie or
the URL is refused); file names with path traversal (the static route, the import and export commands).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import requests

from ambient import sockets
from ambient.server import Server
from tests.fakes import FakeSampler
from tests.reliability.helpers import AMBIENT_CLI, ThreadedDaemon, child_env, make_config

IDLE_TIMEOUT = 1.5


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedDaemon]:
    monkeypatch.setattr(Server, "idle_timeout_s", IDLE_TIMEOUT)
    with ThreadedDaemon(make_config(tmp_path, server__max_body_bytes=4096), FakeSampler()) as rig:
        yield rig


def _trickle(port: int, data: bytes, interval: float, stop: threading.Event, out: dict[str, float]) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        try:
            for byte in data:
                if stop.is_set():
                    break
                sock.sendall(bytes([byte]))
                time.sleep(interval)
            sock.settimeout(10)
            out["answer"] = float(len(sock.recv(1024)))
        except OSError:
            out["answer"] = -1.0
    out["closed_after"] = time.monotonic() - started


def test_a_slowloris_client_blocks_nobody_and_is_cut_off(rig: ThreadedDaemon) -> None:
    headers = f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{rig.server.port}\r\n" + "X-Pad: a\r\n" * 40
    stop, results = threading.Event(), [dict[str, float]() for _ in range(5)]
    slow = [
        threading.Thread(target=_trickle, args=(rig.server.port, headers.encode(), 0.05, stop, r))
        for r in results
    ]
    for thread in slow:
        thread.start()
    latencies = []
    for _ in range(20):  # others are served at once while the slow clients trickle
        began = time.monotonic()
        assert requests.get(f"{rig.base}/api/status", headers=rig.auth, timeout=5).status_code == 200
        latencies.append(time.monotonic() - began)
        time.sleep(0.02)
    for thread in slow:
        thread.join(30)
    stop.set()
    assert max(latencies) < 1.0, latencies
    for r in results:  # cut off without an answer, after the idle timeout, not after all the bytes
        assert r["answer"] <= 0, r
        assert IDLE_TIMEOUT - 0.2 < r["closed_after"] < IDLE_TIMEOUT + 5, r


def test_websockets_that_never_sign_in_hear_nothing_and_are_cut_off(
    rig: ThreadedDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sockets, "AUTH_TIMEOUT_S", IDLE_TIMEOUT)

    async def silent(session: aiohttp.ClientSession) -> tuple[int | None, int, float]:
        began = time.monotonic()
        async with session.ws_connect(f"{rig.base}/api/events") as ws:
            heard = 0
            async for _ in ws:  # text or binary: anything before signing in would be a leak
                heard += 1
            return ws.close_code, heard, time.monotonic() - began

    async def flood() -> tuple[list[tuple[int | None, int, float]], list[float]]:
        async with aiohttp.ClientSession() as session:
            waiting = [asyncio.ensure_future(silent(session)) for _ in range(20)]
            await asyncio.sleep(0.2)
            rig.loop.call_soon_threadsafe(rig.daemon.publish, "note_changed", {"path": "secret.md"})
            latencies = []
            for _ in range(10):  # others are served at once meanwhile
                began = time.monotonic()
                async with session.get(f"{rig.base}/api/status", headers=rig.auth) as resp:
                    assert resp.status == 200
                latencies.append(time.monotonic() - began)
            return await asyncio.gather(*waiting), latencies

    results, latencies = asyncio.run(flood())
    assert max(latencies) < 1.0, latencies
    for code, heard, after in results:
        assert code == sockets.UNAUTHORIZED and heard == 0, (code, heard)
        assert IDLE_TIMEOUT - 0.2 < after < IDLE_TIMEOUT + 5, after


def test_a_silent_connection_is_closed(rig: ThreadedDaemon) -> None:
    with socket.create_connection(("127.0.0.1", rig.server.port)) as sock:
        sock.settimeout(IDLE_TIMEOUT + 10)
        began = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - began < IDLE_TIMEOUT + 5


def test_a_body_shorter_than_announced_times_out_without_harm(rig: ThreadedDaemon) -> None:
    request = (
        f"POST /api/trees HTTP/1.1\r\nHost: 127.0.0.1:{rig.server.port}\r\n"
        f"Authorization: Bearer {rig.server.token}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n" + '{"text": "half'
    )
    with socket.create_connection(("127.0.0.1", rig.server.port)) as sock:
        sock.sendall(request.encode())
        sock.shutdown(socket.SHUT_WR)  # the client gives up half-way
        sock.settimeout(10)
        answer = sock.recv(4096)
    assert not answer.startswith(b"HTTP/1.1 2"), answer
    assert rig.blocking(rig.app.store.list_trees) == []


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, ""),
        ({"Authorization": "Bearer "}, ""),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, ""),
        ({"Authorization": "Bearer " + "A" * 43}, ""),
        ({"Authorization": "Bearer " + "é" * 43}, ""),
        ({"Cookie": "ambient_token_{port}={token}"}, ""),  # the right token, in a cookie
        ({}, "?token={token}"),  # the right token, in the URL
    ],
    ids=["none", "empty", "basic", "wrong", "non-ascii", "cookie", "query"],
)
def test_every_route_refuses_a_missing_or_wrong_token(
    rig: ThreadedDaemon, headers: dict[str, str], query: str
) -> None:
    from ambient import places
    from ambient.server import routes

    def fill(text: str) -> str:
        return text.replace("{port}", str(rig.server.port)).replace("{token}", rig.server.token)

    headers = {name: fill(value) for name, value in headers.items()}
    for route in routes(places.installed()):  # the core's and every place's
        path = route.path.replace("{tree_id}", "x").replace("{node_id}", "x").replace("{offer_id}", "x")
        url = rig.base + path + fill(query)
        resp = requests.request(route.method, url, headers=headers, json={"text": "x"}, timeout=5)
        assert resp.status_code == 401, (route.path, resp.text)
        error = resp.json()["error"]
        if route.client is not None:  # an API for other apps (/v1): a client key, in that API's error shape
            assert "client key" in (error["message"] if isinstance(error, dict) else error)
        else:
            assert "token" in error
    assert rig.blocking(rig.app.store.list_trees) == []


def test_a_rebinding_host_or_foreign_origin_is_refused_even_with_the_token(rig: ThreadedDaemon) -> None:
    port = rig.server.port
    for extra in (
        {"Host": f"attacker.example:{port}"},
        {"Host": f"127.0.0.1.nip.io:{port}"},
        {"Host": f"0.0.0.0:{port}"},
        {"Origin": "http://attacker.example"},
        {"Origin": f"http://127.0.0.1:{port}.attacker.example"},
    ):
        resp = requests.post(
            f"{rig.base}/api/trees", json={"text": "x"}, headers={**rig.auth, **extra}, timeout=5
        )
        assert resp.status_code == 403, extra
    assert rig.blocking(rig.app.store.list_trees) == []


@pytest.mark.parametrize(
    "name",
    [
        "../app.py",
        "..%2Fapp.py",
        "%2e%2e%2fserver.py",
        "..%5Cserver.py",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "app.js%00.py",
    ],
)
def test_the_static_route_serves_only_its_own_files(rig: ThreadedDaemon, name: str) -> None:
    resp = requests.get(f"{rig.base}/static/{name}", headers=rig.auth, timeout=5)
    assert resp.status_code == 404
    assert "import" not in resp.text and "root:" not in resp.text
    resp = requests.get(f"{rig.base}/static/{name}", timeout=5)  # public: without the token, no more
    assert resp.status_code in (401, 404), resp.status_code  # 401: the client made it a path off /static/
    assert "import" not in resp.text and "root:" not in resp.text


def test_cli_file_names_with_traversal_touch_only_what_they_name(tmp_path: Path) -> None:
    """``ambient import`` and ``export -o`` take a path from a person; odd ones are refused cleanly."""
    home = tmp_path / "home"
    env = child_env(home, AMBIENT_MEMORY_ENABLED="false")
    for name in ("../../../../etc/shadow", str(tmp_path / "missing.json"), "/dev/zero", str(tmp_path)):
        done = subprocess.run(
            [*AMBIENT_CLI, "import", name], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, (name, done.stderr)
        assert done.stderr.startswith("ambient: ") and "Traceback" not in done.stderr
    loom = tmp_path / "in.json"
    loom.write_text(json.dumps({"root": {"id": "r1", "text": "Root.", "children": []}}))
    done = subprocess.run(
        [*AMBIENT_CLI, "import", str(loom), "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    tree_id = json.loads(done.stdout)["tree_id"]
    for target in ("../" * 12 + "proc/self/mem", str(tmp_path)):
        done = subprocess.run(
            [*AMBIENT_CLI, "export", tree_id, "-o", target],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0 and "Traceback" not in done.stderr, (target, done.stderr)


def test_an_odd_expect_header_still_meets_the_guard(rig: ThreadedDaemon) -> None:
    """aiohttp answers an unknown Expect with a plain-text 417 before any check; ours go through the guard."""
    resp = requests.post(f"{rig.base}/api/trees", json={"text": "x"}, headers={"Expect": "QG"}, timeout=5)
    assert resp.status_code == 401 and "token" in resp.json()["error"]
    headers = {**rig.auth, "Expect": "100-continue"}
    resp = requests.post(
        f"{rig.base}/api/trees", json={"text": "x", "offer": False}, headers=headers, timeout=5
    )
    assert resp.status_code == 201
