"""Memory: every node of every tree, findable by meaning (chromadb + a local sentence encoder).

The public entry points::

    open_memory(config) -> MemoryIndex        the index, embedded under AMBIENT_HOME or on a Chroma server
    prepare_embedder(config) -> Path          check (and load once) the embedding model folder
    reindex(config, store) -> ReindexResult   rebuild the index from the SQLite store (`ambient reindex`)

Everything here is blocking (torch, chromadb): the daemon calls it from worker
threads. See :mod:`ambient.memory.index` for what is indexed and how.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path

from ambient.config import Config
from ambient.errors import MemoryUnavailable
from ambient.memory.embedder import Embedder, resolve_embedder_path
from ambient.memory.index import MemoryIndex, Progress
from ambient.memory.location import Location
from ambient.memory.queries import check_query
from ambient.store import TreeStore

__all__ = [
    "Embedder",
    "MemoryIndex",
    "ReindexResult",
    "check_query",
    "get_embedder",
    "open_memory",
    "prepare_embedder",
    "reindex",
]

_LOGGER = logging.getLogger(__name__)
_EMBEDDERS: dict[Path, Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def get_embedder(config: Config) -> Embedder:
    """The embedder that ``memory.embedder`` names; one per folder and process (the model loads once)."""
    folder = resolve_embedder_path(config.memory.embedder).resolve()
    with _EMBEDDERS_LOCK:
        if folder not in _EMBEDDERS:
            _EMBEDDERS[folder] = Embedder(folder)
        return _EMBEDDERS[folder]


def open_memory(config: Config) -> MemoryIndex:
    """Open (or create) the memory index; raises MemoryUnavailable/ModelUnavailable saying how to fix it."""
    location = Location.from_config(config)
    embedder = get_embedder(config)
    client = location.connect()
    try:
        return MemoryIndex(client, location, embedder)
    except BaseException:
        client.close()
        raise


def prepare_embedder(config: Config) -> Path:
    """Resolve the embedding model folder and load it once, so the first search is fast."""
    embedder = get_embedder(config)
    embedder.load()
    return embedder.folder


@dataclasses.dataclass(frozen=True)
class ReindexResult:
    nodes: int  # nodes now in the index
    embedded: int
    seconds: float
    moved_aside: Path | None  # a damaged index folder, kept for inspection


def reindex(config: Config, store: TreeStore, progress: Progress | None = None) -> ReindexResult:
    """Rebuild the whole index from the store.

    A damaged embedded index is moved aside (to ``memory.broken-<time>`` beside
    it) and a new one is built; a healthy one, or one on a server, has its
    collection dropped and rebuilt.
    """
    start = time.perf_counter()
    location = Location.from_config(config)
    moved = None
    index = _open_healthy(config)
    if index is None:
        moved = _move_aside(location.folder)
        index = open_memory(config)
    try:
        embedded = index.rebuild(store, progress)
        nodes = index.count()
    finally:
        index.close()
    return ReindexResult(nodes, embedded, time.perf_counter() - start, moved)


def _open_healthy(config: Config) -> MemoryIndex | None:
    """The index if it opens and reads end to end; None if an embedded one is damaged."""
    location = Location.from_config(config)
    try:
        index = open_memory(config)
    except MemoryUnavailable:
        if not location.embedded:
            raise
        return None
    try:
        index.check()
    except MemoryUnavailable:
        index.close()
        if not location.embedded:
            raise
        return None
    return index


def _move_aside(folder: Path) -> Path | None:
    if not folder.exists() and not folder.is_symlink():
        return None
    target = folder.with_name(f"{folder.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while target.exists():
        n += 1
        target = target.with_name(f"{folder.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
    try:
        folder.rename(target)
    except OSError as exc:
        raise MemoryUnavailable(
            f"cannot move the damaged memory index {folder} aside ({exc.strerror}): delete it by hand "
            f"(`rm -rf {folder}`; the trees are safe in the SQLite store) and run `ambient reindex` again"
        ) from None
    _LOGGER.warning("moved the damaged memory index %s aside to %s", folder, target)
    return target
