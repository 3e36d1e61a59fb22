"""The UI's Forget action: headless Chromium, the real daemon and memory, the tiny model.

A continuation is forgotten from its card (after the confirm dialog): it leaves the
page, the store and search; a second click on another card, dismissed, forgets
nothing.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from ambient.config import load_config
from tests.test_web import CHROMIUM, CHROMIUM_ARGS, DaemonThread

SECRET = "The amber violin sleeps beneath the orchard well."


@pytest.fixture
def daemon(tiny_model_path: Path, tmp_path: Path) -> Iterator[DaemonThread]:
    config = load_config(env={"AMBIENT_HOME": str(tmp_path / "home")}).replace(
        model__backend="local",
        model__path=str(tiny_model_path),
        model__device="cpu",
        server__port=0,
        sampling__n=2,
        sampling__max_tokens=4,
    )
    with DaemonThread(config) as d:
        yield d


def test_forget_from_a_card(daemon: DaemonThread) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(daemon.url)
        page.fill("#first-text", "Grandmother's house by the sea.\n" + SECRET)
        page.click("#first-go")
        expect(page.locator("#offers .card[data-id]")).to_have_count(2, timeout=60_000)
        first, second = page.locator("#offers .card[data-id]").evaluate_all(
            "(cs) => cs.map((c) => c.dataset.id)"
        )
        assert {first, second} <= _indexed(daemon)  # both are findable by meaning before

        page.once("dialog", lambda dialog: dialog.dismiss())  # "no": nothing happens
        page.locator(f'#offers .card[data-id="{second}"] button[data-act="forget"]').click()
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator(f'#offers .card[data-id="{first}"] button[data-act="forget"]').click()
        expect(page.locator("#toast")).to_contain_text("forgot 1 node(s)", timeout=10_000)
        expect(page.locator(f'#offers .card[data-id="{first}"]')).to_have_count(0, timeout=10_000)
        browser.close()
    assert errors == [], errors
    with pytest.raises(urllib.error.HTTPError) as gone:
        daemon.api(f"/api/nodes/{first}")
    assert gone.value.code == 404
    assert daemon.api(f"/api/nodes/{second}")["node"]["id"] == second  # the dismissed one stays
    found = _search(daemon)  # forgetting removed its entry at once; the kept sibling is still there
    assert first not in found and second in found


QUERY = urllib.parse.urlencode({"q": "a house by the sea and a violin under a well", "k": 50})


def _search(daemon: DaemonThread) -> set[str]:
    return {r["node_id"] for r in daemon.api(f"/api/search?{QUERY}")["results"]}


def _indexed(daemon: DaemonThread, timeout: float = 60.0) -> set[str]:
    """What search finds once the background indexing after the offer has run (every node here)."""
    deadline = time.monotonic() + timeout
    while len(found := _search(daemon)) < 3 and time.monotonic() < deadline:  # root + 2 continuations
        time.sleep(0.2)
    return found
