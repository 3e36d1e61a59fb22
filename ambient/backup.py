"""Backing up and restoring a home: the store (consistent, while the daemon runs) and the memory index.

A backup is a folder::

    ambient.sqlite3      the store, copied with SQLite's online backup (a consistent snapshot
                         even while the daemon writes)
    memory/              the embedded index: its own SQLite file copied the same way, the vector
                         segments as files (the index is derived: if it does not open after a
                         restore, `ambient reindex` rebuilds it from the store)
    ambient.toml         the settings, if there are any
    keys.json            the client keys, if there are any: their hashes only, as the home keeps
                         them (mode 0600), so apps keep working after a restore
    manifest.json        what is inside: version, time, counts

The token is never copied (a restored home makes a new one). A restore refuses a
home whose daemon is running, and keeps what it replaces in
``AMBIENT_HOME/replaced-<time>/``: nothing is lost. A backup without keys (made
before they were backed up) leaves the home's keys as they are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from ambient import __version__
from ambient.config import CONFIG_FILENAME, Config
from ambient.errors import AmbientError, Conflict, InvalidInput, NotFound
from ambient.fsutil import write_atomic
from ambient.keys import KEYS_FILE, KeyStore
from ambient.store import TreeStore

MANIFEST = "manifest.json"
STORE_FILE = "ambient.sqlite3"
MEMORY_DIR = "memory"
FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Manifest:
    format: int
    version: str
    made_at: str
    trees: int
    nodes: int
    memory: str  # "embedded" (copied), "server" (not copied: it lives on the Chroma server), "off"
    keys: int = 0  # client keys copied (their hashes); 0 in backups made before keys were copied

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        try:
            raw = json.loads((folder / MANIFEST).read_text())
            return cls(**raw)
        except FileNotFoundError:
            raise NotFound(
                f"{folder} is not an ambient backup (no {MANIFEST}): give the folder `ambient backup` made"
            ) from None
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidInput(f"{folder / MANIFEST} cannot be read ({exc}): the backup is damaged") from None


def backup(config: Config, target: Path) -> Manifest:
    """Blocking: write a backup of ``config``'s home into the new (or empty) folder ``target``."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise Conflict(f"{target} exists and is not an empty folder: give a new folder for the backup")
    if not config.db_path.exists():
        raise NotFound(f"there is nothing to back up in {config.home}: no store yet")
    KeyStore(config.home).list()  # a damaged keys file says how to recover before anything is written
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    _copy_sqlite(config.db_path, target / STORE_FILE)
    memory = "off" if not config.memory.enabled else "server" if config.memory.url else "embedded"
    if memory == "embedded" and config.memory_dir.is_dir():
        _copy_index(config.memory_dir, target / MEMORY_DIR)
    if config.file is not None and config.file.exists():
        shutil.copy2(config.file, target / CONFIG_FILENAME)
    keys = _copy_keys(config.home, target)
    with TreeStore(target / STORE_FILE) as store:
        if store.integrity_check() != "ok":
            raise AmbientError(f"the copy in {target} failed SQLite's integrity check: try again")
        trees, nodes = len(store.list_trees()), store.node_count()
    made = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    manifest = Manifest(FORMAT, __version__, made, trees, nodes, memory, keys)
    write_atomic(target / MANIFEST, json.dumps(dataclasses.asdict(manifest), indent=2) + "\n", mode=0o600)
    return manifest


def restore(config: Config, source: Path, daemon_running: bool) -> tuple[Manifest, Path | None]:
    """Blocking: put the backup in ``source`` in place of ``config``'s store and index.

    Returns the manifest and where the replaced files were kept (None: there were none).
    """
    if daemon_running:
        raise Conflict(
            f"ambient is running on {config.home}: stop it first (Ctrl-C, or `ambient status` to find it), "
            "then restore"
        )
    manifest = Manifest.read(source)
    if manifest.format != FORMAT:
        raise InvalidInput(f"{source} was made by a newer ambient (format {manifest.format}): upgrade first")
    with TreeStore(source / STORE_FILE) as store:
        if store.integrity_check() != "ok":
            raise AmbientError(f"the store in {source} failed SQLite's integrity check: not restored")
    keys = (source / KEYS_FILE).exists()
    if keys:
        KeyStore(source).list()  # a damaged keys file is refused before anything is replaced
    kept = _set_aside(config, keys=keys)
    config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    _copy_sqlite(source / STORE_FILE, config.db_path)
    if (source / MEMORY_DIR).is_dir() and not config.memory.url:
        shutil.copytree(source / MEMORY_DIR, config.memory_dir)
        (config.memory_dir / "ambient-state.json").unlink(missing_ok=True)  # next sync compares everything
    if keys:
        _copy_keys(source, config.home)
    return manifest, kept


def _set_aside(config: Config, *, keys: bool) -> Path | None:
    """Move the current store (with its journal files), embedded index and (``keys``) keys aside, kept."""
    present = [p for p in _store_files(config.db_path) if p.exists()]
    if config.memory_dir.is_dir() and not config.memory.url:
        present.append(config.memory_dir)
    if keys and (config.home / KEYS_FILE).exists():
        present.append(config.home / KEYS_FILE)
    if not present:
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    kept = config.home / f"replaced-{stamp}"
    for again in itertools.count(2):  # a second restore within the same second keeps its own
        try:
            kept.mkdir(mode=0o700)
            break
        except FileExistsError:
            kept = config.home / f"replaced-{stamp}-{again}"
    for path in present:
        path.rename(kept / path.name)
    return kept


def _copy_keys(home: Path, target: Path) -> int:
    """The client keys of ``home`` (hashes only) into ``target``, mode 0600; how many there are.

    The keys file is always replaced whole (written atomically), so the file read is consistent.
    """
    source = home / KEYS_FILE
    try:
        body = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    write_atomic(target / KEYS_FILE, body, mode=0o600)
    return len(KeyStore(target).list())


def _store_files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API), mode 0600."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch(mode=0o600)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    except sqlite3.Error as exc:
        raise AmbientError(f"cannot copy {source} ({exc}): check the disk space and try again") from None
    finally:
        dst.close()
        src.close()


def _copy_index(folder: Path, target: Path) -> None:
    """The embedded index: its SQLite files through the backup API, the rest as files."""

    def copy(src: str, dst: str) -> Any:
        if src.endswith(".sqlite3"):
            _copy_sqlite(Path(src), Path(dst))
            return dst
        if src.endswith((".sqlite3-wal", ".sqlite3-shm")):
            return dst  # the backup above already holds what they held
        try:
            return shutil.copy2(src, dst)
        except FileNotFoundError:  # a file the running daemon replaced meanwhile (its state file)
            return dst

    # The daemon writes its state file through a temporary file renamed over it: never copy those.
    shutil.copytree(folder, target, copy_function=copy, ignore=shutil.ignore_patterns(".*.tmp"))
