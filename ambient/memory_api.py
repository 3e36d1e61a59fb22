"""The interface the rest of ambient uses to reach memory (implemented in ambient.memory)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from ambient.context import Fragment, Retriever
from ambient.scopes import View
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
        exclude_node_ids: Collection[str] = (),
        view: View | None = None,
    ) -> list[Fragment]:
        """The ``k`` nodes nearest in meaning to ``query``, best first (score = cosine similarity)."""

    def retriever(self) -> Retriever:
        """A callable for the ContextBuilder (blocking; run it off the event loop)."""

    def close(self) -> None: ...
