"""Loom compatibility: import and export trees of the original Python Loom (socketteer/loom).

A Loom file is JSON: ``{"root": node, "chapters": {...}, "tags": {...}, ...}``
where each node is ``{"id", "text", "children": [...], "parent_id", "meta",
"tags", ...}``. Everything ambient does not use itself is kept verbatim (in the
tree's and nodes' ``meta["loom"]``), so an export gives back what was imported.

Also exports JSONL, one node a line: ``id, parent_id, text, author, status``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ambient.errors import InvalidInput
from ambient.store import TreeStore
from ambient.tree import HUMAN, MODEL, Author, Node, Status, Tree, now

_NAMESPACE = uuid.UUID("6c6f6f6d-616d-6269-656e-740000000001")
_CORE_KEYS = {"id", "text", "children", "parent_id"}
_MAX_DEPTH = 10_000


MAX_LOOM_BYTES = 512 * 1024 * 1024


def read_regular_file(path: Path, what: str = "a Loom .json file") -> bytes:
    """The bytes of a regular file of a sane size (never a device, FIFO or endless stream).

    ``what`` names what the file should be, for the messages.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not hang the reader
    with os.fdopen(fd, "rb", buffering=0) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"{path} is not a regular file: give the path of {what}")
        if st.st_size > MAX_LOOM_BYTES:
            raise InvalidInput(f"{path} is larger than {MAX_LOOM_BYTES >> 20} MiB: is it {what}?")
        return fh.read(MAX_LOOM_BYTES + 1)


def read_loom_file(path: str | Path) -> dict[str, Any]:
    """Parse and check a Loom file; raise InvalidInput saying what is wrong."""
    path = Path(path)
    data = parse_json(read_file(path), path, "a Loom file")
    check_loom(data, path)
    loom: dict[str, Any] = data
    return loom


def read_file(path: Path, what: str = "a Loom .json file") -> bytes:
    """The bytes of ``path``, or InvalidInput saying in one line why it cannot be read."""
    try:
        return read_regular_file(path, what)
    except FileNotFoundError:
        raise InvalidInput(f"{path} does not exist: give the path of {what}") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a folder: give the path of {what}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path} ({exc.strerror}): check its permissions") from None


def parse_json(raw: bytes, path: Path, what: str) -> Any:
    """The JSON in ``raw``, or InvalidInput naming the line it breaks at."""
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text: is it {what}?") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}): is it {what}?"
        ) from None
    except RecursionError:
        raise InvalidInput(f"{path} nests JSON too deeply to read: is it {what}?") from None


def check_loom(data: Any, path: Path) -> None:
    """Raise InvalidInput unless ``data`` is a Loom tree (a 'root' node, ids unique, children lists)."""
    if not isinstance(data, dict) or not isinstance(data.get("root"), dict):
        raise InvalidInput(f"{path} is JSON but not a Loom tree (no 'root' object): export it from Loom")
    _check_node(data["root"], path)


def _check_node(root: dict[str, Any], path: Path) -> None:
    seen: set[str] = set()
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict) or not isinstance(node.get("text", ""), str):
            raise InvalidInput(f"{path}: a node is not an object with a text: not a Loom tree")
        node_id = str(node.get("id", ""))
        if not node_id:
            raise InvalidInput(f"{path}: a node has no id: not a Loom tree")
        if node_id in seen:
            raise InvalidInput(f"{path}: node id {node_id} appears twice: the file is damaged")
        if depth > _MAX_DEPTH:
            raise InvalidInput(f"{path}: the tree is deeper than {_MAX_DEPTH} levels")
        seen.add(node_id)
        children = node.get("children", [])
        if not isinstance(children, list):
            raise InvalidInput(f"{path}: node {node_id} has children that are not a list")
        stack.extend((c, depth + 1) for c in children)


def import_loom(store: TreeStore, path: str | Path) -> tuple[Tree, dict[str, int]]:
    """Import a Loom file. Importing it again merges: new nodes are added, changed texts edited.

    Returns the tree and counts ``{"nodes", "added", "edited", "unchanged"}``.
    """
    return import_loom_data(store, read_loom_file(path), Path(path))


def import_loom_data(store: TreeStore, data: dict[str, Any], path: Path) -> tuple[Tree, dict[str, int]]:
    """:func:`import_loom` of a file already read and checked (:func:`check_loom`)."""
    root = data["root"]
    root_id = str(root["id"])
    existing = _existing_tree(store, root_id)
    if existing is None:
        tree, nodes = _build(data, path)
        store.import_nodes(tree, nodes)
        return tree, {"nodes": len(nodes), "added": len(nodes), "edited": 0, "unchanged": 0}
    return existing, _merge(store, existing, data)


def _existing_tree(store: TreeStore, root_id: str) -> Tree | None:
    try:
        return store.get_tree(store.get_node(root_id).tree_id)
    except Exception:  # NotFound
        return None


def _build(data: dict[str, Any], path: Path) -> tuple[Tree, list[Node]]:
    root = data["root"]
    tree_id = str(uuid.uuid5(_NAMESPACE, str(root["id"])))
    t = now()
    loom_top = {k: v for k, v in data.items() if k != "root"}
    title = _title(data) or path.stem
    meta = {"loom": loom_top, "imported_from": path.name}
    tree = Tree(tree_id, str(root["id"]), title, "loom", t, t, meta, scope="import")
    nodes = [_node(tree_id, parent, raw, t) for parent, raw in _walk(root)]
    return tree, nodes


