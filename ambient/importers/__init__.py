"""Importing trees made by other looms: Loom (socketteer/loom), loomsidian and Tapestry Loom.

:func:`import_file` reads a file once, finds its format (:func:`detect`, or the
one given), checks all of it, and only then writes: a file is imported whole
or not at all. Each format keeps who wrote each node (``Node.author`` and
``meta["authorship"]``: recorded, inferred or unknown), the path the person had
chosen (those nodes are ``picked``) and the model where the file names one.
Loom's own import and export stay in :mod:`ambient.loom`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ambient import loom
from ambient.errors import InvalidInput
from ambient.importers import loomsidian, tapestry
from ambient.importers.common import Imported, check_parents, single_root, write_trees
from ambient.store import TreeStore

FORMATS = ("loom", "loomsidian", "tapestry")
WHAT = "a Loom, loomsidian or Tapestry Loom file"
_LEGACY_TAPESTRY = (b"TapestryLoomWeave",)  # the old Obsidian plugin kept its weave in a note's front matter


def import_file(store: TreeStore, path: str | Path, fmt: str | None = None) -> Imported:
    """Import the trees of ``path`` (``fmt``: one of :data:`FORMATS`, or None to detect it)."""
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInput(f"--format {fmt!r} is not known: use one of {', '.join(FORMATS)}")
    raw = loom.read_file(path, WHAT)
    version = tapestry.binary_version(raw)
    if version is not None:
        raise tapestry.binary_refusal(path, version)
    head = raw[: 1 << 16]
    if head.lstrip().startswith(b"---") and any(key in head for key in _LEGACY_TAPESTRY):
        raise InvalidInput(
            f"{path} is a note of the old Tapestry Loom Obsidian plugin: convert it with Tapestry Loom's "
            "migration assistant (--output-debug-json) and import the .json"
        )
    data = loom.parse_json(raw, path, WHAT)
    fmt = fmt or detect(data, path)
    if fmt == "loom":
        loom.check_loom(data, path)
        tree, counts = loom.import_loom_data(store, data, path)
        return Imported("loom", [(tree, counts)])
    module = loomsidian if fmt == "loomsidian" else tapestry
    drafts, not_kept = module.parse(data, path)
    ordered = []
    for draft in drafts:
        nodes = check_parents(f"{draft.title!r} in {path.name}", draft.nodes)
        ordered.append((draft, single_root(draft, nodes)))
    not_kept += loomsidian.describe(drafts) if fmt == "loomsidian" else tapestry.describe_unknown(drafts)
    return Imported(fmt, write_trees(store, ordered), not_kept)


def detect(data: Any, path: Path) -> str:
    """The format of parsed JSON, or InvalidInput saying what it is not."""
    if isinstance(data, dict) and isinstance(data.get("root"), dict):
        return "loom"
    if tapestry.looks_like(data):
        return "tapestry"
    if loomsidian.looks_like(data):
        return "loomsidian"
    raise InvalidInput(
        f"{path} is JSON but not a Loom tree (no 'root' object), nor a loomsidian file (no 'state' or "
        "'nodes' and 'current'), nor a Tapestry Loom weave (no 'nodes' and 'roots'): "
        f"export it from one of those, or name it with --format {'|'.join(FORMATS)}"
    )
