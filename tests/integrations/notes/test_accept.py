"""Accepting: exactly at the point, atomically, keeping the mode; refused (changing nothing) on conflict,
outside the watched folders, and when an editor's save lands while accepting (the save is kept)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ambient import fsutil
from ambient.errors import Conflict
from ambient.store import TreeStore
from ambient.tree import MODEL, Action, Author, NewBranch, Node, Status
from integrations.notes import accept as accept_module
from integrations.notes.accept import accept_node
from integrations.notes.history import NoteHistory, tree_source
from integrations.notes.notes import text_sha
from integrations.notes.walls import Walls


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TreeStore]:
    s = TreeStore(tmp_path / "t.sqlite3")
    yield s
    s.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The watched folder."""
    path = tmp_path / "notes"
    path.mkdir()
    return path


@pytest.fixture
def walls(folder: Path, tmp_path: Path) -> Walls:
    return Walls.of([folder], tmp_path / "home")


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


def save_by_rename(note: Path, text: str) -> None:
    """An editor's save: a temporary file renamed over the note (editors take no lock)."""
    tmp = note.with_name(f".{note.name}.editor")
    tmp.write_text(text)
    os.replace(tmp, note)


def accepts(store: TreeStore) -> list[dict[str, object]]:
    return [a for a in store.actions() if a["action"] == Action.ACCEPT]


def assert_refused_cleanly(store: TreeStore, note: Path, node: Node) -> None:
    """Nothing recorded, the node still offered, the marker cleared, no temporary file left."""
    assert store.get_node(node.id).status == Status.OFFERED
    assert accepts(store) == []
    tree = store.find_tree(tree_source(str(note)))
    assert tree is not None and not tree.meta.get("expect")
    assert sorted(p.name for p in note.parent.iterdir() if p.name.startswith(".")) == []


def test_inserts_exactly_at_the_point_and_keeps_the_mode(
    store: TreeStore, folder: Path, walls: Walls
) -> None:
    note = write_note(folder / "a.md", "Title\n\nFirst paragraph.\n", 0o604)
    NoteHistory(store).record(str(note), note.read_text(), offer=False)
    note.write_text("Title\n\nA new thought\nFirst paragraph.\n")  # the person writes in the middle
    nodes = offer_at(store, note, [" that grows", " that fades"])
    result = accept_node(store, nodes[1].id, walls)
    assert note.read_text() == "Title\n\nA new thought that fades\nFirst paragraph.\n"
    assert os.stat(note).st_mode & 0o7777 == 0o604
    assert (result.point, result.line, result.column, result.relocated) == (20, 3, 14, False)
    assert result.sha256 == text_sha(note.read_text())
    assert store.get_node(nodes[1].id).status == Status.PICKED
    actions = [a["action"] for a in store.actions(nodes[1].offer_id)]
    assert Action.ACCEPT in actions and Action.PICK in actions
    assert not list(folder.glob(".a.md.*"))  # no temporary file left behind


def test_the_accepted_version_is_recorded_with_the_node_in_it(
    store: TreeStore, folder: Path, walls: Walls
) -> None:
    note = write_note(folder / "a.md", "Once upon a time")
    nodes = offer_at(store, note, [", a ship"])
    accept_node(store, nodes[0].id, walls)
    tree = store.find_tree(tree_source(str(note)))
    assert tree is not None and tree.meta["last"]["sha256"] == text_sha(note.read_text())
    assert tree.meta["last"]["node"] == nodes[0].id
    assert not NoteHistory.is_expected(tree, text_sha(note.read_text()))  # the marker was consumed


def test_a_conflicting_edit_is_refused_and_changes_nothing(
    store: TreeStore, folder: Path, walls: Walls
) -> None:
    note = write_note(folder / "a.md", "The plan is")
    nodes = offer_at(store, note, [" simple."])
    note.write_text("The plan is to wait.")  # the person went on writing at the point
    before = note.read_bytes(), os.stat(note).st_mtime_ns
    with pytest.raises(Conflict, match="changed around the point"):
        accept_node(store, nodes[0].id, walls)
    assert (note.read_bytes(), os.stat(note).st_mtime_ns) == before
    assert_refused_cleanly(store, note, nodes[0])


def test_text_removed_around_the_point_is_refused(store: TreeStore, folder: Path, walls: Walls) -> None:
    note = write_note(folder / "a.md", "Alpha beta gamma\nDelta\n")
    NoteHistory(store).record(str(note), note.read_text(), offer=False)
    note.write_text("Alpha beta gamma and more\nDelta\n")
    nodes = offer_at(store, note, [" things"])
    note.write_text("Alpha\nDelta\n")
    with pytest.raises(Conflict):
        accept_node(store, nodes[0].id, walls)
    assert note.read_text() == "Alpha\nDelta\n"


