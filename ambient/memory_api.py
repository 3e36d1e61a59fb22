"""The interface the rest of ambient uses to reach memory (implemented in ambient.memory)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from ambient.context import Fragment, Retriever
from ambient.scopes import View
from ambient.store import TreeStore


class MemoryIndexProtocol(Protocol):
    def sync(self, store: TreeStore, progress: Callable[[int, int], None] | None = None) -> int:
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

    def forget(self, store: TreeStore, node_ids: Sequence[str], moved_ids: Sequence[str] = ()) -> int:
        """Remove forgotten nodes' entries and rebuild those that began with their text."""

    def retriever(self) -> Retriever:
        """A callable for the ContextBuilder (blocking; run it off the event loop)."""

    def close(self) -> None: ...
