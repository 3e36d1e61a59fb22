"""A full disk and a read-only AMBIENT_HOME: clear errors naming the fix, no corruption, recovery.

AMBIENT_HOME is a small tmpfs (mounted here: the tests need root or CAP_SYS_ADMIN and are
skipped, saying so, where mounting is not allowed). The daemon keeps running throughout:
a write that does not fit is refused with a 503 that says what to do, the store still passes
``PRAGMA integrity_check`` and holds everything acknowledged before, and once space returns
(or the folder is writable again) the next write works without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ambient.offers import Overrides
from ambient.sources import SourceEvent
from ambient.store import TreeStore
from tests.fakes import FakeSampler
from tests.reliability.helpers import AMBIENT_CLI, ThreadedDaemon, child_env, make_config


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here ({done.stderr.strip()}): run as root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a filler file until the file system is full (down to the last 512 bytes)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return filler


def post_tree(rig: ThreadedDaemon, text: str) -> requests.Response:
    return requests.post(
        f"{rig.base}/api/trees", json={"text": text, "offer": False}, headers=rig.auth, timeout=30
    )


def test_a_full_disk_refuses_writes_clearly_and_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "home", "2m") as home:
        config = make_config(home)
        with ThreadedDaemon(config, FakeSampler()) as rig:
            kept = [post_tree(rig, f"Before the disk filled, {i}.").json()["root"]["id"] for i in range(5)]
            filler = fill(home)
            refused = 0
            for i in range(20):  # big enough to need new pages
                resp = post_tree(rig, f"While full {i}: " + uuid.uuid4().hex * 400)
                if resp.status_code == 201:
                    continue
                refused += 1
                assert resp.status_code == 503
                error = resp.json()["error"]
                assert "free some disk space" in error and "nothing was changed" in error
            assert refused > 0
            status = requests.get(f"{rig.base}/api/status", headers=rig.auth, timeout=30)
            assert status.status_code == 200  # reads still work, the daemon is up
            assert rig.blocking(rig.app.store.integrity_check) == "ok"
            filler.unlink()
            resp = post_tree(rig, "After space came back.")
            assert resp.status_code == 201
            for root_id in kept:
                assert rig.blocking(rig.app.store.get_node, root_id).text.startswith("Before the disk")
        with TreeStore(home / "ambient.sqlite3") as store:
            assert store.integrity_check() == "ok"


def test_a_full_disk_during_sampling_fails_the_offer_not_the_daemon(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "home", "2m") as home:
        config = make_config(home, sampling__max_tokens=150, sampling__n=8)
        with ThreadedDaemon(config, FakeSampler(delay=0.01)) as rig:
            root = post_tree(rig, "The tide").json()["root"]["id"]
            sub = rig.daemon.subscribe()

            async def fill_while_streaming() -> dict[str, Any]:
                await rig.daemon.submit(SourceEvent("test", "k", root, debounce=False))
                while json.loads(await sub.queue.get() or "{}").get("type") != "token":
                    pass
                await asyncio.to_thread(fill, home)  # the disk fills while tokens stream
                while True:
                    event = json.loads(await sub.queue.get() or "{}")
                    if event.get("type") in ("offer_failed", "offer_done"):
                        return event

            event = rig.call(fill_while_streaming, timeout=60)
            assert event["type"] == "offer_failed", event
            assert "free some disk space" in event["data"]["error"]
            (home / "filler").unlink()
            short = SourceEvent("test", "k", root, overrides=Overrides(max_tokens=3))
            again = rig.call(lambda: rig.daemon.offer_now(short))
            assert again.state == "done"
            offers = rig.blocking(rig.app.store.offers_at, root)
            assert [o.state for o in offers] == ["failed", "done"]  # not left "streaming"
            assert "disk was full" in (offers[0].error or "")
            assert rig.blocking(rig.app.store.integrity_check) == "ok"


def test_a_home_turned_read_only_is_refused_clearly_and_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "home", "8m") as home:
        config = make_config(home)
        with ThreadedDaemon(config, FakeSampler()) as rig:
            kept = post_tree(rig, "Written while writable.").json()["root"]["id"]
        remount(home, "ro")  # (a mount with open files cannot be remounted: the daemon is stopped)
        env = child_env(home, AMBIENT_MEMORY_ENABLED="false", AMBIENT_SERVER_PORT="0")
        try:
            done = subprocess.run(
                [*AMBIENT_CLI, "run", "--no-browser"], env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
            assert "writable" in done.stderr.strip().splitlines()[-1]
        finally:
            remount(home, "rw")
        with ThreadedDaemon(config, FakeSampler()) as rig:
            assert rig.blocking(rig.app.store.get_node, kept).text == "Written while writable."
            assert post_tree(rig, "Writable again.").status_code == 201
            assert rig.blocking(rig.app.store.integrity_check) == "ok"


def test_starting_on_a_read_only_home_is_one_clear_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "home", "1m") as home:
        remount(home, "ro")
        env = child_env(home, AMBIENT_MEMORY_ENABLED="false", AMBIENT_SERVER_PORT="0")
        for argv in (["run", "--no-browser"], ["trees"]):
            done = subprocess.run([*AMBIENT_CLI, *argv], env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 2, done.stderr
            last = done.stderr.strip().splitlines()[-1]
            assert last.startswith("ambient: ") and "writable" in last, done.stderr
            assert "Traceback" not in done.stderr
        assert os.listdir(home) == []


def test_a_full_disk_while_tuning_keeps_the_adapter_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tiny_model_path: Path
) -> None:
    """`ambient tune` (real trainer, tiny model) on a full AMBIENT_HOME: one line, nothing half written."""
    from ambient import adapters
    from ambient.cli import main
    from tests.tuning_data import fill_store, picked

    with tmpfs(tmp_path / "home", "16m") as home:
        for name, value in {
            "AMBIENT_HOME": str(home),
            "AMBIENT_MODEL_PATH": str(tiny_model_path),
            "AMBIENT_MEMORY_ENABLED": "false",
            "AMBIENT_TUNE_MIN_PAIRS": "12",
            "AMBIENT_TUNE_RANGE_PROMPTS": "0",
            "AMBIENT_TUNE_CONTEXT_TOKENS": "32",
        }.items():
            monkeypatch.setenv(name, value)
        with TreeStore(home / "ambient.sqlite3") as store:
            fill_store(store, picked()[:8])
        assert main(["tune"]) == 0, capsys.readouterr().err
        adapters.set_active(home, "personal-001")
        capsys.readouterr()
        weights = (adapters.folder(home) / "personal-001" / adapters.WEIGHTS).stat().st_size
        filler = fill(home)  # then room for the store to open, not for another adapter
        os.truncate(filler, os.stat(filler).st_size - weights // 2)
        assert main(["tune"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err, err
        assert err.startswith("ambient: the disk holding") and "is full" in err, err
        assert "'personal-002' was not written and personal-001 stays in use" in err, err
        assert adapters.names(home) == ["personal-001"] and adapters.active_name(home) == "personal-001"
        assert not list(adapters.folder(home).glob(".tmp-*"))
        filler.unlink()  # space again: the next tune writes its adapter
        assert main(["tune"]) == 0, capsys.readouterr().err
        assert adapters.names(home) == ["personal-001", "personal-002"]
