"""loomsidian (cosmicoptima/loom, the Obsidian plugin): its ``data.json``, or one note's exported state.

The shapes, from the plugin's own code (common.ts and main.ts of cosmicoptima/loom):

* ``.obsidian/plugins/loom/data.json`` is ``{"settings": LoomSettings, "state": {note path: NoteState}}``
  (``save()`` writes ``saveData({settings, state})``);
* "export" in the Loom pane writes one ``NoteState`` (``JSON.stringify(state[file.path])``);
* ``NoteState`` is ``{current, hoisted, searchTerm, nodes: {id: Node}, generating}``; early versions
  kept ``nodes`` as a list of nodes with an ``id`` each;
* ``Node`` is ``{text, parentId, collapsed, unread, bookmarked, lastVisited?, searchResultState}``
  (``lastVisited`` in milliseconds, set when the person switches to the node).

Who wrote a node: loomsidian does not record it. Generated nodes are created
``unread`` (``newNode(completion, rootNode, true)``) and stay so until the
person visits them, so an unread node is model text; a root is the note's own
text. Any other node is kept as model text marked ``authorship: "unknown"``
(:func:`ambient.importers.common.unknown_author`). Some files carry an
``author`` (and ``value`` for the text), as Tapestry Loom's migration assistant
reads them (migration-assistant/src/loomsidian/mod.rs); an ``author`` other than
"genesis" or "N/A" is the model's name.

The chosen path is ``current`` and its ancestors. The model settings are kept
on the tree without the API key. loomsidian escapes ``<`` and ``[`` in
generated text for Obsidian (``\\<``, ``\\[``) and unescapes them before
sending a prompt; the import keeps the text as the model saw it, unescaped.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from ambient.errors import InvalidInput
from ambient.importers.common import (
    INFERRED,
    RECORDED,
    DraftNode,
    DraftTree,
    plural,
    unknown_author,
)
from ambient.tree import MODEL, Author

FORMAT = "loomsidian"
_NOT_MODELS = {"genesis", "N/A"}
_PRESET_KEYS = ("name", "provider", "model", "contextLength")  # never apiKey, url or organization


def looks_like(data: Any) -> bool:
    """A data.json (``state`` of notes) or one note's exported state (``nodes`` and ``current``)."""
    if not isinstance(data, dict):
        return False
    if isinstance(data.get("state"), dict):
        return True
    return isinstance(data.get("nodes"), dict | list) and "current" in data and "roots" not in data


def parse(data: Any, path: Path) -> tuple[list[DraftTree], list[str]]:
    """The trees of a loomsidian file, and what it had that is not kept."""
    if not looks_like(data):
        raise InvalidInput(
            f"{path} is JSON but not a loomsidian file (no 'state' of notes, nor 'nodes' and 'current'): "
            "give .obsidian/plugins/loom/data.json or a note exported from the Loom pane"
        )
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    state = data.get("state")
    notes = list(state.items()) if isinstance(state, dict) else [(path.stem, data)]
    trees: list[DraftTree] = []
    not_kept: list[str] = []
    keys: set[str] = set()
    for note, state in notes:
        what = f"note {note!r} in {path.name}"
        if not isinstance(state, dict):
            raise InvalidInput(f"{what} is not an object: the file is damaged")
        nodes = _nodes(state, what)
        if not nodes:
            not_kept.append(f"note {note!r} (it has no nodes)")
            continue
        tree = _tree(str(note), state, nodes, settings, path)
        if tree.key in keys:  # a note imported into another one inside loomsidian keeps its ids
            tree.key = f"{tree.key}:{note}"
        keys.add(tree.key)
        trees.append(tree)
    if not trees:
        raise InvalidInput(f"{path} has no notes with nodes: there is nothing to import")
    return trees, not_kept


def _nodes(state: dict[str, Any], what: str) -> list[tuple[str, dict[str, Any]]]:
    raw = state.get("nodes")
    if isinstance(raw, dict):
        items = [(str(k), v) for k, v in raw.items()]
    elif isinstance(raw, list):
        items = [(str(v.get("id", "")) if isinstance(v, dict) else "", v) for v in raw]
    else:
        raise InvalidInput(f"{what} has no 'nodes' object: the file is damaged")
    for node_id, node in items:
        if not node_id or not isinstance(node, dict):
            raise InvalidInput(f"{what}: a node is not an object with an id: the file is damaged")
        text = node.get("text", node.get("value", ""))
        if not isinstance(text, str) and text is not None:
            raise InvalidInput(f"{what}: node {node_id} has a text that is not a string")
        parent = node.get("parentId")
        if parent is not None and not isinstance(parent, str):
            raise InvalidInput(f"{what}: node {node_id} has a parentId that is not a string")
    return items


