"""The web UI shows a source that crashed: at load (from the hello status) and live (source_status)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ambient.source_host import SourceHost
from ambient.sources import Source
from tests.fakes import FakeSampler
from tests.places import Installer
from tests.reliability.helpers import ThreadedDaemon, make_config
from tests.test_daemon import FlakyOptions
from tests.test_web import CHROMIUM, CHROMIUM_ARGS


class CrashOnce(Source):
    name: ClassVar[str] = "crashy"
    options_class: ClassVar[type[Any]] = FlakyOptions
    runs = 0

    async def setup(self) -> None:
        pass

    async def run(self) -> None:
        type(self).runs += 1
        if type(self).runs == 1:
            raise OSError("the microphone went away")
        await asyncio.Event().wait()


@pytest.fixture
def rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, install_places: Installer
) -> Iterator[ThreadedDaemon]:
    install_places({"crashy": "tests.reliability.test_ui_sources:CrashOnce"})
    monkeypatch.setattr(SourceHost, "backoff_initial", 0.01)
    CrashOnce.runs = 0
    with ThreadedDaemon(make_config(tmp_path, sources={"crashy": {}}), FakeSampler()) as rig:
        yield rig


def test_the_ui_shows_crashed_sources(rig: ThreadedDaemon) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{rig.base}/?token={rig.server.token}")  # an old link: redirected to the fragment form
        badge = page.locator("#sources")
        expect(badge).to_have_text("crashy: running, restarted 1×")  # from the hello status
        assert "token" not in page.url and page.url.rstrip("/") == rig.base
        assert "OSError: the microphone went away" in (badge.get_attribute("title") or "")
        event = {"name": "notes", "state": "restarting", "restarts": 3, "last_error": "RuntimeError: boom"}
        rig.loop.call_soon_threadsafe(rig.daemon.publish, "source_status", event)
        expect(badge).to_contain_text("notes: restarting, restarted 3×")
        expect(badge).to_have_class("sources bad")
        browser.close()
    assert errors == []
