"""ambient backup / restore: a consistent copy taken while the daemon writes; a restore that loses nothing.

Real SQLite, real embedded chromadb, the real daemon and HTTP server (FakeSampler).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from ambient.app import App
from ambient.cli import main
from ambient.config import Config, load_config
from ambient.offers import Overrides
from ambient.server import serve
from ambient.sources import SourceEvent
from ambient.store import TreeStore
from tests.fakes import FakeSampler

pytestmark = pytest.mark.strict_loop

LIGHTHOUSE = "The lighthouse keeper wrote to his sister every winter."


def config_at(home: Path) -> Config:
    return load_config(env={"AMBIENT_HOME": str(home)}).replace(server__port=0, server__debounce_ms=0)


def run(monkeypatch: pytest.MonkeyPatch, home: Path, *argv: str) -> int:
    monkeypatch.setenv("AMBIENT_HOME", str(home))
    return main(list(argv))


async def test_a_backup_taken_while_the_daemon_writes_restores_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home, copy, other = tmp_path / "home", tmp_path / "backup", tmp_path / "other"
    config = config_at(home)
    app = App(config, sampler=FakeSampler(delay=0.001))
    async with serve(config, app) as server:
        daemon = server.daemon
        _, root = await daemon.run_blocking(app.store.create_tree, LIGHTHOUSE)
        await asyncio.to_thread(app.index_pending)

        async def keep_writing() -> int:
            offers = 0
            while not done.is_set():
                event = SourceEvent("test", f"k{offers}", root.id, overrides=Overrides(n=2, max_tokens=3))
                await daemon.offer_now(event)
                offers += 1
            return offers

        done = asyncio.Event()
        writer = asyncio.ensure_future(keep_writing())
        await asyncio.sleep(0.2)
        code = await asyncio.to_thread(run, monkeypatch, home, "backup", str(copy), "--json")
        done.set()
        offers = await writer
        assert code == 0
        manifest = json.loads(capsys.readouterr().out)
        assert offers >= 2 and manifest["memory"] == "embedded" and manifest["nodes"] >= 3
        refused = await asyncio.to_thread(run, monkeypatch, home, "restore", str(copy))
        assert refused == 2 and "ambient is running on" in capsys.readouterr().err  # never under a daemon
    app.close()
    assert not (copy / "token").exists()
    assert run(monkeypatch, other, "restore", str(copy), "--json") == 0
    restored = json.loads(capsys.readouterr().out)
    assert restored["replaced"] is None
    with TreeStore(other / "ambient.sqlite3") as store:
        assert store.integrity_check() == "ok" and store.node_count() == manifest["nodes"]
    assert run(monkeypatch, other, "search", "letters from a lighthouse", "-k", "100", "--json") == 0
    assert LIGHTHOUSE in [r["text"] for r in json.loads(capsys.readouterr().out)]  # the copied index answers


def test_a_restore_keeps_what_it_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for home, text in ((first, "From the first home."), (second, "Written in the second home.")):
        with TreeStore(home / "ambient.sqlite3") as store:
            store.create_tree(text)
    assert run(monkeypatch, first, "backup", str(tmp_path / "b")) == 0
    assert run(monkeypatch, second, "restore", str(tmp_path / "b")) == 0
    said = capsys.readouterr().out
    assert "what it replaced is kept in" in said
    kept = next(second.glob("replaced-*"))
    db = sqlite3.connect(kept / "ambient.sqlite3")
    assert db.execute("SELECT text FROM nodes").fetchall() == [("Written in the second home.",)]
    db.close()
    with TreeStore(second / "ambient.sqlite3") as store:
        assert [n.text for n in store.iter_nodes()] == ["From the first home."]


def test_bad_backup_and_restore_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    assert run(monkeypatch, home, "backup", str(tmp_path / "b")) == 2
    assert "nothing to back up" in capsys.readouterr().err
    with TreeStore(home / "ambient.sqlite3") as store:
        store.create_tree("Something.")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert run(monkeypatch, home, "backup", str(tmp_path / "full")) == 2
    assert "is not an empty folder" in capsys.readouterr().err
    assert run(monkeypatch, home, "restore", str(tmp_path / "full")) == 2
    assert "is not an ambient backup" in capsys.readouterr().err
