"""The notes source against the Hub protocol: real watchdog events, a real App over a temporary store."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from ambient import places
from ambient.config import parse_section
from ambient.errors import AmbientError, ConfigError
from ambient.tree import OfferState
from integrations.notes import notes
from integrations.notes.history import NoteHistory, tree_source
from integrations.notes.options import NotesOptions
from integrations.notes.source import NotesSource
from tests.fakes import FakeSampler
from tests.hub import TestHub
from tests.integrations.notes.conftest import notes_options, running_source, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), os.stat(path).st_mtime_ns


async def offers_done(hub: TestHub, count: int) -> None:
    await wait_for(lambda: len(hub.offers) >= count)
    await hub.idle()


async def test_a_save_leads_to_an_offer_at_the_point_and_the_note_is_never_written(
    hub: TestHub, notes_dir: Path
) -> None:
    note = notes_dir / "today.md"
    note.write_text("The garden in May:\n")
    async with running_source(hub, notes_options(notes_dir)) as source:
        note.write_text("The garden in May:\nroses")
        await offers_done(hub, 1)
        before = snapshot(note)
        offer = hub.offers[0]
        assert offer.state == OfferState.DONE and len(offer.node_ids) == 2
        store = hub.app.store
        point = store.get_node(offer.parent_id)
        assert "".join(n.text for n in store.ancestry(point.id)) == "The garden in May:\nroses"
        assert point.meta["role"] == "point" and point.meta["path"] == str(note)
        assert hub.app.sampler.prompts[-1] == "The garden in May:\nroses"  # type: ignore[attr-defined]
        event = hub.events[-1]
        assert event.key == str(note) and not event.debounce and event.meta["point"] == 24
        assert ("note_changed", {**hub.published[0][1]}) == hub.published[0]
        await asyncio.sleep(0.5)  # nothing else happens on its own
        assert snapshot(note) == before
        assert len(hub.offers) == 1
        assert source.status()["offers"] == 1 and source.status()["watching"]


async def test_the_sidecar_lists_the_offers_outside_the_watched_folder(hub: TestHub, notes_dir: Path) -> None:
    (notes_dir / "sub").mkdir()
    note = notes_dir / "sub" / "idea.md"
    async with running_source(hub, notes_options(notes_dir)):
        note.write_text("An idea")
        await offers_done(hub, 1)
        await wait_for(lambda: list((hub.app.config.home / "sidecars").rglob("*.offers.md")))
    [sidecar] = list((hub.app.config.home / "sidecars").rglob("*.offers.md"))
    assert sidecar.relative_to(hub.app.config.home / "sidecars").parts[1:] == ("sub", "idea.md.offers.md")
    body = sidecar.read_text()
    assert "# Offers for ` idea.md `" in body and "> ` …An idea `" in body
    for node_id in hub.offers[0].node_ids:
        assert f"ambient accept {node_id[:12]}" in body
    assert not list(notes_dir.rglob("*.offers.md"))


async def test_a_newer_save_cancels_the_older_sampling(app_slow: TestHub, notes_dir: Path) -> None:
    hub = app_slow
    note = notes_dir / "a.md"
    async with running_source(hub, notes_options(notes_dir, max_tokens=200)):
        note.write_text("first")
        await wait_for(lambda: hub.events)
        await asyncio.sleep(0.2)  # sampling has begun
        note.write_text("first second")
        await offers_done(hub, 2)
    states = [o.state for o in hub.offers]
    assert states == [OfferState.CANCELLED, OfferState.DONE]


@pytest.fixture
def app_slow(hub: TestHub) -> TestHub:
    hub.app._sampler = FakeSampler(delay=0.02)
    return hub


async def test_accepting_through_the_source_is_not_taken_for_a_save(hub: TestHub, notes_dir: Path) -> None:
    note = notes_dir / "a.md"
    async with running_source(hub, notes_options(notes_dir)) as source:
        note.write_text("Shopping:")
        await offers_done(hub, 1)
        node_id = hub.offers[0].node_ids[1]
        result = await source.accept(node_id)
        assert note.read_text() == "Shopping: b1w0 b1w1 b1w2"
        assert result.point == len("Shopping:")
        await asyncio.sleep(0.6)
        assert len(hub.offers) == 1  # no offer for ambient's own write
        assert source.counts.own_writes + source.counts.unchanged == 1
        assert hub.published[-1][0] in ("note_accepted", "note_changed")
        note.write_text("Shopping: b1w0 b1w1 b1w2 and milk")  # the person goes on: offers again
        await offers_done(hub, 2)
        point = hub.app.store.get_node(hub.offers[1].parent_id)
        assert point.text == " and milk" and point.parent_id == node_id


async def test_bad_inputs_are_skipped_with_one_line_and_the_source_keeps_going(
    hub: TestHub, notes_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = notes._open_note

    def guarded(path: Path):  # type: ignore[no-untyped-def]
        if path.name == "locked.md":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(notes, "_open_note", guarded)
    async with running_source(hub, notes_options(notes_dir, max_bytes=1000)) as source:
        with caplog.at_level(logging.INFO, logger="integrations.notes.source"):
            (notes_dir / "binary.md").write_bytes(b"\x00\x01\x02")
            (notes_dir / "latin1.txt").write_bytes(b"caf\xe9")
            (notes_dir / "huge.md").write_text("x" * 5000)
            (notes_dir / "locked.md").write_text("secret")
            os.symlink(notes_dir / "loop2.md", notes_dir / "loop1.md")
            os.symlink(notes_dir / "loop1.md", notes_dir / "loop2.md")
            await wait_for(lambda: source.counts.skipped >= 6)
            (notes_dir / "huge.md").write_text("y" * 5000)  # the same problem again: no second line
            await asyncio.sleep(0.5)
        skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped note")]
        for name, why in [
            ("binary.md", "binary"),
            ("latin1.txt", "not UTF-8"),
            ("huge.md", "larger than the limit"),
            ("locked.md", "permission denied"),
            ("loop1.md", "symlink loop"),
        ]:
            assert len([m for m in skipped if name in m and why in m]) == 1, (name, skipped)
        good = notes_dir / "good.md"
        good.write_text("still working")
        await offers_done(hub, 1)
        assert hub.app.store.find_tree(tree_source(str(good))) is not None
        assert hub.app.store.find_tree(tree_source(str(notes_dir / "binary.md"))) is None


async def test_a_note_deleted_before_it_is_read_is_skipped(hub: TestHub, notes_dir: Path) -> None:
    source = NotesSource(hub, notes_options(notes_dir))
    await source.setup()
    assert source.prepare(str(notes_dir / "vanished.md")) is None
    assert source.counts.skipped == 1


async def test_the_watched_folder_disappearing_keeps_the_source_running(
    hub: TestHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    options = NotesOptions(folders=(str(one), str(two)), quiet_ms=100, n=1, max_tokens=2)
    async with running_source(hub, options) as source:
        with caplog.at_level(logging.WARNING):
            await asyncio.to_thread(lambda: [p.unlink() for p in one.iterdir()] and None)
            one.rmdir()
            await wait_for(lambda: source.status()["gone"])
        assert source.status()["gone"] == [str(one)]
        (two / "b.md").write_text("hello")
        await offers_done(hub, 1)


async def test_a_missing_folder_at_start_is_a_clear_error(hub: TestHub, tmp_path: Path) -> None:
    source = NotesSource(hub, NotesOptions(folders=(str(tmp_path / "nope"),)))
    with pytest.raises(AmbientError, match="does not exist: create it"):
        await source.setup()
    (tmp_path / "file.md").write_text("x")
    source = NotesSource(hub, NotesOptions(folders=(str(tmp_path / "file.md"),)))
    with pytest.raises(AmbientError, match="is not a folder"):
        await source.setup()


async def test_ambient_home_inside_a_watched_folder_is_ignored(tmp_path: Path) -> None:
    from ambient.app import App
    from tests.integrations.notes.conftest import make_config

    folder = tmp_path / "notes"
    folder.mkdir()
    app = App(make_config(folder / ".ambient-home-not-hidden"[1:]), sampler=FakeSampler())
    try:
        hub = TestHub(app, background=True, use_memory=False)
        async with running_source(hub, notes_options(folder)):
            side = app.config.home / "sidecars" / "x.md.offers.md"
            side.parent.mkdir(parents=True)
            side.write_text("ambient's own")
            await asyncio.sleep(0.5)
            assert hub.events == []
    finally:
        app.close()


def test_options_are_parsed_and_checked() -> None:
    options = parse_section(
        NotesOptions, {"folders": "~/a,~/b", "quiet_ms": "50", "max_bytes": 10}, "sources.notes"
    )
    assert options.folders == ("~/a", "~/b") and options.quiet_s == 0.05
    with pytest.raises(ConfigError, match="unknown key 'sources.notes.folder'"):
        parse_section(NotesOptions, {"folder": "x"}, "sources.notes")
    with pytest.raises(ConfigError, match="max_bytes"):
        NotesOptions(max_bytes=0)
    with pytest.raises(ConfigError, match="globs"):
        NotesOptions(globs=())
    assert NotesSource.enabled(NotesOptions()) == (False, NotesSource.enabled(NotesOptions())[1])
    assert "folders" in NotesSource.enabled(NotesOptions())[1]
    assert places.load("notes") is NotesSource and places.load("files") is NotesSource  # the old name too


async def test_versions_accumulate_as_the_person_writes(hub: TestHub, notes_dir: Path) -> None:
    note = notes_dir / "a.md"
    async with running_source(hub, notes_options(notes_dir)):
        for i, text in enumerate(["one", "one two", "zero one two"], start=1):
            note.write_text(text)
            await offers_done(hub, i)
    tree = hub.app.store.find_tree(tree_source(str(note)))
    assert tree is not None and tree.meta["last"]["version"] == 3
    assert NoteHistory(hub.app.store).last_text(tree) == "zero one two"


async def test_the_old_table_name_still_works_with_a_warning(
    hub: TestHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ambient.source_host import SourceHost

    folder = tmp_path / "old-notes"
    folder.mkdir()
    config = hub.app.config.replace(sources={"files": {"folders": [str(folder)], "quiet_ms": 50}})
    host = SourceHost(hub, config)
    with caplog.at_level(logging.WARNING, logger="ambient.places"):
        await host.start()
    try:
        source = host.get("notes")
        assert isinstance(source, NotesSource) and source.folders == [folder.resolve()]
        assert "[sources.files] is an old name: rename the table to [sources.notes]" in caplog.text
        await wait_for(lambda: source.status()["watching"])
        (folder / "a.md").write_text("Under the old name")
        await offers_done(hub, 1)
    finally:
        await host.stop()
