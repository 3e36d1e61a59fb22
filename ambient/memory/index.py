"""MemoryIndex: every node of every tree, findable by meaning, kept in chromadb.

- One Chroma record per node: id = node id, the document and metadata of
  :mod:`ambient.memory.documents`, and a vector from ambient's own
  :class:`~ambient.memory.embedder.Embedder` (passed to chroma explicitly; the
  collection also carries ambient's embedding function, so chroma never falls
  back to its downloading default).
- :meth:`MemoryIndex.sync` is incremental: it reads the nodes changed since the
  store version it saw last (kept in a small state file), compares content
  hashes with those stored in Chroma, embeds only what changed and only
  updates metadata for status changes. A lost state file costs one pass of
  hash comparisons, never a re-embedding. An edit re-embeds the node and the
  descendants whose lead included the edited text.
- The SQLite store stays the source of truth: :meth:`MemoryIndex.rebuild`
  (``ambient reindex``) recreates the whole index from it.

All methods are blocking (torch and chromadb): the daemon calls them from a
worker thread. ``sync``/``rebuild`` are serialised by a lock; ``search`` may run
beside them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from ambient.context import Fragment, Retriever
from ambient.errors import InvalidInput, MemoryUnavailable
from ambient.fsutil import write_atomic
from ambient.memory.documents import DOC_VERSION, METADATA_VERSION, Doc, DocBuilder, descendants
from ambient.memory.embedder import AmbientEmbeddingFunction, Embedder
from ambient.memory.location import Location
from ambient.memory.queries import MAX_QUERY_CHARS, check_query, fragment_of, where_clause
from ambient.scopes import View
from ambient.store import TreeStore
from ambient.tree import Node

_LOGGER = logging.getLogger(__name__)

MAX_K = 200
SYNC_BATCH = 1000
Progress = Callable[[int, int], None]  # (nodes seen, nodes embedded) so far


@dataclasses.dataclass
class SyncState:
    """What the index has seen of the store; anything that does not match means "compare everything"."""

    version: int = 0
    collection_id: str = ""
    embedder: str = ""
    doc_version: int = DOC_VERSION
    nodes: int = 0  # the store's node count at the last sync: fewer now means another store
    metadata_version: int = 1  # what the entries' metadata holds (1: before scopes)


class MemoryIndex:
    """The vector index over all nodes (implements :class:`ambient.memory_api.MemoryIndexProtocol`)."""

    def __init__(self, client: Any, location: Location, embedder: Embedder) -> None:
        self.location = location
        self.embedder = embedder
        self._client = client
        self._lock = threading.RLock()
        # On a Chroma server a collection may be shared by several homes: each tags its entries and
        # purges only its own. An embedded index belongs to one home and needs no tag.
        self._owner = "" if location.embedded else owner_id(location.folder)
        self._collection = self._open_collection()
        self._state = self._load_state()

    # ------------------------------------------------------------ collection
    def _open_collection(self) -> Any:
        with self.location.guard("opened"):
            collection = self._client.get_or_create_collection(
                self.location.collection,
                embedding_function=AmbientEmbeddingFunction(self.embedder),
                metadata={"embedder": self.embedder.identity},
                configuration={"hnsw": {"space": "cosine"}},
            )
        built_with = (collection.metadata or {}).get("embedder")
        if built_with not in (None, self.embedder.identity):
            raise MemoryUnavailable(
                f"the memory index in {self.location.where} was built with the embedding model "
                f"{built_with}, but memory.embedder is now {self.embedder.identity}: run `ambient reindex` "
                "to rebuild it with the new model"
            )
        return collection

    @property
    def collection(self) -> Any:
        """The chromadb collection itself (for benchmarks and diagnostics)."""
        return self._collection

    def count(self) -> int:
        with self.location.guard("read"):
            return int(self._collection.count())

    def check(self) -> None:
        """Read the index end to end (count, one stored vector, one query): raises if it is damaged."""
        with self.location.guard("read"):
            if self._collection.count() == 0:
                return
            got = self._collection.get(limit=1, include=["embeddings"])
            self._collection.query(query_embeddings=[got["embeddings"][0]], n_results=1, include=[])

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing must never fail a shutdown
            _LOGGER.debug("closing the chroma client failed", exc_info=True)

    # ----------------------------------------------------------------- state
    def _load_state(self) -> SyncState:
        identity = self.embedder.identity
        fresh = SyncState(0, str(self._collection.id), identity, metadata_version=METADATA_VERSION)
        try:
            raw = json.loads(self.location.state_path.read_text(encoding="utf-8"))
            state = SyncState(**raw)
        except (OSError, ValueError, TypeError):
            return fresh
        if (state.collection_id, state.embedder, state.doc_version, state.metadata_version) != (
            fresh.collection_id,
            fresh.embedder,
            fresh.doc_version,
            fresh.metadata_version,
        ):
            return fresh  # a full pass: entries are compared by hash, only what changed is embedded
        return state

    def _save_state(self) -> None:
        path = self.location.state_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(dataclasses.asdict(self._state)))
        except OSError as exc:  # the next sync compares hashes instead: slower, never wrong
            _LOGGER.warning("cannot save the memory index state to %s: %s", path, exc)

    # ------------------------------------------------------------------ sync
    def sync(self, store: TreeStore, progress: Progress | None = None) -> int:
        """Index every node changed since the last sync; return how many nodes were embedded.

        A full pass (no usable state) also removes entries whose node is no longer in the store.
        """
        with self._lock:
            builder = DocBuilder(store, self.embedder.identity)
            if store.node_count() < self._state.nodes:  # a replaced store: versions start over
                self._state.version = 0
            full = self._state.version == 0
            present: set[str] = set()
            seen = embedded = 0
            while batch := _changes(store, self._state.version, SYNC_BATCH):
                embedded += self._index(store, builder, [n for _, n in batch])
                if full:
                    present.update(n.id for _, n in batch)
                seen += len(batch)
                self._state.version = batch[-1][0]
                self._state.nodes = store.node_count()
                self._save_state()
                if progress is not None:
                    progress(seen, embedded)
            if full:
                self._purge_missing(present)
            return embedded

    def rebuild(self, store: TreeStore, progress: Progress | None = None) -> int:
        """Index every node again from the store (``ambient reindex``).

        Embedded: the collection is dropped and made anew. On a Chroma server the
        collection may be shared with other homes: only this home's entries go.
        """
        with self._lock:
            with self.location.guard("reset"):
                if self._owner:
                    self._collection.delete(where={"owner": self._owner})
                else:
                    names = {getattr(c, "name", c) for c in self._client.list_collections()}
                    if self.location.collection in names:
                        self._client.delete_collection(self.location.collection)
            self._collection = self._open_collection()
            self._state = SyncState(
                0, str(self._collection.id), self.embedder.identity, metadata_version=METADATA_VERSION
            )
            self._save_state()
            return self.sync(store, progress)

    def forget(self, store: TreeStore, node_ids: Sequence[str], moved_ids: Sequence[str] = ()) -> int:
        """Remove forgotten nodes' entries; rebuild those whose lead held their text. Returns entries removed.

        ``moved_ids`` are the children that moved up when a node was spliced out: their
        documents (and those below them) began with the forgotten text.
        """
        with self._lock:
            removed = 0
            for start in range(0, len(node_ids), 5000):
                chunk = list(node_ids[start : start + 5000])
                with self.location.guard("written"):
                    removed += len(self._collection.get(ids=chunk, include=[])["ids"])
                    self._collection.delete(ids=chunk)
            present = [i for i in moved_ids if store.node_exists(i)]
            if present:
                nodes = [store.get_node(i) for i in present] + descendants(store, present)
                self._index(store, DocBuilder(store, self.embedder.identity), nodes)
            return removed

    def _purge_missing(self, present: set[str]) -> None:
        """Delete this home's entries whose node is not in ``present`` (every node id in the store)."""
        offset, stale = 0, []
        where = {"owner": self._owner} if self._owner else None
        while True:
            with self.location.guard("read"):
                ids = self._collection.get(where=where, limit=5000, offset=offset, include=[])["ids"]
            if not ids:
                break
            stale += [i for i in ids if i not in present]
            offset += len(ids)
        for start in range(0, len(stale), 5000):
            with self.location.guard("written"):
                self._collection.delete(ids=stale[start : start + 5000])
        if stale:
            _LOGGER.info("removed %d index entries whose nodes are gone", len(stale))

    def _index(self, store: TreeStore, builder: DocBuilder, nodes: Sequence[Node]) -> int:
        """Embed the nodes whose embedded text changed; refresh the rest. Returns how many were embedded."""
        builder.remember(nodes)
        docs = [builder.build(n) for n in nodes]
        if self._owner:
            for d in docs:
                d.metadata["owner"] = self._owner
        existing = self._existing([d.id for d in docs])
        fresh, rewritten, moved, edited = [], [], [], []
        for d in docs:
            old = existing.get(d.id)
            if old is None or old.get("hash") != d.hash:
                fresh.append(d)
            elif old.get("doc_hash") != d.doc_hash:
                rewritten.append(d)
            elif not _same_metadata(old, d.metadata):
                moved.append(d)
            if old is not None and old.get("text_hash") != d.text_hash:
                edited.append(d.id)
        self._write(fresh, rewritten, moved)
        if not edited:
            return len(fresh)
        ids = {n.id for n in nodes}
        below = [n for n in descendants(store, edited) if n.id not in ids]
        return len(fresh) + (self._index(store, builder, below) if below else 0)

    def _existing(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        with self.location.guard("read"):
            got = self._collection.get(ids=ids, include=["metadatas"])
        return {i: dict(m or {}) for i, m in zip(got["ids"], got["metadatas"] or [], strict=False)}

    def _write(self, fresh: list[Doc], rewritten: list[Doc], moved: list[Doc]) -> None:
        """Upsert new vectors; store new documents with their old vectors; update bare metadata."""
        if fresh:
            self._upsert(fresh, self.embedder.embed([d.embed_text for d in fresh]))
        if rewritten:
            with self.location.guard("read"):
                got = self._collection.get(ids=[d.id for d in rewritten], include=["embeddings"])
            vectors = dict(zip(got["ids"], got["embeddings"], strict=True))
            self._upsert(rewritten, [vectors[d.id] for d in rewritten])
        if moved:
            with self.location.guard("written"):
                self._collection.update(ids=[d.id for d in moved], metadatas=[d.metadata for d in moved])

    def _upsert(self, docs: list[Doc], vectors: Any) -> None:
        with self.location.guard("written"):
            self._collection.upsert(
                ids=[d.id for d in docs],
                embeddings=vectors,
                documents=[d.document for d in docs],
                metadatas=[d.metadata for d in docs],
            )

    # ---------------------------------------------------------------- search
    def search(
        self,
        query: str,
        k: int = 5,
        *,
        status: str | None = None,
        source: str | None = None,
        exclude_tree_id: str | None = None,
        exclude_node_ids: Collection[str] = (),
        view: View | None = None,
    ) -> list[Fragment]:
        """The ``k`` nodes nearest in meaning to ``query``, best first; score = cosine similarity.

        With ``view``, only what an offer in that scope may retrieve (:mod:`ambient.scopes`).
        """
        query = check_query(query)
        if not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be between 1 and {MAX_K}, got {k}")
        where = where_clause(status, source, exclude_tree_id, exclude_node_ids, view)
        vector = self.embedder.embed([query])
        with self.location.guard("searched"):
            found = self._collection.query(
                query_embeddings=vector,
                n_results=k,
                where=where,
                include=["documents", "metadatas", "distances"],
            )
        rows = zip(
            found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0], strict=True
        )
        return [fragment_of(i, doc, meta, dist) for i, doc, meta, dist in rows]

    def retriever(self) -> Retriever:
        """The ContextBuilder's view: never raises for an empty query, clamps long ones."""

        def retrieve(
            query: str,
            k: int,
            exclude_tree_id: str | None = None,
            exclude_node_ids: Collection[str] = (),
            view: View | None = None,
        ) -> list[Fragment]:
            text = query[-MAX_QUERY_CHARS:]
            if not text.strip():
                return []
            return self.search(
                text,
                max(1, min(k, MAX_K)),
                exclude_tree_id=exclude_tree_id,
                exclude_node_ids=exclude_node_ids,
                view=view,
            )

        return retrieve


