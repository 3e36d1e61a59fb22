"""Hostile files in the notes folder: huge, binary, deeply nested, symlink loops, FIFOs, odd names.

Each is skipped with one log line (or taken, when it is a fine note under an odd name); the
notes source never crashes or restarts, the watcher stays alive, and a plain note saved
afterwards still gets its offer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ambient.app import App
from ambient.daemon import Daemon
from ambient.events import Subscriber
from tests.fakes import FakeSampler
from tests.reliability.helpers import make_config

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")
MAX_BYTES = 100_000


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[tuple[Daemon, Path, Subscriber]]:
    notes = tmp_path / "notes"
    notes.mkdir()
    tables = {"notes": {"folders": [str(notes)], "quiet_ms": 20, "max_bytes": MAX_BYTES, "sidecars": False}}
    config = make_config(tmp_path / "home", sources=tables)
    app = App(config, sampler=FakeSampler())
    async with Daemon(config, app) as daemon:
        source = daemon.sources.get("notes")
        assert source is not None
        while not source.status()["watching"]:
            await asyncio.sleep(0.01)
        yield daemon, notes, daemon.subscribe()
    app.close()


async def offer_for(sub: Subscriber, suffix: str, timeout: float = 15.0) -> dict[str, object]:
    async def wait() -> dict[str, object]:
        while True:
            message = await sub.queue.get()
            assert message is not None
            event = json.loads(message)
            if event["type"] == "note_changed" and str(event["data"]["path"]).endswith(suffix):
                return dict(event["data"])

    return await asyncio.wait_for(wait(), timeout)


def _hostile(notes: Path) -> None:
    (notes / "huge.md").write_bytes(b"word " * (MAX_BYTES // 2))  # 2.5x the limit
    (notes / "binary.md").write_bytes(os.urandom(4096) + b"\x00" * 16)
    (notes / "latin1.md").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    deep = notes
    for i in range(120):  # 120 levels: the watcher recurses into each
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "deep.md").write_text("A note at the bottom of a deep well.\n")
    (notes / "loop-a.md").symlink_to(notes / "loop-b.md")
    (notes / "loop-b.md").symlink_to(notes / "loop-a.md")
    (notes / "dirloop").mkdir()
    (notes / "dirloop" / "again").symlink_to(notes / "dirloop", target_is_directory=True)
    (notes / "dangling.md").symlink_to(notes / "nowhere.md")
    os.mkfifo(notes / "fifo.md")
    odd = os.fsencode(notes) + b"/odd-\xff\xfe-name.md"  # not UTF-8: a name no str can spell
    with open(odd, "wb") as fh:
        fh.write(b"A fine note under an odd name.\n")
    (notes / "emoji-\U0001f30a-\u202e-rtl.md").write_text("Waves.\n")
    (notes / "empty.md").write_bytes(b"")


async def test_hostile_files_are_skipped_and_the_source_keeps_working(
    watched: tuple[Daemon, Path, Subscriber], caplog: pytest.LogCaptureFixture
) -> None:
    daemon, notes, sub = watched
    await asyncio.to_thread(_hostile, notes)
    await offer_for(sub, "deep.md")  # the deep note is a fine note: it is taken
    (notes / "plain.md").write_text("After all that, a plain note.\n")
    await offer_for(sub, "plain.md")
    await asyncio.sleep(0.3)
    status = daemon.sources.status()["notes"]
    assert status["state"] == "running" and status["restarts"] == 0, status
    assert status["detail"]["watching"] is True
    assert status["detail"]["skipped"] >= 3  # huge, binary, latin-1 (loops and the FIFO too, if reported)
    sources = {t.source for t in daemon.app.store.list_trees()}
    for bad in ("huge.md", "binary.md", "latin1.md", "loop-a.md", "fifo.md", "dangling.md"):
        assert not any(s.endswith("/" + bad) for s in sources), bad
    assert any(s.endswith("deep.md") for s in sources)
    assert any(s.endswith("plain.md") for s in sources)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []  # each is one warning line, never a traceback
    skipped = " ".join(r.getMessage() for r in caplog.records if "skipped note" in r.getMessage())
    for reason in (
        "larger than the limit",
        "binary",
        "not UTF-8",
        "symlink loop",
        "not a regular file",
        "name is not valid UTF-8",
    ):
        assert reason in skipped, reason
