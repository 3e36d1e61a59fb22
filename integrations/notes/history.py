"""A note's tree: its versions as a branch, and the points where offers were made.

Design
------
Each note has one tree, found by its source ``note:<absolute path>``. The root
is empty (the note's beginning). The note's text is kept as *segments*: human
nodes whose texts, read from the root down, spell out one version of the note.
Versions share the segments they have in common, so the note's history is a
branch of the tree (a new branch where the person rewrote something), and
every past version is made of nodes the memory index can find by meaning.

When a version is recorded, the person's change is the region that differs
from the last version seen (:func:`~integrations.notes.notes.find_change`); its
end is the *point* where they were writing. The new version is stored as

* the deepest existing segment path that spells a prefix of it, up to the
  point (a continuation accepted into the note is a picked model node on that
  path, so the tree shows it became part of the note);
* a *point* node: the text from there up to the point (it may be empty);
* a *tail* node: the rest of the note after the point (absent when the person
  wrote at the end).

So the text from the root to the point node is exactly the note up to the
point, and offers hang under the point node as siblings of the tail: the
model's N continuations beside what the person actually has after it. Each
point node's meta records the note's path, the point (a character offset), and
the :data:`WINDOW` characters before and after it; accepting an offer checks
the note still has those around the point (see :mod:`integrations.notes.accept`).

The tree's meta holds ``last`` (the node ending the last version seen, its
number, hash and length), ``point`` (the latest point node), ``path`` and
``sidecar``; and, while an accept is writing the note, ``expect`` (the hash of
the text it writes, so the watcher knows that write is ambient's own).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ambient.store import TreeStore
from ambient.tree import HUMAN, Author, Node, Offer, Status, Tree
from integrations.notes.notes import find_change, text_sha

SOURCE_PREFIX = "note:"
SCOPE = "notes"  # a private place: notes, speech and typed text see one another
WINDOW = 200  # characters kept before and after a point, to recognise it on accept
EXPECT_TTL_S = 120.0  # an accept's expected write older than this no longer counts

def tree_source(path: str) -> str:
    return SOURCE_PREFIX + path


def is_note_tree(tree: Tree) -> bool:
    return tree.source.startswith(SOURCE_PREFIX)


def note_path_of(tree: Tree) -> str:
    return tree.source[len(SOURCE_PREFIX) :]


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What recording a version did."""

    tree: Tree
    changed: bool  # False: the text equals the last version seen
    version: int
    point_node: Node | None = None  # where offers go (when asked for)
    point: int = 0
    start: int = 0  # where the changed region begins


@dataclasses.dataclass(frozen=True)
class _Seen:
    """The last version seen: its segment path with each node's end offset."""

    text: str
    path: list[tuple[Node, int]]
    version: int


