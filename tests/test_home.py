"""AMBIENT_HOME is its owner's only: made private, and an existing loose home tightened at start-up."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ambient.config import Config, load_config
from ambient.home import private_dir, private_file, tighten
from ambient.memory.location import Location
from ambient.store import TreeStore
from tests.test_daemon_commands import RUN, _env

REPO = Path(__file__).resolve().parent.parent


def mode(path: Path) -> int:
    return os.lstat(path).st_mode & 0o777


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    """The usual umask (022), under which a plain mkdir or open makes what others can read."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def loose_home(tmp_path: Path) -> tuple[Config, dict[str, Path]]:
    """A home as an older version (or a careless copy) leaves it: everything readable by others."""
    home = tmp_path / "home"
    files = {
        "store": home / "ambient.sqlite3",
        "wal": home / "ambient.sqlite3-wal",
        "token": home / "token",
        "runtime": home / "daemon.json",
        "index": home / "memory" / "chroma.sqlite3",
        "segment": home / "memory" / "0d1e" / "data_level0.bin",
        "sidecar": home / "sidecars" / "notes-1234" / "a.md.offers.md",
        "lock": home / "locks" / "abc.lock",
        "model": home / "models" / "gemma" / "config.json",
        "note": home / "notes" / "welcome.md",
        "elsewhere": tmp_path / "elsewhere.md",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        path.chmod(0o644)
    (home / "sidecars" / "link.md").symlink_to(files["elsewhere"])
    for folder in (home, *{p.parent for p in files.values()}):
        folder.chmod(0o755)
    return load_config(env={"AMBIENT_HOME": str(home)}), files


def test_a_loose_home_is_tightened_with_a_line_saying_so(tmp_path: Path) -> None:
    config, files = loose_home(tmp_path)
    home = config.home
    line = tighten(config)
    assert line is not None and str(home) in line and "14 file(s) and folder(s)" in line
    assert mode(home) == 0o700
    for name in ("store", "wal", "token", "runtime", "index", "segment", "sidecar", "lock"):
        assert mode(files[name]) == 0o600, name
    for folder in (home / "memory", home / "memory" / "0d1e", home / "sidecars", home / "locks"):
        assert mode(folder) == 0o700, folder
    # not ambient's to close: the models, the person's notes, and what a link points to
    assert [mode(files[n]) for n in ("model", "note", "elsewhere")] == [0o644] * 3
    assert mode(home / "models") == mode(home / "notes") == 0o755
    assert tighten(config) is None  # nothing left to say


def test_a_linked_home_is_tightened_where_it_really_is(tmp_path: Path) -> None:
    real = tmp_path / "real-home"
    real.mkdir(mode=0o755)
    (tmp_path / "home").symlink_to(real)
    assert tighten(load_config(env={"AMBIENT_HOME": str(tmp_path / "home")})) is not None
    assert mode(real) == 0o700


def test_a_new_store_index_and_private_paths_are_made_private(tmp_path: Path) -> None:
    home = tmp_path / "new-home"
    with TreeStore(home / "ambient.sqlite3") as store:
        store.create_tree("hello", title="t")
        for suffix in ("", "-wal", "-shm"):
            assert mode(home / f"ambient.sqlite3{suffix}") == 0o600, suffix
    assert mode(home) == 0o700
    config = load_config(env={"AMBIENT_HOME": str(tmp_path / "home-two")})
    Location.from_config(config).connect()
    assert mode(config.memory_dir) == mode(config.home) == 0o700
    deep = private_dir(tmp_path / "a" / "b" / "c")
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", deep)] == [0o700] * 3
    made = private_file(deep / "f")
    assert mode(made) == 0o600 and private_file(made) == made  # an existing file is left as it is


def test_ambient_run_tightens_an_existing_home_before_serving(tmp_path: Path) -> None:
    config, files = loose_home(tmp_path)
    files["store"].unlink()
    files["wal"].unlink()
    files["token"].unlink()  # a real daemon makes its own
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN], env=_env(config.home), cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.stdout.readline().startswith("ambient is running: ")
        assert mode(config.home) == 0o700 and mode(files["sidecar"]) == 0o600
        assert mode(files["index"]) == 0o600 and mode(config.home / "token") == 0o600
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    err = proc.stderr.read()
    said = f"ambient: tightened the permissions of 11 file(s) and folder(s) in AMBIENT_HOME ({config.home})"
    assert said in err
    assert err.index("tightened") < err.index("starting")
