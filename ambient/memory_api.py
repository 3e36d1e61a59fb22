"""The interface the rest of ambient uses to reach memory (implemented in ambient.memory)."""

from __future__ import annotations

from typing import Protocol

from ambient.context import Fragment, Retriever
from ambient.store import TreeStore


class MemoryIndexProtocol(Protocol):
    def sync(self, store: TreeStore) -> int:
        """Index what changed in ``store`` since last time; return how many nodes were embedded."""

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        status: str | None = None,
        source: str | None = None,
        exclude_tree_id: str | None = None,
    ) -> list[Fragment]: ...

    def retriever(self) -> Retriever: ...

    def close(self) -> None: ...