class NoteHistory:
    """Records a note's versions in its tree (blocking: call it in a worker thread)."""

    def __init__(self, store: TreeStore) -> None:
        self.store = store

    def find_tree(self, path: str) -> Tree | None:
        return self.store.find_tree(tree_source(path))

    def record(
        self,
        path: str,
        text: str,
        *,
        offer: bool,
        point: int | None = None,
        sidecar: str | None = None,
    ) -> Recorded:
        """Record ``text`` as the note's newest version; with ``offer``, make a point node for offers.

        ``point`` overrides where the person was writing (by default the end of the changed region;
        the end of the note for a note seen for the first time).
        """
        tree = self.find_tree(path) or self._create(path, sidecar)
        seen = self._last_seen(tree)
        if seen.version and text_sha(text) == tree.meta.get("last", {}).get("sha256"):
            return Recorded(tree, changed=False, version=seen.version)
        change = find_change(seen.text, text)
        # A given point before the change starts (repeated text makes the region ambiguous) moves to it.
        point = change.point if point is None else min(max(point, change.start), len(text))
        offer = offer and bool(text[:point].strip())  # nothing to continue before the point
        version = seen.version + 1
        anchor, pos = self._anchor(seen, text, change.start, point)
        point_node, last = self._add_segments(tree, anchor, text, pos, point, version, offer)
        meta: dict[str, Any] = {
            "last": {"node": last.id, "version": version, "sha256": text_sha(text), "chars": len(text)},
            "expect": None,
        }
        if point_node is not None:
            meta["point"] = {"node": point_node.id, "version": version, "at": point}
        tree = self.store.update_tree_meta(tree.id, meta)
        return Recorded(tree, True, version, point_node, point, change.start)

    # ------------------------------------------------------------ internals
    def _create(self, path: str, sidecar: str | None) -> Tree:
        name = path.rsplit("/", 1)[-1]
        tree, _ = self.store.create_tree(
            "",
            title=name,
            source=tree_source(path),
            scope=SCOPE,
            meta={"kind": "note", "path": path, "sidecar": sidecar},
        )
        return tree

    def last_text(self, tree: Tree) -> str:
        return self._last_seen(tree).text

    def _last_seen(self, tree: Tree) -> _Seen:
        last = tree.meta.get("last") or {}
        node_id = last.get("node")
        if node_id:
            nodes = self.store.ancestry(node_id)
            text = "".join(n.text for n in nodes)
            if text_sha(text) == last.get("sha256"):
                return _Seen(text, _with_ends(nodes), int(last.get("version", 0)))
        root = self.store.get_node(tree.root_id)
        return _Seen("", [(root, 0)], int(last.get("version", 0)))

    def _anchor(self, seen: _Seen, text: str, start: int, point: int) -> tuple[Node, int]:
        """The deepest node spelling a prefix of ``text`` that ends at or before ``point``."""
        node, pos = seen.path[0]
        for candidate, end in seen.path:
            if end > start:
                break
            node, pos = candidate, end
        while True:
            step = self._descend(node, text, pos, point)
            if step is None:
                return node, pos
            node, pos = step

    def _descend(self, node: Node, text: str, pos: int, point: int) -> tuple[Node, int] | None:
        """A child that continues the note at ``pos`` (the longest; the person's text or a pick)."""
        best: tuple[Node, int] | None = None
        for child in self.store.children(node.id, include_pruned=False):
            end = pos + len(child.text)
            if not child.text or end > point or not text.startswith(child.text, pos):
                continue
            if child.author.kind != HUMAN and child.status != Status.PICKED:
                continue
            if best is None or end > best[1]:
                best = (child, end)
        return best

    def _add_segments(
        self, tree: Tree, anchor: Node, text: str, pos: int, point: int, version: int, offer: bool
    ) -> tuple[Node | None, Node]:
        base = {"kind": "note", "path": note_path_of(tree), "version": version}
        parent = anchor
        point_node: Node | None = None
        if offer or point > pos:
            meta = {**base, "role": "point" if offer else "segment"}
            if offer:
                meta.update(point_meta(text, point))
            head = text[pos:point]
            parent = point_node = self.store.add_node(parent.id, head, author=Author(HUMAN), meta=meta)
        if point < len(text):
            parent = self.store.add_node(
                parent.id, text[point:], author=Author(HUMAN), meta={**base, "role": "tail"}
            )
        return (point_node if offer else None), parent

    # ------------------------------------------------------------- accepting
    def expect(self, tree: Tree, sha256: str, node_id: str) -> None:
        """Mark ``sha256`` as the text an accept is about to write (the watcher then stays quiet)."""
        expect = {"sha256": sha256, "node": node_id, "at": time.time()}
        self.store.update_tree_meta(tree.id, {"expect": expect})

    def clear_expect(self, tree: Tree) -> None:
        self.store.update_tree_meta(tree.id, {"expect": None})

    @staticmethod
    def is_expected(tree: Tree, sha256: str) -> bool:
        expect = tree.meta.get("expect") or {}
        fresh = time.time() - float(expect.get("at", 0)) < EXPECT_TTL_S
        return bool(fresh and expect.get("sha256") == sha256)

    # ---------------------------------------------------------------- offers
    def current_offers(self, tree: Tree) -> tuple[Node | None, list[Offer]]:
        """The latest point node of the note and the offers made at it."""
        point = tree.meta.get("point") or {}
        node_id = point.get("node")
        if not node_id:
            return None, []
        return self.store.get_node(node_id), self.store.offers_at(node_id)


def point_meta(text: str, point: int) -> dict[str, Any]:
    return {
        "point": point,
        "before": text[max(0, point - WINDOW) : point],
        "after": text[point : point + WINDOW],
        "sha256": text_sha(text),
    }


def _with_ends(nodes: list[Node]) -> list[tuple[Node, int]]:
    out: list[tuple[Node, int]] = []
    end = 0
    for node in nodes:
        end += len(node.text)
        out.append((node, end))
    return out
