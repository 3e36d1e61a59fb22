"""The SQLite connection under a :class:`~ambient.store.TreeStore`.

WAL mode, foreign keys on, ``synchronous=FULL`` (an acknowledged write survives
a crash). One connection is shared behind a re-entrant lock, so the store can be
used from worker threads; every write goes through :meth:`StoreConnection._tx`,
which turns a failing disk into :class:`StoreError`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from ambient.errors import AmbientError
from ambient.home import private_dir, private_file
from ambient.store.schema import migrate
from ambient.tree import Node


class StoreError(AmbientError):
    """The database cannot be opened or written (disk full, read-only): the service is unavailable."""

    http_status = 503


class StoreConnection:
    """Opening, migrating and closing the database; transactions, reads and change listeners."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._listeners: list[Callable[[str, Node], None]] = []
        try:
            # 0600 before SQLite opens it (SQLite gives the -wal and -shm files the same mode)
            private_file(private_dir(self.path.parent) / self.path.name)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
            migrate(self._db, self._tx)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot open the tree store at {self.path} ({exc}): check that AMBIENT_HOME is "
                "writable and has free space"
            ) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def on_change(self, listener: Callable[[str, Node], None]) -> None:
        """Call ``listener(event, node)`` after each committed node change."""
        self._listeners.append(listener)

    def _notify(self, event: str, nodes: Iterable[Node]) -> None:
        for node in nodes:
            for listener in self._listeners:
                listener(event, node)

    @contextlib.contextmanager
    def _tx(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``durable=False`` skips the fsync, for records that
        are not acknowledged to anyone (a later durable commit flushes them too)."""
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                yield from self._transaction()
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(self._cannot_write(exc)) from exc
            try:
                yield self._db
            except sqlite3.OperationalError as exc:  # disk full, read-only file system, I/O error
                self._rollback()
                raise StoreError(self._cannot_write(exc)) from exc
            except BaseException:
                self._rollback()
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(self._cannot_write(exc)) from exc

    def _rollback(self) -> None:
        """Undo the open transaction (SQLite may already have rolled it back itself)."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def _cannot_write(self, exc: sqlite3.Error) -> str:
        return (
            f"cannot write the tree store at {self.path} ({exc}): free some disk space "
            "or make AMBIENT_HOME writable; nothing was changed"
        )

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def migrations(self) -> list[str]:
        return [r[0] for r in self._query("SELECT name FROM schema_migrations ORDER BY name")]

    def integrity_check(self) -> str:
        return str(self._query("PRAGMA integrity_check")[0][0])
