"""ambient backup / restore: a consistent copy taken while the daemon writes; a restore that loses nothing.

Real SQLite, real embedded chromadb, the real daemon and HTTP server (FakeSampler).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
from pathlib import Path

import pytest

from ambient.app import App
from ambient.cli import main
from ambient.config import Config, load_config
from ambient.keys import KEYS_FILE, KeyStore
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
    await asyncio.to_thread(app.close)
    # The rest blocks (a restore, a search): off the loop, which the strict loop watches to the end.
    await asyncio.to_thread(_restore_elsewhere, monkeypatch, capsys, copy, other, manifest["nodes"])


def _restore_elsewhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], copy: Path, other: Path, nodes: int
) -> None:
    assert not (copy / "token").exists()
    assert run(monkeypatch, other, "restore", str(copy), "--json") == 0
    restored = json.loads(capsys.readouterr().out)
    assert restored["replaced"] is None
    with TreeStore(other / "ambient.sqlite3") as store:
        assert store.integrity_check() == "ok" and store.node_count() == nodes
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


def test_client_keys_are_backed_up_as_hashes_and_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home, other, copy = tmp_path / "home", tmp_path / "other", tmp_path / "b"
    with TreeStore(home / "ambient.sqlite3") as store:
        store.create_tree("A tree to back up.")
    keys = KeyStore(home)
    loom, loom_secret = keys.add("loom")
    obsidian, obsidian_secret = keys.add("obsidian", scope="loom", retrieve=True)
    assert run(monkeypatch, home, "backup", str(copy), "--json") == 0
    assert json.loads(capsys.readouterr().out)["keys"] == 2
    backed_up = copy / KEYS_FILE
    assert stat.S_IMODE(backed_up.stat().st_mode) == 0o600
    assert loom_secret not in backed_up.read_text() and obsidian_secret not in backed_up.read_text()

    # A home with a key of its own: the backup's keys replace it; the old file is kept aside.
    with TreeStore(other / "ambient.sqlite3") as store:
        store.create_tree("Another home.")
    _, stale_secret = KeyStore(other).add("stale")
    assert run(monkeypatch, other, "restore", str(copy)) == 0
    assert "2 client keys" in capsys.readouterr().out
    restored = KeyStore(other)
    assert restored.verify(loom_secret) == loom and restored.verify(obsidian_secret) == obsidian
    assert restored.get("obsidian").scope == "loom" and restored.verify(stale_secret) is None
    assert stat.S_IMODE((other / KEYS_FILE).stat().st_mode) == 0o600
    kept = next(other.glob("replaced-*"))
    assert KeyStore(kept).get("stale").name == "stale"

    # A backup made before keys were backed up (no keys.json) leaves a home's keys as they are.
    backed_up.unlink()
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["keys"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert run(monkeypatch, other, "restore", str(copy)) == 0
    assert "0 client keys" in capsys.readouterr().out
    assert KeyStore(other).verify(loom_secret) == loom
    assert len(list(other.glob("replaced-*"))) == 2  # a second restore (the same second too) keeps its own


def test_a_damaged_keys_file_stops_a_backup_and_a_restore_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home, copy = tmp_path / "home", tmp_path / "b"
    with TreeStore(home / "ambient.sqlite3") as store:
        store.create_tree("Something.")
    (home / KEYS_FILE).write_text("{not json")
    assert run(monkeypatch, home, "backup", str(copy)) == 2
    assert "move it away and add the keys again" in capsys.readouterr().err and not copy.exists()
    (home / KEYS_FILE).unlink()
    KeyStore(home).add("loom")
    assert run(monkeypatch, home, "backup", str(copy)) == 0
    (copy / KEYS_FILE).write_text("{not json")
    assert run(monkeypatch, tmp_path / "other", "restore", str(copy)) == 2
    assert "move it away and add the keys again" in capsys.readouterr().err
    assert not (tmp_path / "other" / "ambient.sqlite3").exists()
