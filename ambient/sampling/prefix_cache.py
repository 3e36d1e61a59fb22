"""Key/value caches of recent prompt prefixes, so a prompt that only grew at its end is not read again.

A note that gains a sentence, a Discord thread that gains a message, a
transcript that gains a segment: each new prompt starts with most of the last
one. :class:`PrefixCache` keeps a copy of the model's key/value cache taken a
few tokens *before* the end of each recent prompt (``margin``): the last
tokens of a text may be re-tokenised differently once text is appended (a word
that grows, a space that joins the next word), and a cache cut at that point
would be wrong. Everything before the cut is exact, sliding-window layers
included, because the copy holds precisely the state after that many tokens.

On the next prompt, the longest stored prefix that the new token ids start
with is copied and only the rest of the prompt is run. Entries are kept most
recently used first, within a byte budget.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

MIN_PREFIX = 32  # shorter prefixes are cheap to recompute: not worth a copy
DEFAULT_MARGIN = 8  # tokens before the end of a prompt where its copy is cut


@dataclasses.dataclass
class _Entry:
    ids: tuple[int, ...]  # the prefix the cache holds, exactly
    cache: Any  # a DynamicCache after exactly len(ids) tokens, batch 1, never mutated
    nbytes: int


@dataclasses.dataclass(frozen=True)
class Reuse:
    """A private copy of a stored cache and how many leading prompt tokens it already covers."""

    cache: Any
    tokens: int


class PrefixCache:
    """Most recently used prompt-prefix caches, at most ``budget_bytes`` in all (0 = off). Thread-safe."""

    def __init__(self, budget_bytes: int, *, margin: int = DEFAULT_MARGIN, max_entries: int = 16) -> None:
        self.budget_bytes = max(0, budget_bytes)
        self.margin = max(1, margin)
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.budget_bytes > 0

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def cut_point(self, prompt_len: int, reused: int) -> int | None:
        """Where to copy the cache while reading a prompt of ``prompt_len`` tokens; None = no copy.

        No copy when the prompt is short, or when the reused prefix already
        ends at (or past) the cut: that entry serves the next prompt as well.
        """
        cut = prompt_len - self.margin
        if not self.enabled or cut < MIN_PREFIX or cut <= reused:
            return None
        return cut

    def lookup(self, ids: Sequence[int]) -> Reuse | None:
        """A copy of the longest stored prefix of ``ids`` that leaves at least one token to run."""
        if not self.enabled:
            return None
        with self._lock:
            best: _Entry | None = None
            for entry in self._entries.values():
                n = len(entry.ids)
                if n < len(ids) and (best is None or n > len(best.ids)) and _starts_with(ids, entry.ids):
                    best = entry
            if best is None:
                self.misses += 1
                return None
            self.hits += 1
            self._entries.move_to_end(best.ids)
        return Reuse(copy.deepcopy(best.cache), len(best.ids))

    def store(self, ids: Sequence[int], cache: Any) -> None:
        """Keep a copy of ``cache``, which holds the state after exactly ``ids``."""
        if not self.enabled:
            return
        key = tuple(ids)
        snapshot = copy.deepcopy(cache)
        entry = _Entry(key, snapshot, cache_bytes(snapshot))
        if entry.nbytes > self.budget_bytes:
            return
        with self._lock:
            # a prefix of the new entry is superseded: the prompt it served has grown past it
            for old in [k for k in self._entries if len(k) <= len(key) and key[: len(k)] == k]:
                del self._entries[old]
            self._entries[key] = entry
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _evict(self) -> None:
        total = sum(e.nbytes for e in self._entries.values())
        while self._entries and (total > self.budget_bytes or len(self._entries) > self.max_entries):
            _, old = self._entries.popitem(last=False)
            total -= old.nbytes


def _starts_with(ids: Sequence[int], prefix: tuple[int, ...]) -> bool:
    return len(ids) >= len(prefix) and tuple(ids[: len(prefix)]) == prefix


def cache_bytes(cache: Any) -> int:
    """Bytes of the distinct tensor storages a cache holds (spare capacity included)."""
    seen: set[int] = set()
    total = 0
    for layer in getattr(cache, "layers", ()):
        for tensor in _tensors(layer):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total


def _tensors(layer: Any) -> list[torch.Tensor]:
    found = [v for v in vars(layer).values() if isinstance(v, torch.Tensor)]
    buf = getattr(layer, "buf", None)
    if buf is not None:
        found += [v for v in vars(buf).values() if isinstance(v, torch.Tensor)]
    return found
