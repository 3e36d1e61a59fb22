"""Sidecars: the current offers for a note, as a Markdown file a person can read in their editor.

A sidecar lives under ``AMBIENT_HOME/sidecars/``, never in a watched folder::

    AMBIENT_HOME/sidecars/<folder name>-<hash of the folder's path>/<path in the folder>.offers.md

It is derived from the tree store (the source of truth) and rewritten
atomically whenever an offer for the note finishes or one is accepted, so
editing it changes nothing. Its folders are made 0700 and the file 0600 (it
holds what the person wrote and what was offered). Every text in it that comes
from the model, the note or a file name is rendered inert
(:mod:`integrations.notes.inert`): a Markdown previewer shows it verbatim, with
no live image, link or HTML.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from ambient.fsutil import write_atomic
from ambient.home import private_dir
from ambient.store import TreeStore
from ambient.tree import Action, Node, Offer, Tree
from integrations.notes.history import NoteHistory, is_note_tree, note_path_of
from integrations.notes.inert import code_block, code_span
from integrations.notes.notes import line_col

SIDECAR_DIR = "sidecars"
SUFFIX = ".offers.md"
_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+,=@-]")
PREVIEW = 80


def sidecar_path(home: Path, folder: Path, note: Path) -> Path:
    """Where the sidecar of ``note`` (inside the watched ``folder``) goes."""
    digest = hashlib.sha256(str(folder).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    label = f"{_safe(folder.name) or 'root'}-{digest}"
    parts = [_safe(p) or "_" for p in note.relative_to(folder).parts]
    parts[-1] += SUFFIX
    return home / SIDECAR_DIR / label / Path(*parts)


def _safe(part: str) -> str:
    return _UNSAFE.sub("_", part).lstrip(".")


def rewrite(store: TreeStore, tree: Tree) -> Path | None:
    """Rewrite the sidecar of a note's tree (if it has one); returns its path."""
    where = tree.meta.get("sidecar")
    if not where or not is_note_tree(tree):
        return None
    path = Path(where)
    private_dir(path.parent)
    write_atomic(path, render(store, tree))  # a new file is 0600 (mkstemp)
    return path


def forget(store: TreeStore, home: Path, touched: Sequence[str], removed: Sequence[Tree]) -> list[str]:
    """After forgetting: rewrite the sidecars of note trees that lost nodes, delete those of removed notes.

    Only files under ``home``'s sidecars folder are ever deleted.
    """
    lines: list[str] = []
    for tree_id in touched:
        if store.tree_exists(tree_id) and rewrite(store, store.get_tree(tree_id)) is not None:
            lines.append(f"sidecar rewritten: {store.get_tree(tree_id).meta['sidecar']}")
    root = (home / "sidecars").resolve()
    for tree in removed:
        where = tree.meta.get("sidecar")
        if where and is_note_tree(tree) and Path(where).resolve().is_relative_to(root):
            Path(where).unlink(missing_ok=True)
            lines.append(f"sidecar deleted: {where}")
    return lines


def render(store: TreeStore, tree: Tree) -> str:
    """The sidecar's Markdown: the offers made at the note's latest point."""
    history = NoteHistory(store)
    point, offers = history.current_offers(tree)
    note = note_path_of(tree)
    lines = [
        f"# Offers for {code_span(Path(note).name)}",
        "",
        f"Note: {code_span(note)}",
        "",
        "_Written by ambient after each offer; edits here are overwritten. Take one into the note with "
        "`ambient accept ID` or the Accept button in the web UI._",
        "",
    ]
    if point is None or not offers:
        return "\n".join([*lines, "No offers yet: save the note to get some.", ""])
    lines += _point_lines(point, "".join(n.text for n in store.ancestry(point.id)))
    accepted = _accepted_ids(store, offers)
    number = 0
    for offer in offers:
        for node_id in offer.node_ids:
            number += 1
            lines += _node_lines(store.get_node(node_id), number, offer, node_id in accepted)
    return "\n".join(lines)


def _point_lines(point: Node, before: str) -> list[str]:
    line, col = line_col(before, len(before))
    where = f"line {line}, column {col}"
    tail = code_span("…" + before[-PREVIEW:])
    stamp = dt.datetime.fromtimestamp(point.created_at).strftime("%Y-%m-%d %H:%M:%S")
    return [
        f"Version {point.meta.get('version', '?')} saved {stamp}; continuing at {where}, after:",
        "",
        f"> {tail}",
        "",
    ]


def _node_lines(node: Node, number: int, offer: Offer, accepted: bool) -> list[str]:
    flags = []
    if accepted:
        flags.append("accepted")
    if str(offer.state) != "done":
        flags.append(str(offer.state))
    if node.status == "pruned":
        flags.append("pruned")
    suffix = f" ({', '.join(flags)})" if flags else ""
    head = f"## {number} · {code_span(node.id[:12])}{suffix}"
    return [head, "", *code_block(node.text), "", code_span(f"ambient accept {node.id[:12]}"), ""]


def _accepted_ids(store: TreeStore, offers: list[Offer]) -> set[str]:
    found: set[str] = set()
    for offer in offers:
        for action in store.actions(offer.id):
            if action["action"] == Action.ACCEPT and action["node_id"]:
                found.add(str(action["node_id"]))
    return found
