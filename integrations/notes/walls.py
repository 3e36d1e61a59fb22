"""The walls of the notes place: which files it may read and write, and the lock it writes under.

* A note is read or accepted into only when its real path (every symlink
  resolved) lies inside a watched folder: a link in a watched folder to a file
  elsewhere is refused, for reading (skipped with one log line) and accepting
  alike, so nothing outside the folders enters a tree, the index or a prompt.
  The real file is then opened without following a link
  (:func:`integrations.notes.notes.read_note`).
* The daemon and ``ambient accept`` get the folders from the same
  configuration (:meth:`Walls.from_config`; the daemon's notes place from its
  options), so both refuse the same notes.
* :meth:`Walls.lock` serialises recording a note's versions and accepting into
  it, across threads and across processes (the daemon and the CLI): an
  ``flock`` on ``AMBIENT_HOME/locks/<hash of the note's real path>.lock``. The
  lock files live in the home, which both share, and never beside the note: a
  watched folder holds only the person's files (a lock file there would be
  seen by the watcher and synced with the notes), and the note itself cannot
  carry the lock because it is replaced by renames. Editors take no lock; the
  accept's checked swap (:func:`ambient.fsutil.write_atomic`) deals with them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from ambient import places
from ambient.config import Config
from ambient.errors import Conflict
from ambient.fsutil import locked
from ambient.home import private_dir
from integrations.notes.notes import within
from integrations.notes.options import NotesOptions

LOCK_DIR = "locks"

_threads: dict[str, threading.Lock] = {}
_threads_guard = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Walls:
    """The watched folders (real paths), where the lock files are, and the largest note read."""

    folders: tuple[Path, ...]
    locks: Path
    max_bytes: int = NotesOptions.max_bytes

    @classmethod
    def from_config(cls, config: Config) -> Walls:
        """The walls ``[sources.notes]`` sets (blocking: resolves the folders; missing ones hold nothing)."""
        options: NotesOptions = places.options(config, places.load("notes"))
        base = config_base(config)
        folders = [folder_path(raw, base) for raw in options.folders]
        real = tuple(Path(os.path.realpath(f)) for f in folders if f.is_dir())
        return cls(real, Path(config.home) / LOCK_DIR, options.max_bytes)

    @classmethod
    def of(cls, folders: Sequence[Path], home: Path, max_bytes: int = NotesOptions.max_bytes) -> Walls:
        return cls(tuple(Path(os.path.realpath(f)) for f in folders), Path(home) / LOCK_DIR, max_bytes)

    def inside(self, path: str | Path) -> Path | None:
        """The real path of ``path`` if it lies inside a watched folder, else None."""
        real = Path(os.path.realpath(path))
        return real if within(real, self.folders) else None

    def writable(self, path: str | Path) -> Path:
        """The real path of the note ``path``, which may be accepted into; Conflict if it is outside."""
        real = self.inside(path)
        if real is not None:
            return real
        if not self.folders:
            raise Conflict(
                f"{path} is not in a watched folder: no folder is watched ([sources.notes] folders is empty "
                "or its folders are missing); add the note's folder there to accept into it"
            )
        where = os.path.realpath(path)
        shown = f" (it links to {where})" if where != os.path.abspath(path) else ""
        raise Conflict(
            f"{path} is not in a watched folder{shown}: ambient accepts only into notes inside "
            "sources.notes.folders; nothing was written"
        )

    @contextlib.contextmanager
    def lock(self, real: Path) -> Iterator[None]:
        """Hold the note's lock (this process's threads, then the lock file shared with other processes)."""
        key = hashlib.sha256(os.fsencode(real)).hexdigest()[:32]
        with _threads_guard:
            in_process = _threads.setdefault(key, threading.Lock())
        with in_process:
            private_dir(self.locks)
            with locked(self.locks / f"{key}.lock"):
                yield


def config_base(config: Config) -> Path:
    """What relative folders are relative to: the configuration file's folder (else the working one)."""
    return config.file.parent if config.file is not None else Path.cwd()


def folder_path(raw: str, base: Path) -> Path:
    """A configured folder as an absolute path (``~`` expanded, relative to ``base``)."""
    folder = Path(raw).expanduser()
    return folder if folder.is_absolute() else base / folder
