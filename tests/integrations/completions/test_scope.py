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

import aiohttp
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
    home = config.home
    assert CompletionsSource.scope_of("key:open", home) == "loom"
    assert places.scope_of("key:open", home) == "loom"
    assert places.scope_of("key:walled", home) == "key:walled"
    assert places.scope_of("key:gone", home) == "key:gone"  # no such key (removed): its own wall
    assert CompletionsSource.scope_of("key:", home) is None
    assert CompletionsSource.scope_of("note:/d.md", home) is None
    # A bare scope stands behind the private wall: it sees the notes and its own trees, never a walled key's.
    assert _search(capsys, "key:open") == {ids["note"], ids["open"]}
    assert _search(capsys, "key:walled") == {ids["walled"]}
    assert _search(capsys, "key:gone") == set()
    KeyStore(config.home).remove("open")  # its trees stay where they stand; the key says no more
    assert places.scope_of("key:open", home) == "key:open"


def test_search_scope_reads_the_keys_of_the_home_its_config_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config`` naming another home: that home's keys say the scope, not the environment's."""
    config = _config(tmp_path / "home")
    ids = _seed(config)
    monkeypatch.delenv("AMBIENT_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # the default home: xdg/ambient
    KeyStore(tmp_path / "xdg" / "ambient").add("open")  # there, a key of the same name, walled
    toml = tmp_path / "other.toml"
    toml.write_text(f"home = {json.dumps(str(config.home))}\n")
    code = main(["--config", str(toml), "search", QUERY, "-k", "10", "--scope", "key:open", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert {r["node_id"] for r in json.loads(out.out)} == {ids["note"], ids["open"]}


@pytest.mark.strict_loop
async def test_a_daemon_answers_from_its_own_home_s_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/api/search?scope=key:NAME in a daemon whose home is not the environment's."""
    config = _config(tmp_path / "daemon-home").replace(server__port=0)
    ids = await asyncio.to_thread(_seed, config)
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path / "elsewhere"))  # a home without those keys
    app = App(config, sampler=FakeSampler())
    async with serve(config, app) as server:
        base = server.url.split("/#")[0]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.token}"}) as http:
            for scope, seen in (("key:open", {ids["note"], ids["open"]}), ("key:walled", {ids["walled"]})):
                query = {"q": QUERY, "k": "10", "scope": scope}
                async with http.get(f"{base}/api/search", params=query) as response:
                    assert response.status == 200, await response.text()
                    assert {r["node_id"] for r in (await response.json())["results"]} == seen
