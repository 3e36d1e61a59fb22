"""The real Loom fixture trees in ``../shared/fixtures/loom`` (text nobody here wrote), for tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "loom"


def node_texts(tree: Any) -> list[str]:
    """Every node's ``text`` in a parsed Loom file (or any part of one), depth first, root first."""
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                texts.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return texts


def read(name: str) -> Any:
    """A fixture file, parsed."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))
