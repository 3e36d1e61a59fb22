"""POST /api/nodes/{id}/accept: a note continuation goes into the real note file, exactly at its point.

Through the running notes source when there is one, and directly (the note is on disk) when there
is not, within the configured folders either way; 409 and nothing written when the note changed around
the point, was saved while accepting, or is not in a watched folder (a link to a file outside
included); 404 for an unknown id; 409 for a node that is not a note continuation.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ambient import fsutil
from ambient.app import App
from ambient.daemon import Daemon
from ambient.events import Subscriber
from ambient.store import TreeStore
from ambient.tree import MODEL, Author, NewBranch, Node
from integrations.notes.history import NoteHistory
from integrations.notes.source import NotesSource
from tests.fakes import FakeSampler
from tests.test_server import conforms, make_config
from tests.web_app import bearer, web_app

pytestmark = [pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning"), pytest.mark.strict_loop]


def offer_at(store: TreeStore, note: Path, texts: list[str]) -> list[Node]:
    """Record the note's current text as a version and offer ``texts`` at its point (as the source does)."""
    rec = NoteHistory(store).record(str(note), note.read_text(), offer=True)
    assert rec.point_node is not None
    _, nodes = store.add_offer(rec.point_node.id, [NewBranch(t) for t in texts], author=Author(MODEL, "m"))
    return nodes


def events_of(sub: Subscriber, kind: str) -> list[dict[str, Any]]:
    found = []
    while not sub.queue.empty():
        message = sub.queue.get_nowait()
        if message is not None and json.loads(message)["type"] == kind:
            found.append(json.loads(message)["data"])
    return found


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    return folder


async def start(
    tmp_path: Path, aiohttp_client: Any, sources: dict[str, Any]
) -> AsyncIterator[tuple[Daemon, TestClient[Any, Any]]]:
    config = make_config(tmp_path / "home", sources=sources)
    app = App(config, sampler=FakeSampler())
    async with Daemon(config, app) as daemon:
        served = web_app(daemon)
        client = await aiohttp_client(served, headers=bearer(served))
        yield daemon, client
    app.close()


