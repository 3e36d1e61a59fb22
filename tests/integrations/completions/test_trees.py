"""Where a client's prompts go in its trees (trees.py), on a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ambient.keys import Key
from ambient.store import TreeStore
from ambient.tree import MODEL, Author, NewBranch, Status
from integrations.completions.trees import place

LOOM = Key("loom", "key:loom")
OTHER = Key("other", "key:other")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TreeStore]:
    s = TreeStore(tmp_path / "store.sqlite3")
    yield s
    s.close()


def offer(store: TreeStore, node_id: str, *texts: str) -> list[str]:
    _, nodes = store.add_offer(node_id, [NewBranch(t) for t in texts], author=Author(MODEL, "m"))
    return [n.id for n in nodes]


def test_a_new_prompt_starts_a_tree_in_the_key_s_scope(store: TreeStore) -> None:
    placed = place(store, LOOM, "Once upon a time")
    tree = store.get_tree(placed.tree_id)
    assert placed.new_tree and tree.source == "key:loom" and tree.scope == "key:loom"
    assert store.get_node(placed.node_id).text == "Once upon a time"
    private = Key("obs", "loom")
    assert store.get_tree(place(store, private, "Hello").tree_id).scope == "loom"


def test_going_on_from_a_choice_picks_it_and_adds_the_person_s_text(store: TreeStore) -> None:
    root = place(store, LOOM, "Once upon a time")
    a, b = offer(store, root.node_id, " there was", " a fox")
    again = place(store, LOOM, "Once upon a time a fox")
    assert (again.node_id, again.picked, again.new_tree) == (b, b, False)
    assert store.get_node(b).status == Status.PICKED and store.get_node(a).status == Status.OFFERED
    pick = [x for x in store.actions() if x["action"] == "pick"]
    assert pick and pick[-1]["node_id"] == b and pick[-1]["data"] == {"via": "key:loom", "implicit": True}

    more = place(store, LOOM, "Once upon a time a fox ran, said I.")
    written = store.get_node(more.node_id)
    assert more.written == written.id and written.parent_id == b and written.text == " ran, said I."
    assert not written.author.is_model and more.picked is None
    assert len(store.list_trees("key:loom")) == 1


def test_the_same_prompt_again_is_offered_at_the_same_node(store: TreeStore) -> None:
    root = place(store, LOOM, "Once upon a time")
    (c,) = offer(store, root.node_id, " there")
    assert place(store, LOOM, "Once upon a time").node_id == root.node_id
    assert store.get_node(c).status == Status.OFFERED  # regenerating picks nothing


def test_a_prompt_that_drops_a_choice_s_trailing_space_ends_in_it(store: TreeStore) -> None:
    root = place(store, LOOM, "Once upon a time")
    (c,) = offer(store, root.node_id, " there was ")
    placed = place(store, LOOM, "Once upon a time there was")  # loomsidian strips trailing spaces
    assert placed.node_id == c and placed.picked == c and placed.written is None


def test_a_prompt_that_edits_a_choice_branches_beside_it(store: TreeStore) -> None:
    root = place(store, LOOM, "Once upon a time")
    (c,) = offer(store, root.node_id, " there was a fox")
    placed = place(store, LOOM, "Once upon a time there was a cat")
    assert store.get_node(placed.node_id).parent_id == root.node_id
    assert store.get_node(placed.node_id).text == " there was a cat"
    assert store.get_node(c).status == Status.OFFERED


def test_keys_and_unrelated_prompts_keep_to_their_own_trees(store: TreeStore) -> None:
    mine = place(store, LOOM, "Once upon a time")
    theirs = place(store, OTHER, "Once upon a time, far away")
    assert theirs.new_tree and theirs.tree_id != mine.tree_id
    assert place(store, LOOM, "Something else").new_tree
    assert place(store, LOOM, "Once").new_tree  # shorter than every root: a tree of its own
    assert len(store.list_trees("key:loom")) == 3


def test_an_edited_root_is_not_matched_by_its_old_text(store: TreeStore) -> None:
    root = place(store, LOOM, "Once upon a time")
    store.edit(root.node_id, "Twice upon a time")
    assert place(store, LOOM, "Once upon a time, again").new_tree
