"""The channels' trees in the store: recording lines, windows of context, picks.

Every method here is blocking (SQLite): the bot calls them through
``hub.run_blocking``. Nothing here knows about discord.py.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ambient.errors import InvalidInput
from ambient.store import TreeStore
from ambient.tree import HUMAN, Action, Author, Node, Status, new_id, now
from integrations.discord.transcript import META_KEY, ChatLine, TimelineIndex, is_deleted

SOURCE_PREFIX = "discord:"


def server_scope(guild_id: int) -> str:
    """A Discord server is a wall of its own: its offers see only its own trees (ambient/scopes.py)."""
    return f"discord:{guild_id}"


def scope_of_source(tree_source: str) -> str | None:
    """The scope of a tree named ``discord:<server>/<channel>`` (None: not a Discord tree)."""
    if not tree_source.startswith(SOURCE_PREFIX):
        return None
    guild = tree_source[len(SOURCE_PREFIX) :].split("/", 1)[0]
    return server_scope(int(guild)) if guild.isdigit() else None


def tree_source(guild_id: int, channel_id: int) -> str:
    """The ``source`` of a channel's tree: one tree per channel; its threads are branches of it."""
    return f"{SOURCE_PREFIX}{guild_id}/{channel_id}"


def is_posted(node: Node) -> bool:
    """Whether the node is a line of the chat (a person's message, or a pick posted to Discord)."""
    info = node.meta.get(META_KEY)
    return isinstance(info, dict) and "message" in info


@dataclasses.dataclass(frozen=True)
class Place:
    """Where a line is said: the channel's tree and the timeline (the channel or a thread)."""

    guild_id: int
    channel_id: int  # the channel (a thread's parent)
    timeline_id: int  # the channel itself, or the thread
    title: str = ""

    @property
    def in_thread(self) -> bool:
        return self.timeline_id != self.channel_id


def _line_node(tree_id: str, parent_id: str, line: ChatLine, place: Place) -> Node:
    at = now()
    return Node(
        id=new_id(),
        tree_id=tree_id,
        parent_id=parent_id,
        text=line.text,
        author=Author(HUMAN, line.author),
        status=Status.PICKED,
        created_at=at,
        updated_at=at,
        meta=line.meta(place.guild_id, place.channel_id),
    )


@dataclasses.dataclass(frozen=True)
class PickResult:
    node: Node
    text: str  # what to post: the picked text, with any unposted continuation it grows from
    already_posted: bool