def _tree(
    note: str,
    state: dict[str, Any],
    items: list[tuple[str, dict[str, Any]]],
    settings: dict[str, Any],
    path: Path,
) -> DraftTree:
    parents = {node_id: node.get("parentId") or None for node_id, node in items}
    current = state.get("current") if isinstance(state.get("current"), str) else None
    chosen: set[str] = set()
    walk = current if current in parents else None
    while walk is not None and walk not in chosen:  # a cycle is reported by check_parents
        chosen.add(walk)
        walk = parents.get(walk)
    roots = sorted(node_id for node_id, parent in parents.items() if parent is None)
    meta: dict[str, Any] = {
        "imported_from": path.name,
        "loomsidian": {
            "note": note,
            "current": current,
            **{k: v for k, v in state.items() if k not in ("nodes", "current")},
        },
    }
    preset = _preset(settings)
    if preset:
        meta["loomsidian"]["model_preset"] = preset
    return DraftTree(
        key=f"{FORMAT}:{roots[0] if roots else note}",
        title=PurePosixPath(note).stem or note,
        source=FORMAT,
        nodes=[_node(node_id, node, node_id in chosen) for node_id, node in items],
        meta=meta,
    )


def _node(node_id: str, raw: dict[str, Any], chosen: bool) -> DraftNode:
    text = unescape(raw.get("text", raw.get("value", "")) or "")
    parent = raw.get("parentId") or None
    author, authorship, reason = _author(raw, parent is None)
    visited = raw.get("lastVisited")
    meta: dict[str, Any] = {
        "loomsidian": {k: v for k, v in raw.items() if k not in ("text", "parentId")},
        "authorship_reason": reason,
    }
    if isinstance(visited, int | float) and not isinstance(visited, bool):
        meta["last_visited"] = visited / 1000.0
    return DraftNode(
        source_id=node_id,
        parent=parent,
        text=text,
        author=author,
        authorship=authorship,
        chosen=chosen,
        bookmarked=raw.get("bookmarked") is True,
        meta=meta,
    )


def unescape(text: str) -> str:
    """The text as loomsidian sends it to a model (main.ts ``generate``: ``\\<`` to ``<``, ``\\[`` to ``[``).

    Obsidian would read ``<`` and ``[`` as markup, so generated text is saved escaped.
    """
    return text.replace("\\<", "<").replace("\\[", "[")


def _author(raw: dict[str, Any], is_root: bool) -> tuple[Author, str, str]:
    named = raw.get("author")
    if isinstance(named, str) and named and named not in _NOT_MODELS:
        return Author(MODEL, named), RECORDED, "the node's author field names the model"
    if raw.get("unread") is True:
        return Author(MODEL, ""), INFERRED, "loomsidian creates generated nodes unread"
    return unknown_author(is_root)


def _preset(settings: dict[str, Any]) -> dict[str, Any]:
    """The model preset in use when the file was saved (its name, provider and model; never the key)."""
    presets = settings.get("modelPresets")
    index = settings.get("modelPreset")
    if isinstance(presets, list) and isinstance(index, int) and 0 <= index < len(presets):
        preset = presets[index]
        if isinstance(preset, dict):
            return {k: preset[k] for k in _PRESET_KEYS if k in preset}
    if isinstance(settings.get("model"), str):  # before presets (1.19): provider and model at the top
        return {k: settings[k] for k in ("provider", "model") if isinstance(settings.get(k), str)}
    return {}


def describe(trees: list[DraftTree]) -> list[str]:
    """What the import could not keep as the file had it: authorship nobody recorded."""
    unknown = sum(1 for t in trees for n in t.nodes if n.authorship == "unknown")
    if not unknown:
        return []
    return [
        f"who wrote {plural(unknown, 'node')} (loomsidian does not record it; kept as model text, "
        "meta.authorship = unknown)"
    ]
