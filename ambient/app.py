"""App: the services one process shares (store, sampler, memory, context builder).

Each is created on first use, so a command that only reads trees never loads a
model. The CLI and the daemon both go through one App.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable

from ambient.config import Config
from ambient.context import ContextBuilder, Retriever
from ambient.errors import AmbientError, MemoryUnavailable
from ambient.memory_api import MemoryIndexProtocol
from ambient.sampling.base import Sampler
from ambient.sampling.registry import create_sampler
from ambient.store import TreeStore

_LOGGER = logging.getLogger(__name__)


class App:
    def __init__(self, config: Config, sampler: Sampler | None = None) -> None:
        self.config = config
        self._sampler = sampler
        self.memory_warning: str | None = None
        # Offers whose failure could not be stored (the disk was full): marked failed at the next offer.
        self.unsettled_offers: set[str] = set()
        self.memory_error: AmbientError | None = None  # why the index could not be opened
        self._index_lock = threading.Lock()  # one sync at a time, whoever asks
        self._memory_opening: threading.Thread | None = None  # see open_memory_beside

    @functools.cached_property
    def store(self) -> TreeStore:
        return TreeStore(self.config.db_path)

    @property
    def sampler(self) -> Sampler:
        if self._sampler is None:
            self._sampler = create_sampler(self.config)
        return self._sampler

    def open_memory_beside(self) -> None:
        """Start opening the memory index in a thread, so that it overlaps the model's load.

        Opening the index (chromadb, the embedding model) takes about a second;
        most of the model's load (packing its weights) runs without the GIL, so
        the two share the cores. :attr:`memory` waits for this thread.
        """
        if not self.config.memory.enabled or "memory" in self.__dict__ or self._memory_opening is not None:
            return
        self._memory_opening = threading.Thread(
            target=lambda: self.memory, name="ambient-memory-open", daemon=True
        )
        self._memory_opening.start()

    def _wait_for_memory_opening(self) -> None:
        """Wait for :meth:`open_memory_beside`'s thread, if one runs (and this is not it)."""
        opening = self._memory_opening
        if opening is not None and opening is not threading.current_thread():
            opening.join()

    @functools.cached_property
    def memory(self) -> MemoryIndexProtocol | None:
        """The vector index, or None (with ``memory_warning`` set) when it cannot be used."""
        self._wait_for_memory_opening()
        if "memory" in self.__dict__:  # opened meanwhile by open_memory_beside's thread
            opened: MemoryIndexProtocol | None = self.__dict__["memory"]
            return opened
        if not self.config.memory.enabled:
            return None
        try:
            from ambient.memory import open_memory

            return open_memory(self.config)
        except AmbientError as exc:
            self.memory_error = exc
            self.memory_warning = f"memory is off for now: {exc}"
            _LOGGER.warning("%s", self.memory_warning)
            return None

    def require_memory(self) -> MemoryIndexProtocol:
        """The vector index, for commands that need it: raises its error (not a warning) if it cannot open."""
        if not self.config.memory.enabled:
            raise MemoryUnavailable("memory is off (memory.enabled = false): set it to true to use it")
        self._wait_for_memory_opening()
        if "memory" not in self.__dict__:
            try:
                from ambient.memory import open_memory

                self.__dict__["memory"] = open_memory(self.config)
            except AmbientError as exc:
                self.memory_error = exc
                self.__dict__["memory"] = None
                raise
        memory = self.memory
        if memory is None:
            raise self.memory_error or MemoryUnavailable("the memory index cannot be opened")
        return memory

    def retriever(self) -> Retriever | None:
        memory = self.memory
        return memory.retriever() if memory is not None else None

    def context_builder(self, use_memory: bool = True) -> ContextBuilder:
        sampler = self.sampler
        return ContextBuilder(
            sampler.count_tokens,
            sampler.context_length,
            self.config.context,
            retriever=self.retriever() if use_memory else None,
            k=self.config.memory.k,
            min_score=self.config.memory.min_score,
        )

    def lighten_memory(self) -> None:
        """Free what only searching uses (the embedder's packed copy for queries) until the next search.

        ``ambient continue`` searches once, before it samples: the copy would sit
        beside the model while it samples.
        """
        if not self.config.memory.enabled or self.__dict__.get("memory") is None:
            return
        from ambient.memory import get_embedder

        get_embedder(self.config).drop_query_model()

    def release_sampler(self) -> None:
        """Close the sampler and hand its memory back (a command that has sampled all it will).

        ``ambient continue`` calls this before indexing the new nodes, so the
        embedding model does not run beside the whole language model.
        """
        if self._sampler is None:
            return
        self._sampler.close()
        from ambient.packing import return_freed_memory

        return_freed_memory(collect=False)  # the model goes with its last reference: no cycles to collect

    def index_pending(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Embed every node the memory index has not seen yet; returns how many."""
        memory = self.memory
        if memory is None:
            return 0
        try:
            with self._index_lock:
                return memory.sync(self.store, progress)
        except AmbientError as exc:
            self.memory_warning = f"memory not updated: {exc}"
            _LOGGER.warning("%s", self.memory_warning)
            return 0

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
        if "memory" in self.__dict__ and self.memory is not None:
            self.memory.close()
        if "store" in self.__dict__:
            self.store.close()
