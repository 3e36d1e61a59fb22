"""Accepting an offer: the one way a continuation enters a note, and only when a person asks.

:func:`accept_node` (used by ``ambient accept NODE`` and the daemon's API):

1. finds the point the offer was made for (the offer's point node, see
   :mod:`integrations.notes.history`) and the text to insert: the offered node,
   or the whole path of continuations from the point down to it;
2. refuses a note whose real path is not inside a watched folder (a link to a
   file elsewhere: :mod:`integrations.notes.walls`), then takes the note's lock
   (shared by the daemon and ``ambient accept``);
3. re-reads the note and checks the point is still there: the note must still
   have the same :data:`~integrations.notes.history.WINDOW` characters before
   and after it. If the point moved (text added or removed above it) and that
   context occurs exactly once, the point is relocated; otherwise it refuses
   with :class:`~ambient.errors.Conflict` and changes nothing;
4. writes the note atomically, keeping its permission bits, owner and line
   endings, and only over exactly the content it read: editors take no lock, so
   a save can land at any moment; :func:`ambient.fsutil.write_atomic` compares
   the content's hash just before the swap and what the swap took out just
   after, and if a save slipped in it puts the save back and the accept is
   refused (409, exit 2) with the note as it was saved. The tree marks the new
   text as expected first, so the watcher knows this save is ambient's own and
   makes no offers for it;
5. records the accept (``Action.ACCEPT``), picks the node, and records the new
   version in the note's tree (the accepted node becomes part of its history).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from ambient.errors import Conflict
from ambient.fsutil import ChangedWhileWriting, write_atomic
from ambient.store import TreeStore
from ambient.tree import Action, Node
from integrations.notes import sidecar
from integrations.notes.history import WINDOW, NoteHistory, is_note_tree, note_path_of
from integrations.notes.notes import NoteText, line_col, read_note, text_sha
from integrations.notes.walls import Walls

_LOGGER = logging.getLogger(__name__)

MIN_CONTEXT = 12  # characters before a moved point that must be found again
CONFLICT = "the note changed around the point since this offer was made; ask for new offers (save again)"
CHANGED = (
    "{path} changed while accepting (it was saved at that very moment): nothing was inserted and nothing "
    "was lost, the note is as it was saved{kept}; accept again"
)


@dataclasses.dataclass(frozen=True)
class Accepted:
    node_id: str
    path: str
    point: int  # character offset where the text went in
    inserted: str
    relocated: bool  # the point had moved and was found again by its context
    line: int
    column: int
    sha256: str  # of the note as written

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _Point:
    node: Node
    at: int
    before: str
    after: str


def accept_node(store: TreeStore, node_id: str, walls: Walls) -> Accepted:
    """Insert the continuation ``node_id`` into its note at the point it was made for (blocking).

    Only a note inside ``walls`` (the watched folders) is written; Conflict for anything else.
    """
    node = store.get_node(node_id)
    tree = store.get_tree(node.tree_id)
    if not is_note_tree(tree):
        raise Conflict(
            f"node {node_id[:12]} does not belong to a note: only offers made beside a note can be accepted"
        )
    point, chain = _point_and_chain(store, node)
    inserted = "".join(n.text for n in chain)
    if not inserted:
        raise Conflict(f"node {node_id[:12]} has no text to insert: choose another continuation")
    path = note_path_of(tree)
    real = walls.writable(path)
    history = NoteHistory(store)
    with walls.lock(real):
        note = read_note(real, walls.max_bytes, walls.folders)
        at, relocated = locate(note.text, point)
        new_text = note.text[:at] + inserted + note.text[at:]
        history.expect(tree, text_sha(new_text), node.id)
        try:
            _write(path, note, new_text)
        except BaseException:
            history.clear_expect(tree)
            raise
        result = _record(store, history, node, path, at, inserted, new_text, relocated, point.at)
    _rewrite_sidecar(store, tree.id)
    return result


def _record(
    store: TreeStore,
    history: NoteHistory,
    node: Node,
    path: str,
    at: int,
    inserted: str,
    new_text: str,
    relocated: bool,
    offered_at: int,
) -> Accepted:
    line, column = line_col(new_text, at)
    sha = text_sha(new_text)
    data = {"path": path, "point": at, "offered_at": offered_at, "chars": len(inserted), "sha256": sha}
    store.pick(node.id, {"via": "accept", "path": path})
    store.record(Action.ACCEPT, node.id, {**data, "relocated": relocated})
    history.record(path, new_text, offer=False, point=at + len(inserted))
    return Accepted(node.id, path, at, inserted, relocated, line, column, sha)


def _point_and_chain(store: TreeStore, node: Node) -> tuple[_Point, list[Node]]:
    """The point an offer was made for, and the continuation nodes from it down to ``node``."""
    path = store.ancestry(node.id)
    index = max(i for i, n in enumerate(path) if i == 0 or n.meta.get("kind") == "note")
    anchor, chain = path[index], path[index + 1 :]
    if not chain:
        raise Conflict(
            f"node {node.id[:12]} is the note's own text, not an offer: accept one of the continuations "
            "offered under it (`ambient offers NOTE`)"
        )
    role = anchor.meta.get("role")
    if role == "point":
        return _Point(anchor, int(anchor.meta["point"]), anchor.meta["before"], anchor.meta["after"]), chain
    if role == "tail":  # offered at the end of a version (e.g. "more like these" on the tail)
        text = "".join(n.text for n in path[: index + 1])
        return _Point(anchor, len(text), text[-WINDOW:], ""), chain
    raise Conflict(
        f"node {node.id[:12]} was not offered at a point of the note, so there is no place to insert it: "
        "save the note to get offers at the point you are writing"
    )


def locate(text: str, point: _Point) -> tuple[int, bool]:
    """Where ``point`` is in ``text`` now: (offset, relocated). Raises Conflict if it is gone or ambiguous.

    In place, the whole windows must match. Elsewhere (text was added or removed above the point),
    the point is found again by the lines just before it (at least :data:`MIN_CONTEXT` characters)
    and the whole window after it, when that context occurs exactly once.
    """
    if point.at <= len(text) and _fits(text, point.at, point.before, point.after):
        return point.at, False
    before = _last_lines(point.before)
    found: list[int] = []
    needle = before + point.after
    start = text.find(needle) if needle else -1
    while start >= 0 and len(found) < 2:
        at = start + len(before)
        if _fits(text, at, before, point.after):
            found.append(at)
        start = text.find(needle, start + 1)
    if len(found) == 1:
        return found[0], found[0] != point.at
    raise Conflict(CONFLICT)


def _fits(text: str, at: int, before: str, after: str) -> bool:
    """The same context around ``at``; when the note ended within the window after it, it still must."""
    if not text.endswith(before, 0, at) or not text.startswith(after, at):
        return False
    return len(after) >= WINDOW or at + len(after) == len(text)


def _last_lines(before: str) -> str:
    """The end of ``before`` from the start of its last line with text (at least MIN_CONTEXT characters)."""
    start = before.rfind("\n", 0, len(before.rstrip("\n"))) + 1
    while len(before) - start < MIN_CONTEXT and start > 0:
        start = before.rfind("\n", 0, start - 1) + 1
    return before[start:]


def _write(path: str, note: NoteText, new_text: str) -> None:
    """Replace the note's real file (a symlinked note stays a symlink), keeping mode and owner, if it
    still holds exactly the text read; refuse, leaving it as it was saved, if it does not."""
    try:
        st = os.lstat(note.path)
    except OSError as exc:
        raise Conflict(f"{path} cannot be written now ({exc.strerror}); nothing was changed") from None
    try:
        write_atomic(note.path, new_text, mode=note.mode, unchanged=note.sha256, owner=(st.st_uid, st.st_gid))
    except ChangedWhileWriting as exc:
        kept = f" (a save that could not be put back is in {exc.kept})" if exc.kept else ""
        raise Conflict(CHANGED.format(path=path, kept=kept)) from None


def _rewrite_sidecar(store: TreeStore, tree_id: str) -> None:
    try:
        sidecar.rewrite(store, store.get_tree(tree_id))
    except OSError as exc:
        _LOGGER.warning("could not rewrite the sidecar of tree %s: %s", tree_id, exc)
