"""Deterministic fakes for fast unit tests (the real components are tested too)."""

from __future__ import annotations

import threading
import time

from ambient.sampling.base import (
    Capabilities,
    Continuation,
    OnToken,
    Sampler,
    SampleResult,
    SamplingOptions,
    Token,
    TokenAlt,
)


class FakeSampler(Sampler):
    """Branch i continues with words "b{i}w0 b{i}w1 ..."; one token per word, logprob -0.5.

    ``delay`` seconds between steps lets tests exercise streaming and cancellation.
    ``fail_after`` raises RuntimeError after that many steps (a sampler failing mid-stream).
    """

    name = "fake"
    capabilities = Capabilities(streams=True, logprobs=True, max_n=64)

    def __init__(self, delay: float = 0.0, fail_after: int | None = None, context: int = 2048) -> None:
        self.delay = delay
        self.fail_after = fail_after
        self._context = context
        self.prompts: list[str] = []

    @property
    def context_length(self) -> int:
        return self._context

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(
        self,
        prompt: str,
        options: SamplingOptions,
        on_token: OnToken | None = None,
        cancel: threading.Event | None = None,
    ) -> SampleResult:
        self.prompts.append(prompt)
        texts = [[] for _ in range(options.n)]  # type: list[list[Token]]
        reason = "length"
        for step in range(options.max_tokens):
            if cancel is not None and cancel.is_set():
                reason = "cancelled"
                break
            if self.fail_after is not None and step >= self.fail_after:
                raise RuntimeError("fake sampler failed mid-stream")
            for b in range(options.n):
                tok = Token(f" b{b}w{step}", -0.5, (TokenAlt(f" b{b}w{step}", -0.5), TokenAlt(" x", -1.5)))
                texts[b].append(tok)
                if on_token is not None:
                    on_token(b, tok)
            if self.delay:
                time.sleep(self.delay)
        conts = [Continuation("".join(t.text for t in toks), toks, reason) for toks in texts]
        return SampleResult(conts, model=self.name, prompt_tokens=self.count_tokens(prompt))
