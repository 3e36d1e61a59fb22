"""The token stays with the daemon: in Chromium, another server on 127.0.0.1 never sees it.

A cookie of 127.0.0.1 goes to every port of that host, so no cookie may carry the token; a URL's
fragment is never sent to a server, and another origin cannot read the tab's sessionStorage. The UI
is opened from the URL ``ambient run`` prints and used (text typed, offers streamed, a pick); then a
second plain server on another port (aiohttp, recording every request) is requested every way a page
can: from the UI page (an <img> and a fetch with credentials; the page's CSP, which would stop them,
is bypassed for this), by navigating to it, and from its own page. No request carries the token in
any header, cookie, path or query. The UI also shows why the daemon closed its socket (a message over
the cap: 1009) before it reconnects, and keeps the socket on deeply nested JSON.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from playwright.sync_api import expect

from tests.fakes import FakeSampler
from tests.reliability.helpers import ThreadedDaemon, make_config
from tests.test_web import CHROMIUM, CHROMIUM_ARGS

TEXT = "The lighthouse keeper counted the ships that passed in the night,"
PAGE = """<!doctype html><title>elsewhere</title>
<img src="/page-img.png">
<script>
  fetch("/page-fetch", { credentials: "include" });
  fetch("/page-xhr?x=1", { method: "POST", body: "hi", credentials: "include" });
</script>
"""


class OtherServer:
    """A plain local HTTP server on another port, in its own thread, that records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _record(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.requests.append(
            {
                "path": request.path_qs,
                "headers": list(request.headers.items()),
                "cookies": dict(request.cookies),
                "body": body,
            }
        )
        if request.path == "/page":
            return web.Response(text=PAGE, content_type="text/html")
        return web.Response(text="ok", headers={"Access-Control-Allow-Origin": "*"})

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> OtherServer:
        self._thread.start()
        assert self._ready.wait(10), "the other server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [r["path"].split("?")[0] for r in self.requests]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedDaemon]:
    config = make_config(tmp_path_factory.mktemp("isolation"), sampling__max_tokens=12)
    with ThreadedDaemon(config, FakeSampler(delay=0.01)) as rig:
        yield rig


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def use_the_ui(page: Any, rig: ThreadedDaemon) -> None:
    """Open the printed URL, type text, let the offers stream in, pick one with a key."""
    page.goto(rig.url)
    page.fill("#first-text", TEXT)
    page.click("#first-go")
    cards = page.locator("#offers .card[data-id]")
    expect(cards).to_have_count(2, timeout=30_000)
    expect(cards.first.locator(".tok")).not_to_have_count(0, timeout=30_000)
    picked = cards.first.get_attribute("data-id")
    page.keyboard.press("1")
    page.wait_for_selector(f'#path .seg.current.status-picked[data-id="{picked}"]')
    assert rig.blocking(rig.app.store.get_node, picked).status == "picked"


def wait_for(other: OtherServer, page: Any, *paths: str) -> None:
    """Wait (up to 10 s) until the other server has had a request for each of ``paths``."""
    for _ in range(100):
        if set(paths) <= set(other.paths()):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"the other server got {other.paths()}, not all of {paths}")


def test_no_other_server_on_the_host_ever_sees_the_token(rig: ThreadedDaemon, browser: Any) -> None:
    secret = rig.server.token
    context = browser.new_context(bypass_csp=True)  # let the UI page itself reach the other server
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with OtherServer() as other:
        use_the_ui(page, rig)
        assert secret not in page.url  # the fragment was read and dropped from the address bar
        assert page.evaluate("() => sessionStorage.getItem('ambient.token')") == secret
        assert page.evaluate("() => document.cookie") == "" and context.cookies() == []

        page.evaluate(
            """async (base) => {
                const img = new Image();
                img.src = `${base}/ui-img.png`;
                document.body.append(img);
                await fetch(`${base}/ui-fetch`, { credentials: "include" }).catch(() => null);
            }""",
            other.base,
        )
        wait_for(other, page, "/ui-img.png", "/ui-fetch")
        page.goto(f"{other.base}/page")  # leave the UI for the other server's page
        wait_for(other, page, "/page", "/page-img.png", "/page-fetch", "/page-xhr")
        page.go_back()  # the UI again, from the tab's sessionStorage: it still works without a URL token
        expect(page.locator("#path .seg.status-picked")).not_to_have_count(0, timeout=30_000)
        assert secret not in page.url

        assert len(other.requests) >= 6
        for request in other.requests:
            assert secret not in request["path"] and secret not in request["body"], request
            assert not any(secret in value for _, value in request["headers"]), request
            assert not any(name.lower() in ("cookie", "authorization") for name, _ in request["headers"]), (
                request
            )
            assert request["cookies"] == {}, request
    context.close()
    assert errors == [], errors


def test_the_ui_says_why_its_socket_closed_and_keeps_it_on_bad_json(
    rig: ThreadedDaemon, browser: Any
) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(rig.url)
    conn = page.locator("#conn")
    expect(conn).to_have_class("conn on")
    page.evaluate(
        """() => {
            window.__first = socket;
            window.__titles = [];
            new MutationObserver(() => window.__titles.push(document.querySelector("#conn").title))
                .observe(document.querySelector("#conn"), { attributes: true, attributeFilter: ["title"] });
        }"""
    )
    page.evaluate("() => socket.send('['.repeat(65000))")  # nested too deeply, within the cap
    expect(page.locator("#toast.error")).to_contain_text('a JSON object with a "type"')
    assert page.evaluate("() => socket === window.__first && socket.readyState === WebSocket.OPEN")

    page.evaluate("() => socket.send('x'.repeat(70000))")  # over the 64 KiB cap
    expect(page.locator("#toast.error")).to_contain_text("message too big: at most 64 KiB a message (1009)")
    expect(conn).to_have_class("conn on", timeout=10_000)  # and reconnected
    assert page.evaluate("() => socket !== window.__first")
    titles = page.evaluate("() => window.__titles")
    closed = titles.index("disconnected: message too big: at most 64 KiB a message (1009); reconnecting…")
    assert "connected" in titles[closed + 1 :], titles  # the reason was shown, then it reconnected
    page.close()
    assert errors == [], errors
