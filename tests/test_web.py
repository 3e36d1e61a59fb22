"""The web UI end to end: headless Chromium, the real daemon, the tiny real model, real memory.

Open the page, type text, see N offers stream in, pick one with a key, reload
and see the pick kept, search by meaning and open a result. A screenshot is
kept in artifacts/web-ui.png.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from ambient.config import Config, load_config
from ambient.server import serve

CHROMIUM = Path("/usr/bin/chromium")  # Debian's: `make test` installs it (make system)
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
N = 3
FIRST_TEXT = "The river runs past the old mill and under the stone bridge. In the morning the water is grey,"
SECOND_TEXT = "She wrote a letter to her brother, who lived in a small town by the sea."

# Recorded in the page: the type of every WebSocket event, and the most streaming cards seen with text.
RECORDER = """
window.__events = [];
window.__streamingSeen = 0;
const Original = window.WebSocket;
window.WebSocket = class extends Original {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (m) => window.__events.push(JSON.parse(m.data).type));
  }
};
new MutationObserver(() => {
  const live = [...document.querySelectorAll(".card.streaming")].filter((c) => c.querySelector(".tok"));
  window.__streamingSeen = Math.max(window.__streamingSeen, live.length);
}).observe(document, { childList: true, subtree: true });
"""


class DaemonThread:
    """The daemon on its own event loop in a thread (Playwright's sync API owns the main one)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.ready = threading.Event()
        self.url = ""
        self.token = ""
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="daemon", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self.config) as server:
            self.url, self.token = server.url, server.token
            self.memory = server.daemon.memory_ready
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> DaemonThread:
        self._thread.start()
        self.ready.wait(120)
        if self.error is not None:
            raise self.error
        assert self.url, "the daemon did not start within 120 s"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def api(self, path: str) -> Any:
        base = self.url.split("/#")[0]
        request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def model_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        path: Path = request.getfixturevalue("tiny_model_path")
        return path
    except pytest.FixtureLookupError:
        from ambient.models import build_tiny_model

        return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def daemon(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonThread]:
    home = tmp_path_factory.mktemp("web-home")
    config = load_config(env={"AMBIENT_HOME": str(home)}).replace(
        model__backend="local",
        model__path=str(model_path),
        model__device="cpu",
        server__port=0,
        sampling__n=N,
        sampling__max_tokens=160,  # an offer lasts long enough for its cards to be seen streaming
        sampling__seed=7,
    )
    with DaemonThread(config) as d:
        yield d


@pytest.fixture(scope="module")
def ui(daemon: DaemonThread) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "needs Debian's chromium: `make system` (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_init_script(RECORDER)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        yield pg
        browser.close()
        assert errors == [], errors


def _poll(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_type_stream_pick_reload(daemon: DaemonThread, ui: Any) -> None:
    ui.goto(daemon.url)
    ui.wait_for_selector("#first-text")
    assert daemon.token not in ui.url  # read from the fragment into sessionStorage, gone from the address bar
    assert ui.evaluate("() => document.cookie") == "" and ui.context.cookies() == []  # and in no cookie
    ARTIFACTS.mkdir(exist_ok=True)
    ui.fill("#first-text", FIRST_TEXT)
    ui.click("#first-go")

    expect(ui.locator("#offers .card[data-id]")).to_have_count(N, timeout=60_000)
    events = ui.evaluate("() => window.__events")
    assert events.index("offer_started") < events.index("token") < events.index("offer_done")
    assert events.count("token") >= N
    assert ui.evaluate("() => window.__streamingSeen") >= 1  # cards filled token by token
    assert ui.locator("#offers .card[data-id] .tok").count() > 0  # heatmap tokens
    ui.screenshot(path=str(ARTIFACTS / "web-ui-offers.png"))

    second = ui.locator("#offers .card[data-id]").nth(1)
    picked_id = second.get_attribute("data-id")
    ui.keyboard.press("2")
    ui.wait_for_selector(f'#path .seg.current.status-picked[data-id="{picked_id}"]')
    assert daemon.api(f"/api/nodes/{picked_id}")["node"]["status"] == "picked"
    _poll(lambda: ui.evaluate("() => window.__events").count("offer_started") >= 2)  # auto-offer asked

    ui.reload()
    ui.wait_for_selector(f'#path .seg.current.status-picked[data-id="{picked_id}"]')
    assert ui.locator(f'#tree .tn.sel[data-id="{picked_id}"]').count() == 1
    first_offer = ui.locator("#path .seg[data-id]").first
    assert first_offer.inner_text() == FIRST_TEXT

    # auto-offer: the pick asked for continuations of the picked node
    expect(ui.locator("#offers .card[data-id]")).to_have_count(N, timeout=60_000)
    ui.keyboard.press("p")
    ui.wait_for_selector("#panel:not([hidden]) .provenance dl")
    ui.locator("#path .seg.current .tok").nth(2).hover()
    ui.wait_for_selector("#tokencard:not([hidden]) .alt")
    ui.screenshot(path=str(ARTIFACTS / "web-ui.png"))


def test_keyboard_moves_through_the_tree(daemon: DaemonThread, ui: Any) -> None:
    current = ui.locator("#path .seg.current").get_attribute("data-id")
    ui.keyboard.press("k")  # parent
    parent = daemon.api(f"/api/nodes/{current}")["node"]["parent_id"]
    ui.wait_for_selector(f'#path .seg.current[data-id="{parent}"]')
    ui.keyboard.press("ArrowDown")  # back to the child we came from
    ui.wait_for_selector(f'#path .seg.current[data-id="{current}"]')
    ui.keyboard.press("l")  # next sibling
    ui.wait_for_selector(f'#path .seg.current:not([data-id="{current}"])')
    ui.keyboard.press("h")
    ui.wait_for_selector(f'#path .seg.current[data-id="{current}"]')


def test_search_opens_a_result_in_its_tree(daemon: DaemonThread, ui: Any) -> None:
    if not daemon.memory:
        status = daemon.api("/api/status")
        pytest.fail(f"memory is not available here: {status['memory']['warning']}")
    first_tree = ui.locator("#tree-select").input_value()
    ui.keyboard.press("n")
    ui.fill("#new-text", SECOND_TEXT)
    ui.click("#new-go")
    expect(ui.locator("#tree-select")).not_to_have_value(first_tree)

    query = "water flowing under a bridge by a mill"
    deadline = time.monotonic() + 60
    while True:  # memory is indexed in the background after each offer and pick
        results = daemon.api("/api/search?" + urllib.parse.urlencode({"q": query}))["results"]
        if any(r["tree_id"] == first_tree for r in results):
            break
        assert time.monotonic() < deadline, results
        time.sleep(0.5)

    expect(ui.locator("dialog[open]")).to_have_count(0)  # keys go to the page only once the dialog is gone
    ui.keyboard.press("/")
    expect(ui.locator("#search")).to_be_focused()
    ui.keyboard.type(query)
    ui.keyboard.press("Enter")
    hit = ui.locator(f'#search-results .result[data-tree="{first_tree}"]').first
    hit.wait_for()
    node_id = hit.get_attribute("data-node")
    hit.click()
    ui.wait_for_selector(f'#path .seg.current[data-id="{node_id}"]')
    assert ui.locator("#tree-select").input_value() == first_tree
    ui.screenshot(path=str(ARTIFACTS / "web-ui-search.png"))
