"""Memory scopes: the rules (ambient/scopes.py), the store's and the index's migrations, search --scope.

The Discord end-to-end walls (a note never reaching a server's prompt) are in
tests/integrations/discord/test_walls.py.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ambient import scopes
from ambient.cli import main
from ambient.config import Config, load_config
from ambient.errors import ConfigError
from ambient.memory import MemoryIndex, open_memory
from ambient.memory import documents as documents_module
from ambient.memory import index as index_module
from ambient.scopes import PRIVATE, View, view_for, wall_of, where
from ambient.store import TreeStore
from ambient.store.schema import MIGRATIONS
from tests.test_memory import make_config


# ------------------------------------------------------------------ the rules
def test_private_places_share_one_wall_and_a_server_stands_alone() -> None:
    assert [wall_of(s) for s in ("notes", "speech", "ui", "cli", "import")] == [PRIVATE] * 5
    assert wall_of("discord:1") == "discord:1"
    assert view_for("notes", {}) == View("notes", (PRIVATE,))  # every private scope, nothing else
    assert view_for("discord:1", {}) == View("discord:1", ("discord:1",))  # its own server only


def test_sharing_opens_only_what_it_names() -> None:
    assert view_for("discord:1", {"discord:1": ["notes"]}) == View("discord:1", ("discord:1",), ("notes",))
    assert view_for("discord:1", {"discord:1": ["private"]}) == View("discord:1", ("discord:1", PRIVATE))
    # every private place sees that server (the opening is keyed by the wall), and no other server
    assert view_for("notes", {"private": ["discord:1"]}) == View("notes", (PRIVATE, "discord:1"))
    assert view_for("speech", {"notes": ["discord:1"]}) == View("speech", (PRIVATE,))  # notes' opening only


def test_the_filter_leaves_out_pruned_nodes_unless_asked() -> None:
    assert where(View("notes", (PRIVATE,))) == {
        "$and": [{"wall": {"$in": [PRIVATE]}}, {"status": {"$ne": "pruned"}}]
    }
    assert where(View("discord:1", ("discord:1",), ("notes",), include_pruned=True)) == {
        "$or": [{"wall": {"$in": ["discord:1"]}}, {"scope": {"$in": ["notes"]}}]
    }


def test_bad_sharing_settings_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "ambient.toml").write_text('[memory.share]\n"discord:1" = [3]\n')
    with pytest.raises(
        ConfigError, match=r'memory.share.discord:1 must be a list of scopes, e.g. discord:1 = \["notes"\]'
    ):
        load_config(env={"AMBIENT_HOME": str(tmp_path)})
    (tmp_path / "ambient.toml").write_text('[memory.share]\n"discord:1" = ["notes"]\n')
    config = load_config(env={"AMBIENT_HOME": str(tmp_path)})
    assert config.memory.share == {"discord:1": ("notes",)}
    assert scopes.describe_sharing(config.memory.share) == [
        "memory sharing is on: offers in discord:1 may retrieve from notes"
    ]


# ------------------------------------------------------------ store migration
def test_trees_made_before_scopes_get_their_places_scope(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0][1])  # the schema as the code before scopes made it
    db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    db.execute("INSERT INTO schema_migrations VALUES ('0001_initial', 0)")
    sources = ["note:/n/a.md", "speech:s1", "ui", "loom", "cli", "file:x.txt", "discord:42/7", "discord:43"]
    for i, source in enumerate(sources):
        db.execute("INSERT INTO trees VALUES (?, ?, '', ?, 0, 0, '{}')", (f"t{i}", f"r{i}", source))
    db.commit()
    db.close()
    with TreeStore(path) as store:
        got = {t.source: t.scope for t in store.list_trees()}
    assert got == {
        "note:/n/a.md": "notes",
        "speech:s1": "speech",
        "ui": "ui",
        "loom": "import",
        "cli": "cli",
        "file:x.txt": "cli",
        "discord:42/7": "discord:42",
        "discord:43": "discord:43",
    }


# ------------------------------------------------------------ index migration
@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "home")


def _seed(store: TreeStore) -> dict[str, str]:
    _, note = store.create_tree(
        "The lighthouse keeper kept a diary of storms.", source="note:/d.md", scope="notes"
    )
    _, chat = store.create_tree(
        "Raid night: bring potions and the map.", source="discord:5/6", scope="discord:5"
    )
    return {"note": note.id, "chat": chat.id}


def test_an_index_built_before_scopes_is_migrated_without_embedding_again(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_build = documents_module.DocBuilder.build

    def build_as_before(self: Any, node: Any) -> Any:
        doc = old_build(self, node)
        for key in ("scope", "wall"):
            doc.metadata.pop(key)
        return doc

    with TreeStore(config.db_path) as store:
        ids = _seed(store)
        with monkeypatch.context() as old_code:
            old_code.setattr(documents_module.DocBuilder, "build", build_as_before)
            old_code.setattr(index_module, "METADATA_VERSION", 1)
            before = open_memory(config)
            assert before.sync(store) == 2
            stored = before.collection.get(ids=list(ids.values()), include=["metadatas"])["metadatas"]
            assert all("scope" not in m for m in stored)  # as today's code leaves an index
            before.close()
        memory = open_memory(config)
        try:
            embedded: list[int] = []
            real_embed = memory.embedder.embed
            monkeypatch.setattr(
                memory.embedder, "embed", lambda texts: embedded.append(len(texts)) or real_embed(texts)
            )
            assert memory.sync(store) == 0 and embedded == []  # metadata rewritten, nothing embedded
            got = memory.collection.get(ids=[ids["note"], ids["chat"]], include=["metadatas"])["metadatas"]
            assert [(m["scope"], m["wall"]) for m in got] == [("notes", PRIVATE), ("discord:5", "discord:5")]
            found = memory.search("a diary about storms at sea", k=2, view=view_for("discord:5", {}))
            assert [f.node_id for f in found] == [ids["chat"]]
        finally:
            memory.close()


@pytest.fixture
def seeded(config: Config) -> Iterator[tuple[Config, dict[str, str]]]:
    with TreeStore(config.db_path) as store:
        ids = _seed(store)
        _, pruned = store.create_tree("A storm diary kept by a lighthouse keeper, set aside.", scope="notes")
        child = store.add_node(pruned.id, " More storms.")
        store.prune(child.id)
        ids["pruned"] = child.id
    index: MemoryIndex = open_memory(config)
    with TreeStore(config.db_path) as store:
        index.sync(store)
    index.close()
    yield config, ids


def _search(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    code = main(["search", "storms at sea, a keeper's diary", "-k", "5", *args, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    results: list[dict[str, Any]] = json.loads(out.out)
    return results


def test_search_with_scope_returns_what_an_offer_there_could_retrieve(
    seeded: tuple[Config, dict[str, str]], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, ids = seeded
    monkeypatch.setenv("AMBIENT_HOME", str(config.home))
    everything = {r["node_id"]: r["scope"] for r in _search(capsys)}
    assert everything[ids["note"]] == "notes" and everything[ids["chat"]] == "discord:5"
    in_notes = {r["node_id"] for r in _search(capsys, "--scope", "note:/d.md")}
    assert ids["note"] in in_notes and ids["chat"] not in in_notes and ids["pruned"] not in in_notes
    in_server = {r["node_id"] for r in _search(capsys, "--scope", "discord:5/99")}
    assert in_server == {ids["chat"]}
    assert main(["search", "storms", "--scope", "nowhere:at all"]) == 2
    assert "unknown place 'nowhere:at all': write it as trees name their source" in capsys.readouterr().err
