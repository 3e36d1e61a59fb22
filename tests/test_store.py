import sqlite3
import threading
from pathlib import Path

import pytest

from ambient.errors import Conflict, InvalidInput, NotFound
from ambient.sampling.base import Token, TokenAlt
from ambient.store import TreeStore
from ambient.tree import MODEL, Action, Author, NewBranch, OfferState, Status


@pytest.fixture
def store(tmp_path: Path) -> TreeStore:
    s = TreeStore(tmp_path / "a.sqlite3")
    yield s
    s.close()


def _offer(store: TreeStore, parent_id: str, n: int = 3):
    branches = [
        NewBranch(f" branch {i}", [Token(f" branch {i}", -0.1 * i, (TokenAlt(" x", -2.0),))])
        for i in range(n)
    ]
    author = Author(MODEL, "tiny", {"temperature": 0.9})
    return store.add_offer(parent_id, branches, author=author, provenance={"budget": 10})


def test_sqlite_settings_and_migrations(store: TreeStore, tmp_path: Path) -> None:
    assert store.migrations() == ["0001_initial", "0002_tree_scopes"]
    db = sqlite3.connect(tmp_path / "a.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert store.integrity_check() == "ok"


def test_reopening_keeps_data_and_does_not_migrate_twice(tmp_path: Path) -> None:
    with TreeStore(tmp_path / "s.db") as s:
        _tree, root = s.create_tree("Hello")
    with TreeStore(tmp_path / "s.db") as s:
        assert s.get_node(root.id).text == "Hello"
        assert s.migrations() == ["0001_initial", "0002_tree_scopes"]


def test_tree_offer_pick_and_ancestry(store: TreeStore) -> None:
    tree, root = store.create_tree("Once upon a time", title="story")
    assert tree.title == "story" and root.status == Status.PICKED and root.author.kind == "human"
    offer, nodes = _offer(store, root.id)
    assert offer.state == OfferState.DONE and len(offer.node_ids) == 3
    assert [n.branch for n in nodes] == [0, 1, 2]
    assert all(n.status == Status.OFFERED for n in nodes)
    assert nodes[1].tokens is not None and nodes[1].tokens[0].top[0].text == " x"
    assert nodes[0].author.settings == {"temperature": 0.9}
    assert nodes[0].provenance == {"budget": 10}

    picked = store.pick(nodes[1].id)
    assert picked.status == Status.PICKED
    assert [s.id for s in store.siblings(nodes[1].id)] == [nodes[0].id, nodes[2].id]
    assert {s.status for s in store.siblings(nodes[1].id)} == {Status.OFFERED}
    assert [c.id for c in store.children(root.id)] == [n.id for n in nodes]
    assert store.full_text(nodes[1].id) == "Once upon a time branch 1"
    assert [n.id for n in store.ancestry(nodes[1].id)] == [root.id, nodes[1].id]
    assert [a["action"] for a in store.actions(offer.id)] == [Action.PICK]


def test_pick_marks_whole_path_picked(store: TreeStore) -> None:
    _, root = store.create_tree("a")
    _, first = _offer(store, root.id, 2)
    _, second = _offer(store, first[0].id, 2)
    store.pick(second[1].id)
    assert store.get_node(first[0].id).status == Status.PICKED
    assert store.get_node(first[1].id).status == Status.OFFERED


def test_edit_keeps_revisions(store: TreeStore) -> None:
    _, root = store.create_tree("draft one")
    store.edit(root.id, "draft two")
    store.edit(root.id, "draft three")
    assert store.get_node(root.id).text == "draft three"
    assert [r.text for r in store.revisions(root.id)] == ["draft one", "draft two"]
    assert store.edit(root.id, "draft three").text == "draft three"  # no-op edit adds nothing
    assert len(store.revisions(root.id)) == 2


def test_prune_bookmark_tag(store: TreeStore) -> None:
    _, root = store.create_tree("x")
    _, nodes = _offer(store, root.id, 2)
    assert store.prune(nodes[0].id).status == Status.PRUNED
    assert [c.id for c in store.children(root.id, include_pruned=False)] == [nodes[1].id]
    assert store.prune(nodes[0].id, pruned=False).status == Status.OFFERED
    assert store.bookmark(nodes[1].id).bookmarked
    assert store.tag(nodes[1].id, "idea").tags == ("idea",)
    assert store.tag(nodes[1].id, "idea", on=False).tags == ()
    with pytest.raises(Conflict, match="root"):
        store.prune(root.id)


def test_unknown_ids_are_clear(store: TreeStore) -> None:
    with pytest.raises(NotFound, match="no node 'nope'"):
        store.get_node("nope")
    with pytest.raises(NotFound):
        store.pick("0000deadbeef")
    with pytest.raises(NotFound):
        store.get_tree("zzz")
    with pytest.raises(InvalidInput, match="too short"):
        store.resolve_node_id("ab")
    with pytest.raises(InvalidInput, match="not an id"):
        store.resolve_node_id("ab%_")


def test_short_ids_resolve(store: TreeStore) -> None:
    tree, root = store.create_tree("x")
    assert store.resolve_node_id(root.id[:8]) == root.id
    assert store.resolve_tree_id(tree.id[:8]) == tree.id


def test_failed_offer_keeps_partial_text(store: TreeStore) -> None:
    _, root = store.create_tree("x")
    offer = store.begin_offer(root.id, {"n": 2})
    assert store.get_offer(offer.id).state == OfferState.STREAMING
    assert store.fail_unfinished_offers("daemon stopped") == 1
    offer2 = store.begin_offer(root.id, {"n": 2})
    nodes = store.finish_offer(
        offer2.id,
        [NewBranch(" part", None, "error")],
        author=Author(MODEL, "m"),
        state=OfferState.FAILED,
        error="RuntimeError: boom",
    )
    got = store.get_offer(offer2.id)
    assert got.state == OfferState.FAILED and got.error == "RuntimeError: boom"
    assert nodes[0].meta["finish_reason"] == "error"
    assert store.get_offer(offer.id).error == "daemon stopped"


def test_versions_track_changes_for_indexing(store: TreeStore) -> None:
    _, root = store.create_tree("x")
    _, nodes = _offer(store, root.id, 2)
    seen = store.nodes_since(0)
    top = max(v for v, _ in seen)
    assert {n.id for _, n in seen} == {root.id, nodes[0].id, nodes[1].id}
    store.edit(nodes[0].id, "changed")
    assert [n.id for _, n in store.nodes_since(top)] == [nodes[0].id]


def test_listeners_see_changes(store: TreeStore) -> None:
    events: list[tuple[str, str]] = []
    store.on_change(lambda event, node: events.append((event, node.text)))
    _, root = store.create_tree("hi")
    store.edit(root.id, "ho")
    assert events == [("created", "hi"), ("updated", "ho")]


def test_concurrent_writers_from_threads(store: TreeStore) -> None:
    _, root = store.create_tree("x")

    def work() -> None:
        for _ in range(20):
            store.add_node(root.id, "y")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.children(root.id)) == 80
    assert store.integrity_check() == "ok"


def test_failed_write_changes_nothing(store: TreeStore) -> None:
    _, _root = store.create_tree("x")
    before = store.node_count()
    with pytest.raises(NotFound):
        store.add_node("missing-parent", "y")
    assert store.node_count() == before
