"""Where the memory index lives (a folder, or a Chroma server), how to connect, and what to say when it fails.

Every chromadb call goes through :meth:`Location.guard`, which turns whatever
chromadb raises (including panics from its Rust core) into one
:class:`MemoryUnavailable` that names the problem and the fix. The trees are
never touched: the SQLite store is the source of truth.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ambient import remote
from ambient.config import Config
from ambient.errors import AmbientError, ConfigError, MemoryUnavailable
from ambient.home import private_dir

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

_LOGGER = logging.getLogger(__name__)
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]")


@dataclasses.dataclass(frozen=True)
class Location:
    """An embedded index in ``folder``, or a Chroma server at ``url`` (then ``folder`` holds only state)."""

    folder: Path
    url: str
    collection: str
    db_path: Path

    @classmethod
    def from_config(cls, config: Config) -> Location:
        name = config.memory.collection
        if not _COLLECTION_NAME.fullmatch(name) or ".." in name:
            raise ConfigError(
                f"memory.collection {name!r} is not a valid Chroma collection name: use 3-512 letters, "
                "digits, '.', '_' or '-', starting and ending with a letter or digit"
            )
        return cls(config.memory_dir, config.memory.url.strip(), name, config.db_path)

    @property
    def embedded(self) -> bool:
        return not self.url

    @property
    def where(self) -> str:
        return str(self.folder) if self.embedded else self.url

    @property
    def state_path(self) -> Path:
        if self.embedded:
            return self.folder / "ambient-state.json"
        key = hashlib.sha256(f"{self.url}\n{self.collection}".encode()).hexdigest()[:12]
        return self.folder / f"server-state-{key}.json"

    def failure(self, doing: str, exc: BaseException) -> MemoryUnavailable:
        detail = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]
        if self.embedded:
            return MemoryUnavailable(
                f"the memory index in {self.folder} cannot be {doing} ({detail}): run `ambient reindex` to "
                f"move it aside and rebuild it from the trees (no tree is lost; they are in {self.db_path})"
            )
        return MemoryUnavailable(
            f"the Chroma server at memory.url = {self.url} cannot be {doing} ({detail}): start it "
            "(`chroma run --host HOST --port PORT --path DIR`) or fix memory.url (empty = embedded index); "
            "until then ambient continues without retrieval"
        )

    @contextlib.contextmanager
    def guard(self, doing: str) -> Iterator[None]:
        """Turn chromadb's exceptions into :class:`MemoryUnavailable` (AmbientErrors pass through)."""
        try:
            yield
        except AmbientError:
            raise
        except Exception as exc:
            _LOGGER.debug("chromadb failed while %s", doing, exc_info=True)
            raise self.failure(doing, exc) from exc
        except BaseException as exc:  # pyo3's PanicException derives from BaseException
            if type(exc).__name__ != "PanicException":
                raise
            raise self.failure(doing, exc) from exc

    def connect(self) -> Any:
        """A chromadb client: ``PersistentClient`` on the folder, or ``HttpClient`` on the url."""
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        if not self.embedded:
            host, port, ssl = self._server_address()
            with self.guard("reached"):
                return chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=settings)
        self._check_folder()
        try:
            with self.guard("opened"):
                return chromadb.PersistentClient(path=str(self.folder), settings=settings)
        except MemoryUnavailable:
            _forget_failed_system(str(self.folder))
            raise

    def _server_address(self) -> tuple[str, int, bool]:
        address = remote.memory_address(self.url)
        return address.host, address.port, not address.plain

    def _check_folder(self) -> None:
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise MemoryUnavailable(
                f"the memory index path {folder} is not a folder: move it away, or run `ambient reindex`"
            )
        try:
            private_dir(folder)  # 0700: the index holds what was written and offered
        except OSError as exc:
            raise MemoryUnavailable(
                f"cannot create the memory index folder {folder} ({exc.strerror}): make AMBIENT_HOME "
                "writable, or set memory.enabled = false"
            ) from None
        if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
            raise MemoryUnavailable(
                f"the memory index folder {folder} is not readable and writable: fix its permissions "
                "(chmod -R u+rwX), or run `ambient reindex` to rebuild it elsewhere"
            )


def _forget_failed_system(path: str) -> None:
    """Drop the half-started chroma System that a failed ``PersistentClient(path)`` leaves cached.

    chromadb (1.5) caches one System per folder and process, and keeps it even
    when starting it failed, so every later open of that folder (after
    ``ambient reindex`` moved it aside, say) would reuse the broken one.
    """
    from chromadb.api.shared_system_client import SharedSystemClient as Shared

    with Shared._refcount_lock:
        if Shared._identifier_to_refcount.get(path, 0) > 0:
            return
        system = Shared._identifier_to_system.pop(path, None)
    if system is not None:
        try:
            system.stop()
        except Exception:
            _LOGGER.debug("stopping a failed chroma system raised", exc_info=True)
