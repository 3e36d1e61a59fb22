"""The scope of a key's trees (CompletionsSource.scope_of) is the one its key was added with.

``ambient search --scope key:NAME`` shows what that key's prompts could retrieve: behind the private
wall for a key added with a bare ``--scope``, its own wall otherwise. Real SQLite, real embedded
chromadb, the CLI; and a real daemon whose home is not the environment's.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ambient import places
from ambient.app import App
from ambient.cli import main
from ambient.config import Config, load_config
from ambient.keys import KeyStore
from ambient.memory import open_memory
from ambient.server import serve
from ambient.store import TreeStore
from integrations.completions.source import CompletionsSource
from tests.fakes import FakeSampler

QUERY = "a keeper's diary of storms at sea"


def _config(home: Path) -> Config:
    return load_config(env={"AMBIENT_HOME": str(home)})


def _seed(config: Config) -> dict[str, str]:
    """A note, a tree of a key behind the private wall (open) and one of a walled key; indexed."""
    keys = KeyStore(config.home)
    keys.add("open", scope="loom")
    keys.add("walled")
    with TreeStore(config.db_path) as store:
        _, note = store.create_tree(
            "The lighthouse keeper kept a diary of storms.", source="note:/d.md", scope="notes"
        )
        _, opened = store.create_tree(
            "Storm log: the keeper's lamp went out at sea.", source="key:open", scope="loom"
        )
        _, walled = store.create_tree(
            "A diary of storms at sea, kept by the keeper's app.", source="key:walled", scope="key:walled"
        )
        index = open_memory(config)
        try:
            index.sync(store)
        finally:
            index.close()
    return {"note": note.id, "open": opened.id, "walled": walled.id}


def _search(capsys: pytest.CaptureFixture[str], scope: str) -> set[str]:
    code = main(["search", QUERY, "-k", "10", "--scope", scope, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    results: list[dict[str, Any]] = json.loads(out.out)
    return {r["node_id"] for r in results}


def test_search_scope_of_a_key_follows_the_scope_it_was_added_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path / "home")
    ids = _seed(config)
    monkeypatch.setenv("AMBIENT_HOME", str(config.home))
    assert CompletionsSource.scope_of("key:open") == "loom" and places.scope_of("key:open") == "loom"
    assert places.scope_of("key:walled") == "key:walled"
    assert places.scope_of("key:gone") == "key:gone"  # no such key (removed): its own wall, the narrowest
    assert CompletionsSource.scope_of("key:") is None and CompletionsSource.scope_of("note:/d.md") is None
    # A bare scope stands behind the private wall: it sees the notes and its own trees, never a walled key's.
    assert _search(capsys, "key:open") == {ids["note"], ids["open"]}
    assert _search(capsys, "key:walled") == {ids["walled"]}
    assert _search(capsys, "key:gone") == set()
    KeyStore(config.home).remove("open")  # its trees stay where they stand; the key says no more
    assert places.scope_of("key:open") == "key:open"


@pytest.mark.strict_loop
async def test_a_daemon_answers_from_its_own_home_s_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path / "daemon-home").replace(memory__enabled=False, server__port=0)
    await asyncio.to_thread(KeyStore(config.home).add, "open", scope="loom")
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path / "elsewhere"))  # a home without that key
    assert await asyncio.to_thread(places.scope_of, "key:open") == "key:open"
    app = App(config, sampler=FakeSampler())
    async with serve(config, app):
        assert await asyncio.to_thread(places.scope_of, "key:open") == "loom"
    assert await asyncio.to_thread(places.scope_of, "key:open") == "key:open"  # gone with its daemon
