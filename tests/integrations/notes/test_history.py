"""A note's tree: versions as segments, points for offers, the text from the root always right."""

from __future__ import annotations

from pathlib import Path

import pytest

from ambient.store import TreeStore
from ambient.tree import MODEL, Author, NewBranch, Node
from integrations.notes.history import WINDOW, NoteHistory, Recorded, tree_source

PATH = "/notes/a.md"


@pytest.fixture
def store(tmp_path: Path) -> TreeStore:
    s = TreeStore(tmp_path / "t.sqlite3")
    yield s
    s.close()


def text_to(store: TreeStore, node: Node) -> str:
    return "".join(n.text for n in store.ancestry(node.id))


def version_text(store: TreeStore, recorded: Recorded) -> str:
    tree = store.get_tree(recorded.tree.id)
    return text_to(store, store.get_node(tree.meta["last"]["node"]))


def test_first_version_offers_at_the_end(store: TreeStore) -> None:
    history = NoteHistory(store)
    rec = history.record(PATH, "Dear diary,\n", offer=True, sidecar="/s/a.md.offers.md")
    assert rec.changed and rec.version == 1 and rec.point == len("Dear diary,\n")
    assert rec.point_node is not None and text_to(store, rec.point_node) == "Dear diary,\n"
    tree = store.find_tree(tree_source(PATH))
    assert tree is not None and tree.meta["sidecar"] == "/s/a.md.offers.md" and tree.title == "a.md"
    assert store.get_node(tree.root_id).text == ""
    meta = rec.point_node.meta
    assert meta["role"] == "point" and meta["path"] == PATH and meta["before"] == "Dear diary,\n"
    assert meta["after"] == ""


def test_the_same_text_again_is_no_change(store: TreeStore) -> None:
    history = NoteHistory(store)
    history.record(PATH, "abc", offer=True)
    rec = history.record(PATH, "abc", offer=True)
    assert not rec.changed and rec.point_node is None and rec.version == 1


def test_writing_at_the_end_adds_one_segment(store: TreeStore) -> None:
    history = NoteHistory(store)
    v1 = history.record(PATH, "One. ", offer=True)
    v2 = history.record(PATH, "One. Two. ", offer=True)
    assert v2.point_node is not None and v2.point_node.text == "Two. "
    assert v2.point_node.parent_id == v1.point_node.id  # type: ignore[union-attr]
    assert v2.version == 2 and v2.point == len("One. Two. ")


def test_an_edit_in_the_middle_splits_at_the_point(store: TreeStore) -> None:
    history = NoteHistory(store)
    history.record(PATH, "Title\n\nBody text.\n", offer=True)
    new = "Title\n\nA new first line.\nBody text.\n"
    rec = history.record(PATH, new, offer=True)
    assert rec.point_node is not None
    before = text_to(store, rec.point_node)
    assert before == "Title\n\nA new first line."  # the note up to where the person was writing
    assert rec.point == len(before)
    assert version_text(store, rec) == new
    tail = [c for c in store.children(rec.point_node.id)]
    assert [c.text for c in tail] == ["\nBody text.\n"]
    assert rec.point_node.meta["after"] == "\nBody text.\n"


def test_history_is_a_branch_and_every_version_is_spelled_exactly(store: TreeStore) -> None:
    history = NoteHistory(store)
    versions = [
        "a\n",
        "a\nb\n",
        "a\nb\nc\n",
        "X\na\nb\nc\n",  # an edit at the very top
        "X\na\nc\n",  # a deletion
        "X\na\nc\nd\n",
        "",  # emptied
        "fresh start",
    ]
    for text in versions:
        rec = history.record(PATH, text, offer=True)
        assert version_text(store, rec) == text
        if rec.point_node is not None:
            assert text_to(store, rec.point_node) == text[: rec.point]
    tree = store.find_tree(tree_source(PATH))
    assert tree is not None and tree.meta["last"]["version"] == len(versions)


def test_nothing_to_continue_makes_no_point(store: TreeStore) -> None:
    rec = NoteHistory(store).record(PATH, "   \n", offer=True)
    assert rec.changed and rec.point_node is None


def test_without_offer_no_point_node(store: TreeStore) -> None:
    history = NoteHistory(store)
    rec = history.record(PATH, "abc", offer=False)
    assert rec.point_node is None and version_text(store, rec) == "abc"


def test_windows_are_bounded(store: TreeStore) -> None:
    text = "x" * 1000 + "|" + "y" * 1000
    rec = NoteHistory(store).record(PATH, text, offer=True, point=1001)
    assert rec.point_node is not None
    assert rec.point_node.meta["before"] == text[1001 - WINDOW : 1001]
    assert rec.point_node.meta["after"] == "y" * WINDOW


def test_an_accepted_continuation_becomes_part_of_the_history(store: TreeStore) -> None:
    history = NoteHistory(store)
    rec = history.record(PATH, "Once upon a time", offer=True)
    assert rec.point_node is not None
    _, nodes = store.add_offer(
        rec.point_node.id, [NewBranch(" there was"), NewBranch(" a ship")], author=Author(MODEL)
    )
    store.pick(nodes[1].id)
    after = history.record(PATH, "Once upon a time a ship", offer=False, point=len("Once upon a time a ship"))
    tree = store.get_tree(after.tree.id)
    assert tree.meta["last"]["node"] == nodes[1].id  # the picked model node ends the new version
    # an unpicked offer that happens to match is not taken as the person's text
    rec3 = history.record(PATH, "Once upon a time there was", offer=True)
    assert rec3.point_node is not None
    assert [n.id for n in store.ancestry(rec3.point_node.id)][:-1] == [
        n.id for n in store.ancestry(rec.point_node.id)
    ]


def test_expectation_of_an_accept(store: TreeStore) -> None:
    history = NoteHistory(store)
    rec = history.record(PATH, "abc", offer=False)
    history.expect(rec.tree, "f" * 64, "node")
    tree = store.get_tree(rec.tree.id)
    assert history.is_expected(tree, "f" * 64) and not history.is_expected(tree, "0" * 64)
    history.clear_expect(tree)
    assert not history.is_expected(store.get_tree(rec.tree.id), "f" * 64)


def test_current_offers(store: TreeStore) -> None:
    history = NoteHistory(store)
    tree = history.record(PATH, "abc", offer=False).tree
    assert history.current_offers(store.get_tree(tree.id)) == (None, [])
    rec = history.record(PATH, "abc def", offer=True)
    assert rec.point_node is not None
    offer, _ = store.add_offer(rec.point_node.id, [NewBranch(" ghi")], author=Author(MODEL))
    point, offers = history.current_offers(store.get_tree(tree.id))
    assert point is not None and point.id == rec.point_node.id and [o.id for o in offers] == [offer.id]
