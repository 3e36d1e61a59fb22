"""Who may read AMBIENT_HOME: its owner only.

The home holds what a person wrote and what was offered to them (the tree
store, the memory index, the notes' sidecars) and the daemon's token, so it is
kept at mode 0700 and those files at 0600 (folders among them 0700):

* :func:`private_dir` and :func:`private_file` create them that way (the store,
  the index folder and the sidecars call them when they first make something);
* :func:`tighten` is run once at daemon start-up: a home made by an older
  version, or loosened since, is closed again, and the returned line says what
  changed so the person knows.

Only ambient's own files are touched: not the models, and never a notes folder
that happens to live under the home (``ambient init`` makes one there).
Symlinks are never followed while tightening.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ambient.config import Config

_LOGGER = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
OPEN_TO_OTHERS = 0o077  # group and others' bits
# ambient's own files and folders in the home, besides the store's and the index's
OWN_FILES = ("token", "daemon.json", "keys.json")
OWN_DIRS = ("sidecars", "locks")
STORE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as 0700 folders (existing ones are left as they are)."""
    path = Path(path)
    missing: list[Path] = []
    for folder in (path, *path.parents):  # from the deepest up to the first that exists
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:  # made meanwhile by another thread or process
            continue
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 unless it exists (so whatever opens it next finds it private)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return path
    os.close(fd)
    return path


def tighten(config: Config) -> str | None:
    """Close the home and ambient's files in it to others (blocking); a line saying what changed, or None."""
    home = Path(config.home)
    if not home.is_dir():
        return None
    changed = [path for path in _own_paths(config) if _close(path)]
    if not changed:
        return None
    line = (
        f"tightened the permissions of {len(changed)} file(s) and folder(s) in AMBIENT_HOME ({home}) that "
        f"others could read: the home is now {DIR_MODE:o} and ambient's files {FILE_MODE:o}"
    )
    _LOGGER.info("%s (%s)", line, ", ".join(str(p) for p in changed[:5]))
    return line


def _own_paths(config: Config) -> Iterator[Path]:
    home = Path(config.home)
    yield Path(os.path.realpath(home))  # the home itself may be a link to the real folder
    for suffix in STORE_SUFFIXES:
        yield config.db_path.with_name(config.db_path.name + suffix)
    for name in OWN_FILES:
        yield home / name
    for folder in (config.memory_dir, *(home / d for d in OWN_DIRS)):
        yield from _tree(folder)


def _tree(folder: Path) -> Iterator[Path]:
    """``folder`` and everything under it (symlinked folders are not entered)."""
    if not folder.is_dir() or folder.is_symlink():
        return
    yield folder
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            yield Path(root) / name


def _close(path: Path) -> bool:
    """Remove group and others' bits from a file or folder (never through a symlink); True if it changed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode) or not st.st_mode & OPEN_TO_OTHERS:
        return False
    try:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~OPEN_TO_OTHERS)
    except OSError as exc:
        _LOGGER.warning("could not make %s private (%s): chmod go-rwx it yourself", path, exc.strerror)
        return False
    return True
