"""The UI's "Accept into note" button: headless Chromium, the real daemon and notes source, the tiny model.

A save brings offers; the button (and the key a) puts one into the note file at the point; after the
note changed around the point the refusal (409) is shown and the file is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from ambient.config import load_config
from tests.test_web import CHROMIUM, CHROMIUM_ARGS, DaemonThread


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    return folder


@pytest.fixture
def daemon(tiny_model_path: Path, tmp_path: Path, notes: Path) -> Iterator[DaemonThread]:
    config = load_config(env={"AMBIENT_HOME": str(tmp_path / "home")}).replace(
        model__backend="local",
        model__path=str(tiny_model_path),
        model__device="cpu",
        memory__enabled=False,
        server__port=0,
        sampling__n=2,
        sampling__max_tokens=5,
        sources={"notes": {"folders": [str(notes)], "quiet_ms": 100}},
    )
    with DaemonThread(config) as d:
        yield d


def note_tree(daemon: DaemonThread, note: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        trees = [t for t in daemon.api("/api/trees")["trees"] if t["source"] == f"note:{note}"]
        if trees:
            view = daemon.api(f"/api/trees/{trees[0]['id']}")
            if any(o["state"] == "done" for o in view["offers"]):
                return view
        assert time.monotonic() < deadline, "no offer for the note"
        time.sleep(0.1)


def test_accept_button_inserts_and_a_refusal_is_shown(daemon: DaemonThread, notes: Path) -> None:
    from playwright.sync_api import sync_playwright

    time.sleep(0.5)  # the watcher starts with the daemon
    note = notes / "journal.md"
    note.write_text("Monday.\nThe river was grey")
    view = note_tree(daemon, note)
    offer = next(o for o in view["offers"] if o["state"] == "done")
    first, second = offer["node_ids"][:2]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(daemon.url)
        page.goto(daemon.url.split("/#")[0] + f"/#t={view['tree']['id']}&n={offer['parent_id']}")
        page.reload()
        card = page.locator(f'#offers .card[data-id="{first}"]')
        expect(card).to_have_count(1, timeout=30_000)
        text = daemon.api(f"/api/nodes/{first}")["node"]["text"]
        card.locator('button[data-act="accept"]').click()
        expect(page.locator("#toast")).to_contain_text("Accepted into journal.md", timeout=10_000)
        assert note.read_text() == "Monday.\nThe river was grey" + text

        # The note changes around the point: the next accept is refused, and says so.
        note.write_text("Monday.\nThe river was green and cold.")
        before = note.read_bytes()
        page.click(f'#path .seg[data-id="{offer["parent_id"]}"]')
        page.locator(f'#offers .card[data-id="{second}"]').wait_for(timeout=10_000)
        page.evaluate(f"() => select({second!r})")
        expect(page.locator("#accept-btn")).to_be_visible()
        page.keyboard.press("a")
        toast = page.locator("#toast.error")
        expect(toast).to_contain_text("Not accepted, the note was left as it is", timeout=10_000)
        expect(toast).to_contain_text("changed around the point")
        assert note.read_bytes() == before
        browser.close()
        assert errors == [], errors
