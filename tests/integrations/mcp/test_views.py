"""The MCP place's view rules on a real store: what a key sees, and provenance cut to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ambient.config import MemorySection
from ambient.errors import NotFound
from ambient.keys import Key
from ambient.scopes import view_for, where
from ambient.store import TreeStore
from integrations.mcp import views

CHAT = Key(name="chat", scope="key:chat")


def test_a_key_sees_its_own_wall_and_only_what_the_person_opened_to_it() -> None:
    alone = views.view_of(CHAT, MemorySection())
    assert views.sees(alone, "key:chat")
    assert not any(views.sees(alone, s) for s in ("notes", "ui", "speech", "key:other", "discord:1", ""))
    opened = views.view_of(CHAT, MemorySection(share={"key:chat": ("notes",)}))
    assert views.sees(opened, "notes") and not views.sees(opened, "ui")  # one private scope, not the wall
    # the same rule as the memory index's filter
    assert where(opened) == where(view_for("key:chat", {"key:chat": ("notes",)}))
    private = views.view_of(Key(name="loom", scope="loom"), MemorySection())  # a bare scope: by choice
    assert views.sees(private, "notes") and not views.sees(private, "key:chat")


def test_provenance_keeps_only_fragments_from_places_the_key_sees() -> None:
    recorded = {
        "memory": "used",
        "retrieved": [
            {"node_id": "a", "scope": "key:chat"},
            {"node_id": "b", "scope": "notes"},
            {"node_id": "c", "scope": "discord:1"},
        ],
        "cut": {"source_chars": 0, "fragments": [{"node_id": "d", "scope": "notes"}]},
    }
    view = views.view_of(CHAT, MemorySection())
    shown = views.provenance(recorded, view)
    assert shown is not None
    assert [r["node_id"] for r in shown["retrieved"]] == ["a"] and shown["cut"]["fragments"] == []
    assert len(recorded["retrieved"]) == 3  # the stored record is untouched
    opened = views.view_of(CHAT, MemorySection(share={"key:chat": ("notes",)}))
    assert [r["node_id"] for r in views.provenance(recorded, opened)["retrieved"]] == ["a", "b"]  # type: ignore[index]


def test_nodes_outside_the_view_are_answered_as_missing_and_a_text_asked_again_reuses_its_tree(
    tmp_path: Path,
) -> None:
    with TreeStore(tmp_path / "store.sqlite3") as store:
        _, note = store.create_tree("my diary", source="note:/d.md", scope="notes")
        tree, root = views.tree_for(store, CHAT, "The harbour at dawn")
        assert (tree.source, tree.scope, root.author.name) == ("key:chat", "key:chat", "key:chat")
        assert views.tree_for(store, CHAT, "The harbour at dawn")[0].id == tree.id
        assert views.tree_for(store, CHAT, "The harbour at dusk")[0].id != tree.id
        view = views.view_of(CHAT, MemorySection())
        assert views.node_view(store, view, root.id)["tree"]["id"] == tree.id
        with pytest.raises(NotFound) as hidden:
            views.node_view(store, view, note.id)
        with pytest.raises(NotFound) as missing:
            views.node_view(store, view, "f" * 32)
        assert str(hidden.value).replace(note.id, "f" * 32) == str(missing.value)
        listed = views.visible_trees(store, view, 10)
        assert listed["total"] == 2 and {t["source"] for t in listed["trees"]} == {"key:chat"}
        assert len(views.visible_trees(store, view, 1)["trees"]) == 1
