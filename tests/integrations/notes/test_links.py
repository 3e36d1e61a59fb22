"""A link in a watched folder to a file outside: never read, so its text is never stored, offered on,
indexed or retrieved, and it is logged once. Real watchdog events, a real store, the real memory index."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ambient.app import App
from ambient.config import Config, MemorySection
from integrations.notes.history import tree_source
from tests.fakes import FakeSampler
from tests.hub import TestHub
from tests.integrations.notes.conftest import notes_options, running_source, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

SECRET = "The vault under the lighthouse opens with the words violet heron forty-two."
NOTE = "The lighthouse keeper walked by the river at dawn and counted the herons."


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    config = Config(home=tmp_path / "home", memory=MemorySection(enabled=True))
    application = App(config, sampler=FakeSampler())
    yield application
    application.close()


def files_holding(folder: Path, words: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and words in p.read_bytes()]


async def test_a_link_to_a_file_outside_is_never_stored_indexed_or_retrieved(
    app: App, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    outside = tmp_path / "private" / "vault.md"
    outside.parent.mkdir()
    outside.write_text(SECRET + "\n")
    link = folder / "vault.md"
    hub = TestHub(app, background=True, use_memory=True)
    caplog.set_level(logging.INFO, logger="integrations.notes.source")
    async with running_source(hub, notes_options(folder)) as source:
        link.symlink_to(outside)  # a new link: one event
        await wait_for(lambda: source.counts.skipped >= 1)
        fresh = folder / ".vault.md.new"
        fresh.symlink_to(outside)
        os.replace(fresh, link)  # saved again: another event, the same reason
        await wait_for(lambda: source.counts.skipped >= 2)
        (folder / "walk.md").write_text(NOTE)  # a real note beside it is read, offered on and indexed
        await wait_for(lambda: hub.offers)
        await hub.idle()
    await hub.run_blocking(app.index_pending)  # everything stored is now in the index
    await hub.idle()

    store = app.store
    assert store.find_tree(tree_source(str(link))) is None
    assert store.find_tree(tree_source(str(outside))) is None
    assert store.find_tree(tree_source(str(folder / "walk.md"))) is not None
    assert files_holding(app.config.home, b"violet heron") == []  # not in the store, the index, a sidecar
    assert files_holding(app.config.home, b"counted the herons") != []  # while the real note is there
    assert all("violet heron" not in e.text for e in hub.events) and len(hub.events) == 1
    assert all("violet heron" not in p for p in app.sampler.prompts)  # type: ignore[attr-defined]

    memory = app.require_memory()
    found = await hub.run_blocking(lambda: memory.search(SECRET, 20))
    assert found and any("counted the herons" in f.text for f in found)  # retrieval works...
    assert all("violet heron" not in f.text for f in found)  # ...and never brings the link's text

    skipped = [r.getMessage() for r in caplog.records if "vault.md" in r.getMessage()]
    assert len(skipped) == 1 and "outside the watched folders" in skipped[0], skipped
    assert outside.read_text() == SECRET + "\n"