def owner_id(folder: Path) -> str:
    """This home's id in shared collections: a random id kept in ``folder/owner-id``, made once."""
    path = folder / "owner-id"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise MemoryUnavailable(f"cannot read {path} ({exc.strerror}): fix its permissions") from None
    value = uuid.uuid4().hex
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, value)
    except OSError as exc:
        raise MemoryUnavailable(
            f"cannot write {path} ({exc.strerror}): make AMBIENT_HOME writable, or set memory.enabled = false"
        ) from None
    return value


def _same_metadata(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Equal metadata; times may come back from Chroma a few units in the last place off."""
    if old.keys() != new.keys():
        return False
    for key, value in new.items():
        stored = old[key]
        if isinstance(value, float) and isinstance(stored, float | int):
            if abs(stored - value) > 1e-3:
                return False
        elif stored != value:
            return False
    return True


def _changes(store: TreeStore, version: int, limit: int) -> list[tuple[int, Node]]:
    """Nodes changed after ``version``; never ends a batch in the middle of one store version."""
    batch = store.nodes_since(version, limit)
    while len(batch) == limit and batch[0][0] == batch[-1][0]:
        limit *= 2
        batch = store.nodes_since(version, limit)
    if len(batch) == limit:
        last = batch[-1][0]
        batch = [b for b in batch if b[0] != last]
    return batch
