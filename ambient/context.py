"""ContextBuilder: the prompt for one moment, under the model's token budget.

Layout of a prompt::

    <memory header>
    <fragment 1> ... <fragment k>      retrieved by meaning, best first
    <memory footer>
    <source text up to the point of change>   (the continuation starts right here)

Tokens are counted with the model's own tokenizer. The source text always
wins: memory gets at most ``context.memory_share`` of the budget and only what
is left after the source. If the source alone is too long it is cut from the
left. Everything that went in, and everything cut, is recorded as provenance.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection
from typing import Any, Protocol

from ambient.config import ContextSection

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Fragment:
    """A piece of past text found by meaning."""

    node_id: str
    tree_id: str
    text: str
    score: float
    status: str = ""
    source: str = ""


class Retriever(Protocol):
    def __call__(self, query: str, k: int, exclude_tree_id: str | None) -> list[Fragment]: ...


@dataclasses.dataclass(frozen=True)
class BuiltContext:
    prompt: str
    provenance: dict[str, Any]


class ContextBuilder:
    def __init__(
        self,
        count_tokens: Callable[[str], int],
        context_length: int,
        settings: ContextSection,
        retriever: Retriever | None = None,
        k: int = 4,
        min_score: float = 0.0,
    ) -> None:
        self.count_tokens = count_tokens
        self.context_length = context_length
        self.settings = settings
        self.retriever = retriever
        self.k = k
        self.min_score = min_score

    def budget(self, max_tokens: int) -> int:
        limit = self.context_length - max_tokens
        if self.settings.budget:
            limit = min(limit, self.settings.budget)
        return max(limit, 16)

    def build(
        self,
        source_text: str,
        *,
        max_tokens: int,
        source: dict[str, Any] | None = None,
        tree_id: str | None = None,
        exclude_node_ids: Collection[str] = (),
        use_memory: bool = True,
    ) -> BuiltContext:
        """Assemble the prompt for continuing ``source_text``."""
        budget = self.budget(max_tokens)
        text, cut_chars = self._fit_source(source_text, budget)
        source_tokens = self.count_tokens(text)
        provenance: dict[str, Any] = {
            "budget": budget,
            "source": {
                **(source or {}),
                "chars": [cut_chars, len(source_text)],
                "tokens": source_tokens,
            },
            "retrieved": [],
            "cut": {"source_chars": cut_chars, "fragments": []},
            "memory": "off",
        }
        memory_budget = min(budget - source_tokens, int(budget * self.settings.memory_share))
        if not use_memory or self.retriever is None:
            return BuiltContext(text, provenance)
        fragments, status = self._retrieve(source_text, tree_id, exclude_node_ids)
        provenance["memory"] = status
        block = self._memory_block(fragments, memory_budget, provenance)
        return BuiltContext(block + text, provenance)

    def _fit_source(self, text: str, budget: int) -> tuple[str, int]:
        """Cut ``text`` from the left until it fits ``budget`` tokens; return it and the chars cut."""
        if self.count_tokens(text) <= budget:
            return text, 0
        lo, hi = 0, len(text)
        while lo < hi:  # smallest cut that fits
            mid = (lo + hi) // 2
            if self.count_tokens(text[mid:]) <= budget:
                hi = mid
            else:
                lo = mid + 1
        cut = _to_word_boundary(text, lo)
        return text[cut:], cut

    def _retrieve(
        self, source_text: str, tree_id: str | None, exclude: Collection[str]
    ) -> tuple[list[Fragment], str]:
        query = source_text[-2000:]
        if not query.strip() or self.retriever is None:
            return [], "empty"
        try:
            found = self.retriever(query, self.k + len(exclude) + 4, None)
        except Exception as exc:  # memory must never stop an offer
            _LOGGER.warning("memory unavailable, continuing without retrieval: %s", exc)
            return [], f"unavailable: {exc}"
        tail = source_text[-4000:]
        keep = [
            f
            for f in found
            if f.node_id not in exclude and f.score >= self.min_score and f.text.strip() not in tail
        ]
        return keep[: self.k], "on"

    def _memory_block(self, fragments: list[Fragment], budget: int, provenance: dict[str, Any]) -> str:
        s = self.settings
        overhead = self.count_tokens(s.memory_header + s.memory_footer)
        parts: list[str] = []
        used = overhead
        for f in fragments:
            piece = s.fragment_template.format(text=f.text.strip())
            cost = self.count_tokens(piece)
            record = {"node_id": f.node_id, "tree_id": f.tree_id, "score": round(f.score, 4), "tokens": cost}
            if used + cost > budget:
                provenance["cut"]["fragments"].append(record)
                continue
            used += cost
            parts.append(piece)
            provenance["retrieved"].append(record)
        if not parts:
            return ""
        return s.memory_header + "".join(parts) + s.memory_footer


def _to_word_boundary(text: str, pos: int) -> int:
    """Move a cut forward to the next whitespace so no word is split (within 40 chars)."""
    for i in range(pos, min(len(text), pos + 40)):
        if text[i].isspace():
            return i + 1
    return pos
