"""One continuation the local sampler is writing: its own generator, its text so far, its tokens.

A branch's text grows a token at a time through its detokenizer; stop strings
end it, and text that could still begin a stop string is held back until it
cannot (:class:`~ambient.sampling.local.text.StopMatcher`).
"""

from __future__ import annotations

import dataclasses

import torch

from ambient.sampling.base import Continuation, Token
from ambient.sampling.local.text import IncrementalDetokenizer, StopMatcher


@dataclasses.dataclass
class Branch:
    """One continuation being written."""

    index: int
    generator: torch.Generator
    detok: IncrementalDetokenizer
    text: str = ""  # decoded so far, including what is held back
    released: int = 0  # characters of ``text`` already handed out in tokens
    tokens: list[Token] = dataclasses.field(default_factory=list)
    finish_reason: str | None = None
    memory_shares: list[float] = dataclasses.field(default_factory=list)  # attention on memory, per token

    def add(self, token_id: int, eos: bool, last: bool, stops: StopMatcher) -> str:
        """Take the next token (``eos``: an end-of-text one; ``last``: the final step); the text released.

        Sets :attr:`finish_reason` when a stop string, the end of text or the
        last step ends the branch.
        """
        new = "" if eos else self.detok.push(token_id)
        if last and not eos:
            new += self.detok.flush()
        self.text += new
        cut = stops.find(self.text, len(new))
        if cut >= 0:
            self.text, self.finish_reason = self.text[:cut], "stop"
        elif eos:
            self.finish_reason = "stop"
        elif last:
            self.finish_reason = "length"
        end = len(self.text) if self.finish_reason else len(self.text) - stops.held(self.text)
        release = self.text[self.released : max(end, self.released)]
        self.released = max(end, self.released)
        return release

    def continuation(self) -> Continuation:
        body = "".join(t.text for t in self.tokens)
        return Continuation(text=body, tokens=self.tokens, finish_reason=self.finish_reason or "length")
