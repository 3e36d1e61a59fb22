"""Accepting: exactly at the point, atomically, keeping the mode; refused (changing nothing) on conflict."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ambient.errors import Conflict
from ambient.store import TreeStore
from ambient.tree import MODEL, Action, Author, NewBranch, Node, Status
from integrations.notes import accept as accept_module
from integrations.notes.accept import accept_node
from integrations.notes.history import NoteHistory, tree_source
from integrations.notes.notes import text_sha


@pytest.fixture
def store(tmp_path: Path) -> TreeStore:
    s = TreeStore(tmp_path / "t.sqlite3")
    yield s
    s.close()


def offer_at(store: TreeStore, note: Path, texts: list[str], sidecar: str | None = None) -> list[Node]:
    """Record the note's current text as a version and offer ``texts`` at its point."""
    rec = NoteHistory(store).record(str(note), note.read_text(), offer=True, sidecar=sidecar)
    assert rec.point_node is not None
    _, nodes = store.add_offer(rec.point_node.id, [NewBranch(t) for t in texts], author=Author(MODEL, "m"))
    return nodes


def write_note(path: Path, text: str, mode: int = 0o640) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_inserts_exactly_at_the_point_and_keeps_the_mode(store: TreeStore, tmp_path: Path) -> None:
    note = write_note(tmp_path / "a.md", "Title\n\nFirst paragraph.\n", 0o604)
    NoteHistory(store).record(str(note), note.read_text(), offer=False)
    note.write_text("Title\n\nA new thought\nFirst paragraph.\n")  # the person writes in the middle
    nodes = offer_at(store, note, [" that grows", " that fades"])
    result = accept_node(store, nodes[1].id)
    assert note.read_text() == "Title\n\nA new thought that fades\nFirst paragraph.\n"
    assert os.stat(note).st_mode & 0o7777 == 0o604
    assert (result.point, result.line, result.column, result.relocated) == (20, 3, 14, False)
    assert result.sha256 == text_sha(note.read_text())
    assert store.get_node(nodes[1].id).status == Status.PICKED
    actions = [a["action"] for a in store.actions(nodes[1].offer_id)]
    assert Action.ACCEPT in actions and Action.PICK in actions
    assert not list(tmp_path.glob(".a.md.*"))  # no temporary file left behind


def test_the_accepted_version_is_recorded_with_the_node_in_it(store: TreeStore, tmp_path: Path) -> None:
    note = write_note(tmp_path / "a.md", "Once upon a time")
    nodes = offer_at(store, note, [", a ship"])
    accept_node(store, nodes[0].id)
    tree = store.find_tree(tree_source(str(note)))
    assert tree is not None and tree.meta["last"]["sha256"] == text_sha(note.read_text())
    assert tree.meta["last"]["node"] == nodes[0].id
    assert not NoteHistory.is_expected(tree, text_sha(note.read_text()))  # the marker was consumed


def test_a_conflicting_edit_is_refused_and_changes_nothing(store: TreeStore, tmp_path: Path) -> None:
    note = write_note(tmp_path / "a.md", "The plan is")
    nodes = offer_at(store, note, [" simple."])
    note.write_text("The plan is to wait.")  # the person went on writing at the point
    before = note.read_bytes(), os.stat(note).st_mtime_ns
    with pytest.raises(Conflict, match="changed around the point"):
        accept_node(store, nodes[0].id)
    assert (note.read_bytes(), os.stat(note).st_mtime_ns) == before
    assert store.get_node(nodes[0].id).status == Status.OFFERED
    assert not [a for a in store.actions() if a["action"] == Action.ACCEPT]
    tree = store.find_tree(tree_source(str(note)))
    assert tree is not None and not tree.meta.get("expect")


def test_text_removed_around_the_point_is_refused(store: TreeStore, tmp_path: Path) -> None:
    note = write_note(tmp_path / "a.md", "Alpha beta gamma\nDelta\n")
    NoteHistory(store).record(str(note), note.read_text(), offer=False)
    note.write_text("Alpha beta gamma and more\nDelta\n")
    nodes = offer_at(store, note, [" things"])
    note.write_text("Alpha\nDelta\n")
    with pytest.raises(Conflict):
        accept_node(store, nodes[0].id)
    assert note.read_text() == "Alpha\nDelta\n"


