"""Scores of recent prompt prefixes, so a prompt that only grew is scored only where it grew.

An app that echoes its prompt with logprobs (a Loom) sends the whole text each time, a little
longer than the last. A token's score depends only on the tokens before it, so the scores of a
prefix stay true. :class:`ScoreMemo` keeps, for the prefix where a scored prompt's key/value
cache was copied (:class:`~ambient.sampling.prefix_cache.PrefixCache`, a few tokens before its
end), the scores up to there and the last hidden state (which predicts the next token); the
next prompt that starts with that prefix takes its cache and scores, and reads only the rest.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence

import torch

from ambient.sampling.base import TokenAlt
from ambient.sampling.prefix_cache import PrefixCache, Reuse

SCORE_MEMO = 8  # prefixes whose scores are kept (their caches live in the prefix cache)


@dataclasses.dataclass
class Scored:
    """The scores of a prefix's tokens (index = position) and the hidden state after its last one."""

    logprobs: list[float | None]
    tops: list[tuple[TokenAlt, ...]]
    hidden: torch.Tensor
    k: int  # alternatives kept per token


class ScoreMemo:
    """Recently scored prefixes, the oldest forgotten first."""

    def __init__(self, size: int = SCORE_MEMO) -> None:
        self.size = size
        self._memo: OrderedDict[tuple[int, ...], Scored] = OrderedDict()

    def remember(self, prefix: Sequence[int], scored: Scored) -> None:
        key = tuple(prefix)
        self._memo[key] = scored
        self._memo.move_to_end(key)
        while len(self._memo) > self.size:
            self._memo.popitem(last=False)

    def recall(self, prefixes: PrefixCache, ids: Sequence[int], k: int) -> tuple[Reuse, Scored] | None:
        """The longest remembered prefix of ``ids`` with at least ``k`` alternatives whose cache is
        still stored: a private copy of that cache, and its scores."""
        for key in sorted(self._memo, key=len, reverse=True):
            scored = self._memo[key]
            if scored.k < k or len(key) >= len(ids) or tuple(ids[: len(key)]) != key:
                continue
            reuse = prefixes.lookup(ids[: len(key) + 1])
            if reuse is not None and reuse.tokens == len(key):
                self._memo.move_to_end(key)
                return reuse, scored
        return None

    def exact(self, prefix: Sequence[int]) -> Scored | None:
        """The scores of exactly ``prefix``, if remembered."""
        return self._memo.get(tuple(prefix))

    def clear(self) -> None:
        self._memo.clear()