def test_a_point_moved_by_text_added_above_is_found_again(
    store: TreeStore, folder: Path, walls: Walls
) -> None:
    note = write_note(folder / "a.md", "# Log\n\nMonday: rain.\n")
    nodes = offer_at(store, note, ["Tuesday: sun.\n"])
    note.write_text("# Log\n\nSunday: fog.\nMonday: rain.\n")  # a line added above the point
    result = accept_node(store, nodes[0].id, walls)
    assert result.relocated
    assert note.read_text() == "# Log\n\nSunday: fog.\nMonday: rain.\nTuesday: sun.\n"


def test_an_ambiguous_point_is_refused(store: TreeStore, folder: Path, walls: Walls) -> None:
    body = "Chapter one\n" + "z" * 300 + "\n"
    note = write_note(folder / "a.md", body)
    NoteHistory(store).record(str(note), note.read_text(), offer=False)
    note.write_text("Chapter one, again\n" + "z" * 300 + "\n")
    nodes = offer_at(store, note, [" and again"])
    doubled = "Chapter one, again\n" + "z" * 300 + "\n"
    note.write_text("Preface\n" + doubled + doubled)  # the point moved, and its context is there twice
    with pytest.raises(Conflict):
        accept_node(store, nodes[0].id, walls)
    assert note.read_text() == "Preface\n" + doubled + doubled


def test_accepting_a_deeper_branch_inserts_the_whole_path(
    store: TreeStore, folder: Path, walls: Walls
) -> None:
    note = write_note(folder / "a.md", "Ideas:\n")
    first = offer_at(store, note, ["- tea"])[0]
    _, deeper = store.add_offer(first.id, [NewBranch(" and cake\n")], author=Author(MODEL))
    accept_node(store, deeper[0].id, walls)
    assert note.read_text() == "Ideas:\n- tea and cake\n"


def test_only_offers_beside_a_note_can_be_accepted(store: TreeStore, folder: Path, walls: Walls) -> None:
    _, root = store.create_tree("not a note", source="cli")
    _, nodes = store.add_offer(root.id, [NewBranch(" x")], author=Author(MODEL))
    with pytest.raises(Conflict, match="does not belong to a note"):
        accept_node(store, nodes[0].id, walls)
    note = write_note(folder / "a.md", "abc")
    rec = NoteHistory(store).record(str(note), "abc", offer=True)
    assert rec.point_node is not None
    with pytest.raises(Conflict, match="the note's own text"):
        accept_node(store, rec.point_node.id, walls)


def test_a_link_to_a_note_inside_the_folders_stays_a_link(
    store: TreeStore, folder: Path, walls: Walls
) -> None:
    target = write_note(folder / "real.md", "Linked")
    link = folder / "link.md"
    link.symlink_to(target)
    nodes = offer_at(store, link, [" note"])
    accept_node(store, nodes[0].id, walls)
    assert link.is_symlink() and target.read_text() == "Linked note"


def test_a_link_to_a_file_outside_the_folders_is_refused(
    store: TreeStore, folder: Path, walls: Walls, tmp_path: Path
) -> None:
    outside = write_note(tmp_path / "elsewhere.md", "Private")
    link = folder / "link.md"
    link.symlink_to(outside)
    nodes = offer_at(store, link, [" words"])
    before = outside.read_bytes(), os.stat(outside).st_mtime_ns
    with pytest.raises(Conflict, match=f"not in a watched folder \\(it links to {outside}\\)"):
        accept_node(store, nodes[0].id, walls)
    assert (outside.read_bytes(), os.stat(outside).st_mtime_ns) == before and link.is_symlink()
    assert store.get_node(nodes[0].id).status == Status.OFFERED and accepts(store) == []


def test_a_note_outside_the_folders_is_refused(store: TreeStore, tmp_path: Path, walls: Walls) -> None:
    note = write_note(tmp_path / "loose.md", "Loose")
    nodes = offer_at(store, note, [" end"])
    with pytest.raises(Conflict, match="not in a watched folder: ambient accepts only into notes inside"):
        accept_node(store, nodes[0].id, walls)
    with pytest.raises(Conflict, match="no folder is watched"):
        accept_node(store, nodes[0].id, Walls.of([], tmp_path / "home"))
    assert note.read_text() == "Loose"


def test_a_save_after_reading_is_refused_and_kept(
    store: TreeStore, folder: Path, walls: Walls, monkeypatch: pytest.MonkeyPatch
) -> None:
    note = write_note(folder / "a.md", "Race")
    nodes = offer_at(store, note, [" condition"])
    real_read = accept_module.read_note

    def read_then_save(*args: object) -> object:
        got = real_read(*args)  # type: ignore[arg-type]
        save_by_rename(note, "Race!")
        return got

    monkeypatch.setattr(accept_module, "read_note", read_then_save)
    with pytest.raises(Conflict, match="changed while accepting .* nothing was lost"):
        accept_node(store, nodes[0].id, walls)
    assert note.read_text() == "Race!"
    assert_refused_cleanly(store, note, nodes[0])


