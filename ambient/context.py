"""ContextBuilder: the prompt for one moment, under the model's token budget.

Layout of a prompt::

    <memory header>
    <fragment 1> ... <fragment k>      retrieved by meaning, best first
    <memory footer>
    <source text up to the point of change>   (the continuation starts right here)

Tokens are counted with the model's own tokenizer. Memory gets at most
``context.memory_share`` of the budget (what it leaves goes to the source); the
source gets the rest and, if it is too long, is cut from the left. Everything
that went in, and everything cut, is recorded as provenance.

Retrieval asks the memory for fragments near the end of the source (the
moment at hand), leaving out the nodes being continued; a fragment whose own
text already appears in the source is dropped too, so a prompt never retrieves
the text it continues. ``context.fragment_template`` may use ``{text}`` (the
fragment with its lead-in), ``{score}``, ``{node_id}``, ``{tree_id}`` and
``{source}``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection
from typing import Any, Protocol

from ambient.config import ContextSection
from ambient.scopes import View

_LOGGER = logging.getLogger(__name__)

QUERY_CHARS = 1000  # the moment at hand: the end of the source (an encoder reads about 256 tokens)


@dataclasses.dataclass(frozen=True)
class Fragment:
    """A piece of past text found by meaning."""

    node_id: str
    tree_id: str
    text: str
    score: float
    status: str = ""
    source: str = ""
    lead: str = ""  # the end of the text before this node, so the fragment can stand on its own
    scope: str = ""  # the wall its tree stands behind (ambient/scopes.py)

    def render(self) -> str:
        """The fragment as shown in a prompt: "…" + lead + the node's own text."""
        if not self.lead.strip():
            return self.text.strip()
        return "…" + self.lead.lstrip() + self.text.rstrip()


class Retriever(Protocol):
    def __call__(
        self,
        query: str,
        k: int,
        exclude_tree_id: str | None = None,
        exclude_node_ids: Collection[str] = (),
        view: View | None = None,
    ) -> list[Fragment]: ...


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
        view: View | None = None,
    ) -> BuiltContext:
        """Assemble the prompt for continuing ``source_text``.

        Memory gets at most ``memory_share`` of the budget (what it does not use
        goes to the source); the source gets the rest, cut from the left. ``view``
        keeps retrieval inside the walls of the place the offer is made in.
        """
        budget = self.budget(max_tokens)
        provenance: dict[str, Any] = {
            "budget": budget,
            "source": dict(source or {}),
            "retrieved": [],
            "cut": {"source_chars": 0, "fragments": []},
            "memory": "off",
        }
        if view is not None:
            provenance["walls"] = {"scope": view.scope, "walls": [*view.walls], "shared": [*view.scopes]}
        pieces: list[str] = []
        if use_memory and self.retriever is not None:
            fragments, provenance["memory"] = self._retrieve(source_text, exclude_node_ids, view)
            memory_budget = int(budget * self.settings.memory_share)
            pieces = self._fit_fragments(fragments, memory_budget, provenance)
        block = self._memory_block(pieces)
        text, cut_chars = self._fit_source(source_text, budget - self.count_tokens(block))
        while pieces and self.count_tokens(block + text) > budget:  # tokens merged across a boundary
            pieces.pop()
            provenance["cut"]["fragments"].append(provenance["retrieved"].pop())
            block = self._memory_block(pieces)
        provenance["source"].update(chars=[cut_chars, len(source_text)], tokens=self.count_tokens(text))
        provenance["cut"]["source_chars"] = cut_chars
        memory_end = len(block)  # prompt chars: retrieved memory, then the source text
        provenance["regions"] = [["memory", 0, memory_end], ["source", memory_end, memory_end + len(text)]]
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
        self, source_text: str, exclude: Collection[str], view: View | None
    ) -> tuple[list[Fragment], str]:
        """Past fragments nearest to the moment at hand: the end of the source text."""
        query = source_text[-QUERY_CHARS:]
        if not query.strip() or self.retriever is None:
            return [], "empty"
        try:
            found = self.retriever(query, self.k + 4, None, exclude, view)
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

    def _fit_fragments(self, fragments: list[Fragment], budget: int, provenance: dict[str, Any]) -> list[str]:
        """Render fragments, best first, while they fit ``budget``; record what went in and what was cut."""
        s = self.settings
        used = self.count_tokens(s.memory_header + s.memory_footer)
        pieces: list[str] = []
        for f in fragments:
            piece = s.fragment_template.format(
                text=f.render(), score=f.score, node_id=f.node_id, tree_id=f.tree_id, source=f.source
            )
            cost = self.count_tokens(piece)
            record = {
                "node_id": f.node_id,
                "tree_id": f.tree_id,
                "scope": f.scope,
                "score": round(f.score, 4),
                "tokens": cost,
            }
            if used + cost > budget:
                provenance["cut"]["fragments"].append(record)
                continue
            used += cost
            pieces.append(piece)
            provenance["retrieved"].append(record)
        return pieces

    def _memory_block(self, pieces: list[str]) -> str:
        if not pieces:
            return ""
        s = self.settings
        return s.memory_header + "".join(pieces) + s.memory_footer


def _to_word_boundary(text: str, pos: int) -> int:
    """Move a cut forward to the next whitespace so no word is split (within 40 chars)."""
    for i in range(pos, min(len(text), pos + 40)):
        if text[i].isspace():
            return i + 1
    return pos