class ChannelTrees:
    """One tree per channel; threads are branches; an index maps messages to nodes."""

    def __init__(self, store: Callable[[], TreeStore]) -> None:
        self._store = store
        self._lock = threading.RLock()
        self._trees: dict[str, tuple[str, str]] = {}  # source -> (tree id, root id)
        self._indexes: dict[str, TimelineIndex] = {}  # tree id -> index

    @property
    def store(self) -> TreeStore:
        return self._store()

    # ------------------------------------------------------------- trees
    def tree_for(self, place: Place) -> tuple[str, str]:
        """(tree id, root id) of the channel's tree, created on first use."""
        source = tree_source(place.guild_id, place.channel_id)
        with self._lock:
            if source in self._trees:
                return self._trees[source]
            tree = self.store.find_tree(source)
            if tree is None:
                meta = {META_KEY: {"guild": str(place.guild_id), "channel": str(place.channel_id)}}
                tree, _ = self.store.create_tree(
                    "",
                    title=place.title or source,
                    source=source,
                    scope=server_scope(place.guild_id),
                    author=Author(HUMAN, "discord"),
                    meta=meta,
                )
            self._trees[source] = (tree.id, tree.root_id)
            return self._trees[source]

    def _index(self, tree_id: str) -> TimelineIndex:
        with self._lock:
            if tree_id not in self._indexes:
                nodes = self.store.tree_nodes(tree_id)
                self._indexes[tree_id] = TimelineIndex.from_metas((n.id, n.meta) for n in nodes)
            return self._indexes[tree_id]

    # ------------------------------------------------------------- lines
    def record(self, place: Place, base_id: str | None, lines: Sequence[ChatLine], upto: int | None) -> str:
        """Store the lines not stored yet; return the node of the latest line at or before ``upto``.

        A new line goes below the latest known line of its timeline said before
        it, else below ``base_id`` (a thread's anchor), else the tree's root.
        ``upto`` None means the latest line of the timeline.
        """
        tree_id, root_id = self.tree_for(place)
        base = base_id or root_id
        with self._lock:
            index = self._index(tree_id)
            new: list[Node] = []
            for line in sorted(lines, key=lambda ln: ln.message_id):
                if index.node_for(line.message_id) is not None:
                    continue
                parent = index.latest_before(place.timeline_id, line.message_id) or base
                node = _line_node(tree_id, parent, line, place)
                index.add(place.timeline_id, line.message_id, node.id)
                new.append(node)
            if new:
                self._insert(tree_id, new)
            if upto is None:
                return index.latest(place.timeline_id) or base
            return index.latest_before(place.timeline_id, upto + 1) or base

    def _insert(self, tree_id: str, nodes: list[Node]) -> None:
        """All new lines in one transaction (one disk sync, however long the window)."""
        try:
            self.store.import_nodes_into(tree_id, nodes)
        except BaseException:
            self._indexes.pop(tree_id, None)  # rebuilt from the store on next use
            raise

    def node_for_message(self, place: Place, message_id: int) -> str | None:
        tree_id, _ = self.tree_for(place)
        return self._index(tree_id).node_for(message_id)

    def latest_before(self, place: Place, message_id: int) -> str:
        """The node of the latest line of the timeline before ``message_id``, else the root."""
        tree_id, root_id = self.tree_for(place)
        return self._index(tree_id).latest_before(place.timeline_id, message_id) or root_id

    def node_of(self, place: Place, message_id: int) -> str | None:
        """The node that holds message ``message_id`` of ``place``, if it was stored."""
        tree = self.store.find_tree(tree_source(place.guild_id, place.channel_id))
        return self._index(tree.id).node_for(message_id) if tree is not None else None

    def mark_edited(self, place: Place, message_id: int, text: str) -> bool:
        """A person edited a stored message: its node takes the new text; the old one stays a revision."""
        node_id = self.node_of(place, message_id)
        if node_id is None:
            return False
        self.store.edit(node_id, text)
        return True

    def forgotten(self, place: Place) -> None:
        """A node of ``place``'s tree was forgotten: its message index is read again from the store."""
        tree = self.store.find_tree(tree_source(place.guild_id, place.channel_id))
        with self._lock:
            if tree is not None:
                self._indexes.pop(tree.id, None)

    # ------------------------------------------------------------ context
    def window(self, node_id: str, window: int) -> str:
        """The chat up to ``node_id``: its last ``window`` lines, ready to be continued.

        Walks up from the node (never the whole history). A person's line
        always starts on a new line; the text ends with a line break when the
        node is a line of the chat (so the model writes the next line), and
        without one when it is an unposted continuation (Branch goes on with it).
        """
        nodes = self._path_up(node_id, window)
        parts: list[str] = []
        for node in nodes:
            if parts and node.author.kind == HUMAN and not parts[-1].endswith("\n"):
                parts[-1] += "\n"
            parts.append(node.text)
        text = "".join(parts)
        if nodes and is_posted(nodes[-1]) and not text.endswith("\n"):
            text += "\n"
        return text

    def _path_up(self, node_id: str, window: int) -> list[Node]:
        """Up to ``window`` nodes ending at ``node_id`` (root and deleted lines left out), oldest first."""
        out: list[Node] = []
        current: str | None = node_id
        while current is not None and len(out) < window:
            node = self.store.get_node(current)
            if node.parent_id is not None and not is_deleted(node.meta):
                out.append(node)
            current = node.parent_id
        out.reverse()
        return out

    def nodes(self, node_ids: Sequence[str]) -> list[Node]:
        return [self.store.get_node(i) for i in node_ids]

    def node(self, node_id: str) -> Node:
        return self.store.get_node(node_id)

    # -------------------------------------------------------------- picks
    def pick(self, node_id: str, by: dict[str, Any]) -> PickResult:
        """Record that a person picked this continuation (before anything is posted)."""
        node = self.store.get_node(node_id)
        if not node.author.is_model:
            raise InvalidInput("only a continuation can be picked")
        if is_posted(node):
            return PickResult(node, "", already_posted=True)
        if node.status != Status.PICKED:
            node = self.store.pick(node_id, {"via": "discord", **by})
        return PickResult(node, self._unposted_text(node), already_posted=False)

    def _unposted_text(self, node: Node) -> str:
        """The node's text, after that of the continuations it grows from that were never posted."""
        chain = [node]
        parent_id = node.parent_id
        while parent_id is not None:
            parent = self.store.get_node(parent_id)
            if not parent.author.is_model or is_posted(parent):
                break
            chain.append(parent)
            parent_id = parent.parent_id
        return "".join(n.text for n in reversed(chain))

    def mark_posted(self, place: Place, node_id: str, message_id: int, author_id: int) -> None:
        """The picked text is now the line ``message_id`` of the timeline."""
        tree_id, _ = self.tree_for(place)
        line = ChatLine(message_id, place.timeline_id, "", author_id, "")
        with self._lock:
            self.store.update_meta(node_id, line.meta(place.guild_id, place.channel_id))
            self._index(tree_id).add(place.timeline_id, message_id, node_id)

    def regenerate(self, node_id: str, data: dict[str, Any]) -> None:
        self.store.record(Action.REGENERATE, node_id, data)

    def offer_settings(self, node: Node) -> dict[str, Any]:
        if node.offer_id is None:
            return {}
        return dict(self.store.get_offer(node.offer_id).settings)