@pytest.fixture
async def bare(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[tuple[Daemon, TestClient[Any, Any]]]:
    """A daemon whose notes place is not running (its folder was missing at start, so it could not set
    up): the route accepts directly, into the folder the configuration names, which exists by now."""
    later = tmp_path / "later"
    table = {"folders": [str(later)], "quiet_ms": 100}
    async for pair in start(tmp_path, aiohttp_client, {"notes": table}):
        daemon, _ = pair
        assert daemon.sources.get("notes") is None and "does not exist" in str(daemon.sources.problems)
        later.mkdir()
        yield pair


@pytest.fixture
def later(tmp_path: Path) -> Path:
    return tmp_path / "later"


@pytest.fixture
async def with_notes(
    tmp_path: Path, notes: Path, aiohttp_client: Any
) -> AsyncIterator[tuple[Daemon, TestClient[Any, Any]]]:
    """A daemon whose notes source watches ``notes`` (no offers on first sight)."""
    table = {"folders": [str(notes)], "quiet_ms": 100, "offer_on_first_sight": False}
    async for pair in start(tmp_path, aiohttp_client, {"notes": table}):
        daemon, _ = pair
        assert isinstance(daemon.sources.get("notes"), NotesSource), daemon.sources.status()
        yield pair


async def test_accept_inserts_into_the_note_exactly_at_the_point(
    bare: tuple[Daemon, TestClient[Any, Any]], later: Path
) -> None:
    daemon, client = bare
    store = daemon.app.store
    note = later / "a.md"
    note.write_text("Title\n\nFirst paragraph.\n")
    await asyncio.to_thread(NoteHistory(store).record, str(note), note.read_text(), offer=False)
    note.write_text("Title\n\nA new thought\nFirst paragraph.\n")  # the person writes in the middle
    nodes = await asyncio.to_thread(offer_at, store, note, [" that grows", " that fades"])
    sub = daemon.subscribe()
    resp = await client.post(f"/api/nodes/{nodes[1].id}/accept")
    body = await resp.json()
    assert resp.status == 200, body
    conforms(body, "AcceptResult")
    assert note.read_text() == "Title\n\nA new thought that fades\nFirst paragraph.\n"
    accepted = body["accepted"]
    assert (accepted["node_id"], accepted["point"], accepted["line"], accepted["column"]) == (
        nodes[1].id,
        len("Title\n\nA new thought"),
        3,
        14,
    )
    assert accepted["inserted"] == " that fades" and accepted["relocated"] is False
    assert store.get_node(nodes[1].id).status.value == "picked"
    assert [e["node_id"] for e in events_of(sub, "note_accepted")] == [nodes[1].id]


async def test_accept_goes_through_the_running_notes_source(
    with_notes: tuple[Daemon, TestClient[Any, Any]], notes: Path
) -> None:
    daemon, client = with_notes
    note = notes / "b.md"
    note.write_text("Once upon a time")
    nodes = await asyncio.to_thread(offer_at, daemon.app.store, note, [", a ship", ", a storm"])
    source = daemon.sources.get("notes")
    assert isinstance(source, NotesSource)
    resp = await client.post(f"/api/nodes/{nodes[0].id}/accept", json={})
    assert resp.status == 200, await resp.text()
    assert note.read_text() == "Once upon a time, a ship"
    assert (await resp.json())["accepted"]["point"] == len("Once upon a time")


async def test_a_note_changed_around_the_point_is_409_and_left_alone(
    bare: tuple[Daemon, TestClient[Any, Any]], later: Path
) -> None:
    daemon, client = bare
    note = later / "c.md"
    note.write_text("The plan is")
    nodes = await asyncio.to_thread(offer_at, daemon.app.store, note, [" simple."])
    note.write_text("The plan is to wait.")  # the person went on writing at the point
    before = note.read_bytes(), os.stat(note).st_mtime_ns
    resp = await client.post(f"/api/nodes/{nodes[0].id}/accept")
    assert resp.status == 409
    assert "changed around the point" in (await resp.json())["error"]
    assert (note.read_bytes(), os.stat(note).st_mtime_ns) == before
    assert daemon.app.store.get_node(nodes[0].id).status.value == "offered"


async def refuses_outside(daemon: Daemon, client: TestClient[Any, Any], folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "private.md"
    outside.write_text("Mine alone")
    link = folder / "private.md"
    link.symlink_to(outside)  # a link in the watched folder to a file outside
    loose = tmp_path / "loose.md"
    loose.write_text("Loose")
    for note in (link, loose):
        nodes = await asyncio.to_thread(offer_at, daemon.app.store, note, [" and more"])
        resp = await client.post(f"/api/nodes/{nodes[0].id}/accept")
        assert resp.status == 409 and "is not in a watched folder" in (await resp.json())["error"]
        assert daemon.app.store.get_node(nodes[0].id).status.value == "offered"
    assert outside.read_text() == "Mine alone" and loose.read_text() == "Loose" and link.is_symlink()


async def test_outside_the_watched_folders_is_409_through_the_notes_source(
    with_notes: tuple[Daemon, TestClient[Any, Any]], notes: Path, tmp_path: Path
) -> None:
    await refuses_outside(*with_notes, notes, tmp_path)


async def test_outside_the_watched_folders_is_409_directly(
    bare: tuple[Daemon, TestClient[Any, Any]], later: Path, tmp_path: Path
) -> None:
    await refuses_outside(*bare, later, tmp_path)


async def test_without_watched_folders_nothing_is_accepted(
    tmp_path: Path, notes: Path, aiohttp_client: Any
) -> None:
    async for daemon, client in start(tmp_path, aiohttp_client, {}):
        note = notes / "a.md"
        note.write_text("Nothing watched")
        nodes = await asyncio.to_thread(offer_at, daemon.app.store, note, [" here"])
        resp = await client.post(f"/api/nodes/{nodes[0].id}/accept")
        assert resp.status == 409 and "no folder is watched" in (await resp.json())["error"]
        assert note.read_text() == "Nothing watched"


async def test_a_save_while_accepting_is_409_and_the_save_is_kept(
    with_notes: tuple[Daemon, TestClient[Any, Any]], notes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, client = with_notes
    note = notes / "e.md"
    note.write_text("Quiet")
    nodes = await asyncio.to_thread(offer_at, daemon.app.store, note, [" night"])
    real_exchange = fsutil.exchange

    def editor_saves_first(a: Path, b: Path) -> bool:  # in the worker thread, just before the swap
        if note.read_text() == "Quiet":
            saved = notes / ".e.md.editor"
            saved.write_text("Quiet, saved by the editor")
            os.replace(saved, note)
        return real_exchange(a, b)

    monkeypatch.setattr(fsutil, "exchange", editor_saves_first)
    resp = await client.post(f"/api/nodes/{nodes[0].id}/accept")
    error = (await resp.json())["error"]
    assert resp.status == 409 and "changed while accepting" in error and "nothing was lost" in error
    assert note.read_text() == "Quiet, saved by the editor"
    assert daemon.app.store.get_node(nodes[0].id).status.value == "offered"


async def test_unknown_node_is_404(bare: tuple[Daemon, TestClient[Any, Any]]) -> None:
    _, client = bare
    resp = await client.post("/api/nodes/no-such-node/accept")
    assert resp.status == 404 and "error" in await resp.json()


async def test_a_node_outside_a_note_is_409(bare: tuple[Daemon, TestClient[Any, Any]]) -> None:
    daemon, client = bare
    store = daemon.app.store
    _, root = store.create_tree("Typed by hand", title="Manual")
    _, nodes = store.add_offer(root.id, [NewBranch(" and more")], author=Author(MODEL, "m"))
    resp = await client.post(f"/api/nodes/{nodes[0].id}/accept")
    assert resp.status == 409 and "does not belong to a note" in (await resp.json())["error"]


async def test_accepting_the_notes_own_text_is_409(
    bare: tuple[Daemon, TestClient[Any, Any]], later: Path
) -> None:
    daemon, client = bare
    note = later / "d.md"
    note.write_text("Just the note")
    nodes = await asyncio.to_thread(offer_at, daemon.app.store, note, [" and an offer"])
    assert nodes[0].parent_id is not None
    resp = await client.post(f"/api/nodes/{nodes[0].parent_id}/accept")
    assert resp.status == 409
    assert note.read_text() == "Just the note"


async def test_a_body_with_fields_is_400(bare: tuple[Daemon, TestClient[Any, Any]]) -> None:
    _, client = bare
    resp = await client.post("/api/nodes/whatever/accept", json={"force": True})
    assert resp.status == 400 and "unknown field" in (await resp.json())["error"]