def _title(data: dict[str, Any]) -> str:
    root = data["root"]
    text = str(root.get("text", "")).strip()
    if text:
        return text.splitlines()[0][:80]
    for child in root.get("children", []):
        attrs = child.get("text_attributes")
        if isinstance(attrs, dict) and attrs.get("nav_preview"):
            return str(attrs["nav_preview"])[:80]
    return ""


def _walk(root: dict[str, Any]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """Nodes in pre-order (parents before children), iteratively (trees can be deep)."""
    stack: list[tuple[str | None, dict[str, Any]]] = [(None, root)]
    while stack:
        parent, node = stack.pop()
        yield parent, node
        for child in reversed(node.get("children", [])):
            stack.append((str(node["id"]), child))


def _node(tree_id: str, parent_id: str | None, raw: dict[str, Any], t: float) -> Node:
    loom = {k: v for k, v in raw.items() if k not in _CORE_KEYS}
    meta = raw.get("meta") if isinstance(raw.get("meta"), dict) else {}
    tags = [str(x) for x in raw.get("tags", []) if isinstance(x, str)]
    source = meta.get("source") if meta else None
    author = Author(MODEL, _model_name(raw)) if source == "AI" else Author(HUMAN, "")
    if "archived" in tags:
        status = Status.PRUNED
    elif source == "AI":
        status = Status.OFFERED
    else:
        status = Status.PICKED
    created = _timestamp(meta.get("creation_timestamp")) if meta else None
    return Node(
        id=str(raw["id"]),
        tree_id=tree_id,
        parent_id=parent_id,
        text=str(raw.get("text", "")),
        author=author,
        status=status,
        created_at=created or t,
        updated_at=t,
        bookmarked="bookmark" in tags,
        tags=tuple(tags),
        meta={"loom": loom, "source": source or "", "chapter_id": raw.get("chapter_id")},
    )


def _model_name(raw: dict[str, Any]) -> str:
    gen = raw.get("generation")
    if isinstance(gen, dict) and gen.get("model"):
        return str(gen["model"])
    return "loom"


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d-%H.%M.%S").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


def _merge(store: TreeStore, tree: Tree, data: dict[str, Any]) -> dict[str, int]:
    counts = {"nodes": 0, "added": 0, "edited": 0, "unchanged": 0}
    known = {n.id: n for n in store.tree_nodes(tree.id)}
    new_nodes: list[Node] = []
    t = now()
    for parent, raw in _walk(data["root"]):
        counts["nodes"] += 1
        node_id = str(raw["id"])
        old = known.get(node_id)
        if old is None:
            new_nodes.append(_node(tree.id, parent, raw, t))
            counts["added"] += 1
        elif old.text != str(raw.get("text", "")):
            store.edit(node_id, str(raw.get("text", "")))
            counts["edited"] += 1
        else:
            counts["unchanged"] += 1
    if new_nodes:
        store.import_nodes_into(tree.id, new_nodes)
    return counts


# --------------------------------------------------------------------- export
def export_loom(store: TreeStore, tree_id: str) -> dict[str, Any]:
    """The tree as a Loom file (a dict ready for ``json.dump``)."""
    tree = store.get_tree(tree_id)
    nodes = store.tree_nodes(tree_id)
    by_parent: dict[str | None, list[Node]] = {}
    for n in nodes:
        by_parent.setdefault(n.parent_id, []).append(n)
    dicts = {n.id: _loom_node(n) for n in nodes}
    for n in nodes:
        dicts[n.id]["children"] = [dicts[c.id] for c in by_parent.get(n.id, [])]
    top = dict(tree.meta.get("loom") or _default_top())
    top["root"] = dicts[tree.root_id]
    return top


def _loom_node(n: Node) -> dict[str, Any]:
    d: dict[str, Any] = dict(n.meta.get("loom") or {})
    d["id"] = n.id
    d["text"] = n.text
    if n.parent_id is not None:
        d["parent_id"] = n.parent_id
    tags = [t for t in n.tags if t != "bookmark" or n.bookmarked]
    if n.bookmarked and "bookmark" not in tags:
        tags.append("bookmark")
    if n.status == Status.PRUNED and "archived" not in tags:
        tags.append("archived")
    if tags or "tags" in d:
        d["tags"] = tags
    if "loom" not in n.meta:  # made in ambient: describe it the way Loom does
        d["meta"] = {
            "source": "AI" if n.author.is_model else "prompt",
            "creation_timestamp": _loom_time(n.created_at),
        }
        d["open"] = True
    return d


def _loom_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d-%H.%M.%S")


def _default_top() -> dict[str, Any]:
    return {
        "chapters": {},
        "canonical": [],
        "memories": {},
        "summaries": {},
        "model_responses": {},
        "tags": {
            "bookmark": {
                "name": "bookmark",
                "scope": "node",
                "hide": False,
                "show_only": False,
                "toggle_key": "b",
                "icon": "bookmark-black",
            },
            "archived": {
                "name": "archived",
                "scope": "node",
                "hide": True,
                "show_only": False,
                "toggle_key": "!",
                "icon": "archive-yellow",
            },
        },
    }


def export_jsonl(store: TreeStore, tree_id: str) -> Iterator[str]:
    """One JSON object a line: id, parent_id, text, author, status (plus tags, bookmarked)."""
    for n in store.tree_nodes(tree_id):
        yield json.dumps(
            {
                "id": n.id,
                "parent_id": n.parent_id,
                "text": n.text,
                "author": n.author.as_dict(),
                "status": str(n.status),
                "tags": list(n.tags),
                "bookmarked": n.bookmarked,
            },
            ensure_ascii=False,
        )
