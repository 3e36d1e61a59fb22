"""The growing KV cache of the local sampler: cache layers that append in place instead of re-copying.

transformers' own cache layers concatenate every step's keys and values onto
the old ones, copying the whole cache per token. These layers write into spare
capacity, which grows by a quarter (at least :data:`GROW_MIN` positions) when
it runs out, so copies are amortised. They keep the batch operations the
sampler needs: repeat the prompt's rows for N branches, drop the rows of
finished branches. :func:`new_cache` builds a ``DynamicCache`` with them.

Rows laid out anew (repeated for N branches, or fewer kept) get only
:data:`GROW_MIN` spare positions: at N = 8 a quarter's room on every layer is
tens of MB held for steps that may never come, and the first append past it
grows by a quarter as usual. Before the rows are repeated, the heap the prompt
pass freed is handed back, so the N copies do not sit on top of it. A copy
(``copy.deepcopy``, as the prefix cache takes) holds only the positions still
needed: a sliding-window layer that read a 1,000-token prompt keeps its window,
not the whole prompt and room for a quarter more.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from ambient.packing import return_freed_memory

GROW_MIN = 64  # spare positions a cache layer grows by at least


class _Buffer:
    """Key and value rows of one layer, appended into spare capacity instead of re-copied each step."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.k, self.v = keys, values  # [batch, heads, capacity, dim]
        self.start = self.end = 0

    def append(self, keys: torch.Tensor, values: torch.Tensor, keep: int | None) -> None:
        """Add ``keys``/``values``; ``keep`` = how many recent positions must stay (None = all)."""
        new = keys.shape[-2]
        if self.end + new > self.k.shape[-2]:
            self._make_room(new, keep)
        self.k[:, :, self.end : self.end + new] = keys
        self.v[:, :, self.end : self.end + new] = values
        self.end += new

    def _make_room(self, new: int, keep: int | None) -> None:
        """Move the positions still needed to the front, into a bigger buffer if they do not fit."""
        held = self.end - self.start if keep is None else min(keep, self.end - self.start)
        k = self.k[:, :, self.end - held : self.end]
        v = self.v[:, :, self.end - held : self.end]
        need = held + new
        if need + need // 4 > self.k.shape[-2]:
            self.k, self.v = _with_room(k, need), _with_room(v, need)
        else:  # enough room once compacted; clone because source and target may overlap
            self.k[:, :, :held] = k.clone()
            self.v[:, :, :held] = v.clone()
        self.start, self.end = 0, held

    def copy(self) -> _Buffer:
        """A copy of the positions held, without spare room (it grows when appended to)."""
        held = slice(self.start, self.end)
        out = _Buffer(self.k[:, :, held].clone(), self.v[:, :, held].clone())
        out.end = self.end - self.start
        return out

    def view(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The last ``length`` positions."""
        return self.k[:, :, self.end - length : self.end], self.v[:, :, self.end - length : self.end]

    def select(self, rows: torch.Tensor | None, repeats: int = 1) -> None:
        """Keep batch rows ``rows``, or repeat each row ``repeats`` times."""
        k, v = self.k[:, :, self.start : self.end], self.v[:, :, self.start : self.end]
        if rows is not None:
            k, v = k[rows], v[rows]
        self.k, self.v = _repeated(k, repeats), _repeated(v, repeats)
        self.start, self.end = 0, k.shape[-2]


def _repeated(t: torch.Tensor, repeats: int) -> torch.Tensor:
    """A new buffer with each batch row of ``t`` ``repeats`` times in a row (as ``repeat_interleave``) and
    :data:`GROW_MIN` spare positions, written in place: no N-row temporary beside it."""
    rows, heads, length, dim = t.shape
    out = t.new_empty((rows * repeats, heads, length + GROW_MIN, dim))
    out.view(rows, repeats, heads, length + GROW_MIN, dim)[:, :, :, :length] = t.unsqueeze(1)
    return out


def _with_room(t: torch.Tensor, need: int, room: int | None = None) -> torch.Tensor:
    """A new [batch, heads, capacity, dim] buffer starting with ``t``, with room for ``need`` positions
    and ``room`` more (default: a quarter of ``need``, at least :data:`GROW_MIN`)."""
    capacity = need + (max(GROW_MIN, need // 4) if room is None else room)
    out = t.new_empty((*t.shape[:2], capacity, t.shape[3]))
    out[:, :, : t.shape[2]] = t
    return out


def _copy_layer(layer: Any, memo: dict[int, Any]) -> Any:
    """``copy.deepcopy`` of a growing layer: its buffer as :meth:`_Buffer.copy`, the rest as usual."""
    new = layer.__class__.__new__(layer.__class__)
    memo[id(layer)] = new
    for key, value in layer.__dict__.items():
        if key not in ("buf", "keys", "values"):
            new.__dict__[key] = copy.deepcopy(value, memo)
    if layer.buf is None:
        new.keys, new.values = copy.deepcopy(layer.keys, memo), copy.deepcopy(layer.values, memo)
    else:
        new.buf = layer.buf.copy()
        new.keys, new.values = new.buf.view(new.buf.end)
    return new


class GrowingLayer(DynamicLayer):  # type: ignore[misc]
    """A full-attention cache layer that appends in place (amortised) rather than concatenating every step."""

    buf: _Buffer | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.buf is None:
            self.lazy_initialization(key_states, value_states)
            self.buf = _Buffer(_with_room(key_states[:, :, :0], 0), _with_room(value_states[:, :, :0], 0))
        self.buf.append(key_states, value_states, None)
        self.keys, self.values = self.buf.view(self.buf.end - self.buf.start)
        return self.keys, self.values

    def __deepcopy__(self, memo: dict[int, Any]) -> GrowingLayer:
        copied: GrowingLayer = _copy_layer(self, memo)
        return copied

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.buf is not None:
            self.buf.select(None, repeats)
            self.keys, self.values = self.buf.view(self.buf.end)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.buf is not None:
            self.buf.select(indices)
            self.keys, self.values = self.buf.view(self.buf.end)


class GrowingSlidingLayer(DynamicSlidingWindowLayer):  # type: ignore[misc]
    """A sliding-window cache layer that behaves like transformers' own, without per-step copies."""

    buf: _Buffer | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.buf is None:
            self.lazy_initialization(key_states, value_states)
            self.buf = _Buffer(_with_room(key_states[:, :, :0], 0), _with_room(value_states[:, :, :0], 0))
        window = self.sliding_window - 1
        seen = min(self.buf.end - self.buf.start, window)
        new = key_states.shape[-2]
        self.cumulative_length += new
        self.buf.append(key_states, value_states, window)
        self.buf.start = max(self.buf.start, self.buf.end - window)
        self.keys, self.values = self.buf.view(self.buf.end - self.buf.start)
        return self.buf.view(seen + new)

    def __deepcopy__(self, memo: dict[int, Any]) -> GrowingSlidingLayer:
        copied: GrowingSlidingLayer = _copy_layer(self, memo)
        return copied

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.buf is not None:
            self.buf.select(None, repeats)
            self.keys, self.values = self.buf.view(self.buf.end)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.buf is not None:
            self.buf.select(indices)
            self.keys, self.values = self.buf.view(self.buf.end)


class GrowingCache(DynamicCache):  # type: ignore[misc]
    """A DynamicCache that hands the freed heap back before its rows are repeated for N branches."""

    def batch_repeat_interleave(self, repeats: int) -> None:
        if repeats > 1:
            return_freed_memory(collect=False)  # what the prompt pass freed, before N copies are made
        super().batch_repeat_interleave(repeats)


def new_cache(config: Any) -> DynamicCache:
    """A DynamicCache for ``config`` whose plain layers append in place; other layer kinds stay stock."""
    cache = GrowingCache(config=config)
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer:
            cache.layers[i] = GrowingLayer()
        elif type(layer) is DynamicSlidingWindowLayer:
            cache.layers[i] = GrowingSlidingLayer(sliding_window=layer.sliding_window)
    return cache
