"""Text helpers of the local sampler: token ids to text, stop strings, and a word's standalone text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class IncrementalDetokenizer:
    """Turns a growing list of token ids into new text, one complete character at a time.

    Each step decodes a short window and emits the suffix that is new since the
    last step; while the window ends in U+FFFD (a UTF-8 character split over
    tokens) nothing is emitted, so no broken character ever leaves.
    """

    def __init__(self, tokenizer: Any, context: Sequence[int] = ()) -> None:
        self._tok = tokenizer
        self.ids: list[int] = list(context)
        self._prefix = 0
        self._read = len(self.ids)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        head = self._decode(self.ids[self._prefix : self._read])
        full = self._decode(self.ids[self._prefix :])
        if len(full) <= len(head) or full.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return full[len(head) :]

    def flush(self) -> str:
        """The text still held back, less a trailing incomplete character (its bytes never completed)."""
        head = self._decode(self.ids[self._prefix : self._read])
        full = self._decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return full[len(head) :].rstrip("\ufffd")

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))


class StopMatcher:
    """Finds stop strings in a branch's text and says how much text must wait."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stops)
        self.longest = max((len(s) for s in self.stops), default=0)

    def find(self, text: str, new_chars: int) -> int:
        """Where the earliest stop string that ends in the last ``new_chars`` characters begins, or -1."""
        if not self.stops:
            return -1
        start = max(0, len(text) - new_chars - self.longest + 1)
        hits = [i for i in (text.find(s, start) for s in self.stops) if i >= 0]
        return min(hits, default=-1)

    def held(self, text: str) -> int:
        """Characters at the end of ``text`` that could begin a stop string (so are not released yet)."""
        for k in range(min(self.longest - 1, len(text)), 0, -1):
            tail = text[-k:]
            if any(s.startswith(tail) for s in self.stops):
                return k
        return 0


def standalone_text(tokenizer: Any, anchor: list[int], token_id: int) -> str:
    """Decode one id as it reads after other text: some tokenizers drop a leading space at the start."""
    head = tokenizer.decode(anchor, skip_special_tokens=False)
    full = tokenizer.decode([*anchor, token_id], skip_special_tokens=False)
    return str(full[len(head) :] if full.startswith(head) else tokenizer.decode([token_id]))
