"""The channels' trees in the real store: lines, threads as branches, windows, picks, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ambient.errors import InvalidInput
from ambient.store import TreeStore
from ambient.tree import MODEL, Author, NewBranch, Status
from integrations.discord.branches import ChannelTrees, Place, tree_source
from integrations.discord.transcript import ChatLine

CHANNEL = Place(guild_id=1, channel_id=10, timeline_id=10, title="#general")
THREAD = Place(guild_id=1, channel_id=10, timeline_id=102, title="#general")  # opened on message 102


def line(message_id: int, author: str, text: str, timeline: int = 10) -> ChatLine:
    return ChatLine(message_id, timeline, author, 7, f"{author}: {text}\n")


@pytest.fixture
def store(tmp_path: Path) -> TreeStore:
    with TreeStore(tmp_path / "t.sqlite3") as store:
        yield store


def chat(trees: ChannelTrees) -> str:
    lines = [line(101, "Alice", "hi"), line(102, "Bob", "hello"), line(103, "Carol", "hey")]
    return trees.record(CHANNEL, None, lines, upto=None)


def offer(store: TreeStore, parent_id: str, *texts: str) -> list[str]:
    _, nodes = store.add_offer(parent_id, [NewBranch(t) for t in texts], author=Author(MODEL, "fake"))
    return [n.id for n in nodes]


def test_one_tree_per_channel_with_the_chat_as_a_chain(store: TreeStore) -> None:
    trees = ChannelTrees(lambda: store)
    head = chat(trees)
    assert chat(trees) == head  # recording again adds nothing
    tree = store.find_tree(tree_source(1, 10))
    assert tree is not None and tree.title == "#general"
    path = store.ancestry(head)
    assert [n.text for n in path] == ["", "Alice: hi\n", "Bob: hello\n", "Carol: hey\n"]
    assert all(n.author.kind == "human" for n in path) and path[1].author.name == "Alice"
    assert len(store.list_trees()) == 1


def test_upto_gives_the_line_at_or_before_a_message(store: TreeStore) -> None:
    trees = ChannelTrees(lambda: store)
    chat(trees)
    bob = trees.record(CHANNEL, None, [], upto=102)
    assert store.get_node(bob).text == "Bob: hello\n"
    assert store.get_node(trees.record(CHANNEL, None, [], upto=150)).text == "Carol: hey\n"


def test_a_thread_is_a_branch_from_the_message_it_was_opened_on(store: TreeStore) -> None:
    trees = ChannelTrees(lambda: store)
    chat(trees)
    anchor = trees.node_for_message(CHANNEL, 102)
    assert anchor is not None
    head = trees.record(THREAD, anchor, [line(201, "Carol", "in the thread", timeline=102)], upto=None)
    assert [n.text for n in store.ancestry(head)][-2:] == ["Bob: hello\n", "Carol: in the thread\n"]
    later = trees.record(CHANNEL, None, [line(104, "Alice", "back in the channel")], upto=None)
    assert store.get_node(later).parent_id == trees.node_for_message(CHANNEL, 103)


def test_the_index_survives_a_restart(store: TreeStore) -> None:
    head = chat(ChannelTrees(lambda: store))
    again = ChannelTrees(lambda: store)
    assert again.record(CHANNEL, None, [line(103, "Carol", "hey")], upto=None) == head
    assert store.node_count() == 4


def test_window_is_the_last_lines_ending_on_a_new_line(store: TreeStore) -> None:
    trees = ChannelTrees(lambda: store)
    head = chat(trees)
    assert trees.window(head, 2) == "Bob: hello\nCarol: hey\n"
    assert trees.window(head, 50) == "Alice: hi\nBob: hello\nCarol: hey\n"


def test_forgotten_lines_leave_the_tree_and_the_context(store: TreeStore) -> None:
    trees = ChannelTrees(lambda: store)
    head = chat(trees)
    bob = trees.node_of(CHANNEL, 102)
    assert bob is not None and trees.node_of(CHANNEL, 999) is None
    store.forget_node(bob)  # what the bot does when Discord says the message was deleted
    trees.forgotten(CHANNEL)
    assert trees.window(head, 50) == "Alice: hi\nCarol: hey\n"
    assert trees.node_of(CHANNEL, 102) is None and not store.node_exists(bob)
    assert trees.latest_before(CHANNEL, 104) == head  # later lines still hang after the last one


def test_edited_lines_take_the_new_text(store: TreeStore) -> None:
    trees = ChannelTrees(lambda: store)
    head = chat(trees)
    assert trees.mark_edited(CHANNEL, 102, "Bob: hello there\n")
    assert not trees.mark_edited(CHANNEL, 999, "Nobody: never stored\n")
    assert trees.window(head, 50) == "Alice: hi\nBob: hello there\nCarol: hey\n"
    node_id = trees.node_for_message(CHANNEL, 102) or ""
    assert [r.text for r in store.revisions(node_id)] == ["Bob: hello\n"]


def test_pick_is_stored_before_posting_and_only_once(store: TreeStore) -> None:
    trees = ChannelTrees(lambda: store)
    head = chat(trees)
    first, _ = offer(store, head, "Alice: nice", "Bob: sure")
    result = trees.pick(first, {"by": "Bob"})
    assert not result.already_posted and result.text == "Alice: nice"
    assert store.get_node(first).status == Status.PICKED
    assert trees.pick(first, {"by": "Bob"}).already_posted is False  # stored, not yet posted: post again
    trees.mark_posted(THREAD, first, message_id=300, author_id=1)
    assert trees.pick(first, {"by": "Carol"}).already_posted
    assert trees.window(first, 50).endswith("Alice: nice\n")  # a posted pick is a line of the chat
    with pytest.raises(InvalidInput):
        trees.pick(head, {})


def test_branching_goes_on_mid_text_and_a_pick_posts_the_whole_branch(store: TreeStore) -> None:
    trees = ChannelTrees(lambda: store)
    head = chat(trees)
    first, _ = offer(store, head, "Alice: once upon", "x")
    assert trees.window(first, 50).endswith("Alice: once upon")  # Branch continues the text itself
    deeper, _ = offer(store, first, " a time", "y")
    assert trees.pick(deeper, {}).text == "Alice: once upon a time"