def test_a_point_moved_by_text_added_above_is_found_again(store: TreeStore, tmp_path: Path) -> None:
    note = write_note(tmp_path / "a.md", "# Log\n\nMonday: rain.\n")
    nodes = offer_at(store, note, ["Tuesday: sun.\n"])
    note.write_text("# Log\n\nSunday: fog.\nMonday: rain.\n")  # a line added above the point
    result = accept_node(store, nodes[0].id)
    assert result.relocated
    assert note.read_text() == "# Log\n\nSunday: fog.\nMonday: rain.\nTuesday: sun.\n"


def test_an_ambiguous_point_is_refused(store: TreeStore, tmp_path: Path) -> None:
    body = "Chapter one\n" + "z" * 300 + "\n"
    note = write_note(tmp_path / "a.md", body)
    NoteHistory(store).record(str(note), note.read_text(), offer=False)
    note.write_text("Chapter one, again\n" + "z" * 300 + "\n")
    nodes = offer_at(store, note, [" and again"])
    doubled = "Chapter one, again\n" + "z" * 300 + "\n"
    note.write_text("Preface\n" + doubled + doubled)  # the point moved, and its context is there twice
    with pytest.raises(Conflict):
        accept_node(store, nodes[0].id)
    assert note.read_text() == "Preface\n" + doubled + doubled


def test_accepting_a_deeper_branch_inserts_the_whole_path(store: TreeStore, tmp_path: Path) -> None:
    note = write_note(tmp_path / "a.md", "Ideas:\n")
    first = offer_at(store, note, ["- tea"])[0]
    _, deeper = store.add_offer(first.id, [NewBranch(" and cake\n")], author=Author(MODEL))
    accept_node(store, deeper[0].id)
    assert note.read_text() == "Ideas:\n- tea and cake\n"


def test_only_offers_beside_a_note_can_be_accepted(store: TreeStore, tmp_path: Path) -> None:
    _, root = store.create_tree("not a note", source="cli")
    _, nodes = store.add_offer(root.id, [NewBranch(" x")], author=Author(MODEL))
    with pytest.raises(Conflict, match="does not belong to a note"):
        accept_node(store, nodes[0].id)
    note = write_note(tmp_path / "a.md", "abc")
    rec = NoteHistory(store).record(str(note), "abc", offer=True)
    assert rec.point_node is not None
    with pytest.raises(Conflict, match="the note's own text"):
        accept_node(store, rec.point_node.id)


def test_a_symlinked_note_stays_a_symlink(store: TreeStore, tmp_path: Path) -> None:
    target = write_note(tmp_path / "real.md", "Linked")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    nodes = offer_at(store, link, [" note"])
    accept_node(store, nodes[0].id)
    assert link.is_symlink() and target.read_text() == "Linked note"


def test_a_note_that_changes_while_accepting_is_refused(
    store: TreeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    note = write_note(tmp_path / "a.md", "Race")
    nodes = offer_at(store, note, [" condition"])
    real_read = accept_module.read_note

    def read_then_edit(path: Path, max_bytes: int):  # type: ignore[no-untyped-def]
        got = real_read(path, max_bytes)
        os.utime(path, ns=(got.mtime_ns + 10**9, got.mtime_ns + 10**9))
        return got

    monkeypatch.setattr(accept_module, "read_note", read_then_edit)
    with pytest.raises(Conflict, match="changed while"):
        accept_node(store, nodes[0].id)
    assert note.read_text() == "Race"


def test_accept_rewrites_the_sidecar(store: TreeStore, tmp_path: Path) -> None:
    note = write_note(tmp_path / "a.md", "Hello")
    side = tmp_path / "home" / "sidecars" / "a.md.offers.md"
    nodes = offer_at(store, note, [" world", " there"], sidecar=str(side))
    accept_node(store, nodes[0].id)
    body = side.read_text()
    assert f"`{nodes[0].id[:12]}` (accepted)" in body and " there" in body