def test_a_save_between_the_check_and_the_swap_is_put_back(
    store: TreeStore, folder: Path, walls: Walls, monkeypatch: pytest.MonkeyPatch
) -> None:
    note = write_note(folder / "a.md", "Swap")
    nodes = offer_at(store, note, [" me"])
    real_exchange = fsutil.exchange
    calls: list[str] = []
    saved: list[int] = []

    def save_then_exchange(a: Path, b: Path) -> bool:
        if not calls:  # the editor saves after the hash was compared, just before the swap
            save_by_rename(note, "Swap, saved by the editor")
            saved.append(os.stat(note).st_ino)
        calls.append(note.read_text())
        return real_exchange(a, b)

    monkeypatch.setattr(fsutil, "exchange", save_then_exchange)
    with pytest.raises(Conflict, match="changed while accepting"):
        accept_node(store, nodes[0].id, walls)
    assert calls == ["Swap, saved by the editor", "Swap me"]  # swapped in, seen, swapped back
    assert note.read_text() == "Swap, saved by the editor"
    assert [os.stat(note).st_ino] == saved  # the editor's own file, not a copy
    assert_refused_cleanly(store, note, nodes[0])


def test_a_save_while_putting_back_is_not_undone(
    store: TreeStore, folder: Path, walls: Walls, monkeypatch: pytest.MonkeyPatch
) -> None:
    note = write_note(folder / "a.md", "Busy")
    nodes = offer_at(store, note, [" day"])
    real_exchange = fsutil.exchange
    saves = iter(["Busy, first save", "Busy, second save", "Busy, third save"])
    calls = 0

    def exchange(a: Path, b: Path) -> bool:
        nonlocal calls
        calls += 1
        if calls <= 3:  # a save before the swap, and one before each of the first two put-backs
            save_by_rename(note, next(saves))
        return real_exchange(a, b)

    monkeypatch.setattr(fsutil, "exchange", exchange)
    with pytest.raises(Conflict, match="changed while accepting"):
        accept_node(store, nodes[0].id, walls)
    assert note.read_text() == "Busy, third save"  # the newest save, whatever came out on the way
    assert calls == 4
    assert_refused_cleanly(store, note, nodes[0])


def test_a_note_gone_while_putting_back_gets_the_save_back(
    store: TreeStore, folder: Path, walls: Walls, monkeypatch: pytest.MonkeyPatch
) -> None:
    note = write_note(folder / "a.md", "Gone")
    nodes = offer_at(store, note, [" soon"])
    real_exchange = fsutil.exchange
    calls = 0

    def exchange(a: Path, b: Path) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            save_by_rename(note, "Gone, saved")  # slips in before the swap
        else:
            os.replace(note, folder / "a.md~")  # an editor's first step of a save: the note moves away
        return real_exchange(a, b)

    monkeypatch.setattr(fsutil, "exchange", exchange)
    with pytest.raises(Conflict, match="changed while accepting"):
        accept_node(store, nodes[0].id, walls)
    assert note.read_text() == "Gone, saved" and calls == 2  # the save is back where it was
    assert (folder / "a.md~").read_text() == "Gone soon"  # what the editor moved away: ours, briefly
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_without_renameat2_the_hash_checked_rename_is_used(
    store: TreeStore, folder: Path, walls: Walls, monkeypatch: pytest.MonkeyPatch
) -> None:
    note = write_note(folder / "a.md", "Plain")
    nodes = offer_at(store, note, [" rename"])
    monkeypatch.setattr(fsutil, "exchange", lambda a, b: False)  # another OS, or a file system without it
    accept_node(store, nodes[0].id, walls)
    assert note.read_text() == "Plain rename"
    note_two = write_note(folder / "b.md", "Checked")
    more = offer_at(store, note_two, [" twice"])
    note_two.write_text("Checked")  # same words: still what was read
    accept_node(store, more[0].id, walls)
    assert note_two.read_text() == "Checked twice"


def test_accept_rewrites_the_sidecar(store: TreeStore, folder: Path, walls: Walls, tmp_path: Path) -> None:
    note = write_note(folder / "a.md", "Hello")
    side = tmp_path / "home" / "sidecars" / "a.md.offers.md"
    nodes = offer_at(store, note, [" world", " there"], sidecar=str(side))
    accept_node(store, nodes[0].id, walls)
    body = side.read_text()
    assert f"` {nodes[0].id[:12]} ` (accepted)" in body and " there" in body
    assert os.stat(side).st_mode & 0o777 == 0o600 and os.stat(side.parent).st_mode & 0o777 == 0o700
