"""The one interface every sampling backend implements.

A backend subclasses :class:`Sampler` and implements :meth:`Sampler.generate`,
a *blocking* call that samples ``options.n`` continuations of one prompt,
reports each token as it is made through ``on_token``, and stops early when
its ``cancel`` event is set (:mod:`ambient.pipeline` sets it when a newer event
replaces the one being sampled: latest event wins). The daemon calls it from a
worker thread, so torch never blocks the event loop.

Capabilities say what a backend can do, so callers (and the UI) adapt rather
than guess.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ambient.errors import InvalidInput

MAX_N = 64
MAX_BIAS = 100.0  # a logit bias is within -100..100 (as OpenAI's): -100 bans a word, 100 all but forces it
SIGNALS = frozenset({"entropy", "ease", "attention", "surprise"})  # what a backend may offer per token
REGION_KINDS = ("memory", "source")


@dataclasses.dataclass(frozen=True)
class PromptRegion:
    """Characters ``start:end`` of the prompt are retrieved ``memory`` or the ``source`` being continued."""

    kind: str
    start: int
    end: int

    def validate(self) -> PromptRegion:
        if self.kind not in REGION_KINDS:
            raise InvalidInput(f"a prompt region's kind must be one of {REGION_KINDS}, got {self.kind!r}")
        if not 0 <= self.start <= self.end:
            raise InvalidInput(f"a prompt region needs 0 <= start <= end, got {self.start}..{self.end}")
        return self


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """Settings for one offer. ``validate()`` rejects values no backend can honour."""

    n: int = 4
    max_tokens: int = 48
    temperature: float = 0.9
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    stop: tuple[str, ...] = ()
    seed: int | None = None  # branch i uses seed + i
    top_logprobs: int = 5  # alternatives recorded per token (0 = none)
    signals: bool = False  # per-token signals (see ambient.sampling.signals), where the backend has them
    regions: tuple[PromptRegion, ...] = ()  # which prompt chars are memory / source (for attention, surprise)
    # Added to the logits of these token ids before each draw (the model's own logprobs are reported).
    logit_bias: Mapping[int, float] = dataclasses.field(default_factory=dict)
    personal: bool = True  # a personal adapter in use may write its share of the branches (False: none)

    def validate(self) -> SamplingOptions:
        if not 1 <= self.n <= MAX_N:
            raise InvalidInput(f"n must be between 1 and {MAX_N}, got {self.n}: pass -n 1..{MAX_N}")
        if self.max_tokens < 1 or self.max_tokens > 4096:
            raise InvalidInput(f"max_tokens must be between 1 and 4096, got {self.max_tokens}")
        if self.temperature < 0:
            raise InvalidInput(
                f"temperature must be 0 or more, got {self.temperature}: 0 is greedy, 0.7-1.0 is usual"
            )
        if not 0 < self.top_p <= 1:
            raise InvalidInput(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InvalidInput(f"top_k must be 0 (off) or more, got {self.top_k}")
        if not 0 <= self.top_logprobs <= 20:
            raise InvalidInput(f"top_logprobs must be between 0 and 20, got {self.top_logprobs}")
        if any(not s for s in self.stop):
            raise InvalidInput("stop strings must not be empty")
        for region in self.regions:
            region.validate()
        for token_id, bias in self.logit_bias.items():
            if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id < 0:
                raise InvalidInput(f"logit_bias keys must be token ids (0 or more), got {token_id!r}")
            if not isinstance(bias, int | float) or not math.isfinite(bias) or abs(bias) > MAX_BIAS:
                raise InvalidInput(f"logit_bias values must be within -100..100, got {bias!r} for {token_id}")
        return self

    def as_dict(self) -> dict[str, Any]:
        """The settings as stored with an offer (regions are facts of one prompt: not included)."""
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        del d["regions"]
        if self.logit_bias:
            d["logit_bias"] = {str(k): float(v) for k, v in self.logit_bias.items()}
        else:
            del d["logit_bias"]
        if self.personal:  # recorded only when a document's switch kept the personal adapter out
            del d["personal"]
        return d


@dataclasses.dataclass(frozen=True)
class Capabilities:
    streams: bool = True
    logprobs: bool = True
    max_n: int = MAX_N
    signals: frozenset[str] = frozenset()  # a subset of SIGNALS; the UI hides what is missing
    scores_prompt: bool = False  # Sampler.score_prompt: each prompt token's logprob (an echo with logprobs)
    vocab_size: int = 0  # the model's words (token ids 0..vocab_size-1); 0 = not known


@dataclasses.dataclass(frozen=True)
class TokenAlt:
    text: str
    logprob: float


@dataclasses.dataclass(frozen=True)
class Token:
    """One generated token: its text, its logprob and the top alternatives."""

    text: str
    logprob: float | None = None
    top: tuple[TokenAlt, ...] = ()
    extra: dict[str, Any] | None = None  # per-token signals (entropy, ease, ...)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "logprob": self.logprob}
        if self.top:
            d["top"] = [{"text": a.text, "logprob": a.logprob} for a in self.top]
        if self.extra:
            d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Token:
        extra = {k: v for k, v in d.items() if k not in ("text", "logprob", "top")}
        return cls(
            text=d["text"],
            logprob=d.get("logprob"),
            top=tuple(TokenAlt(a["text"], a["logprob"]) for a in d.get("top", ())),
            extra=extra or None,
        )


@dataclasses.dataclass
class Continuation:
    text: str
    tokens: list[Token]
    finish_reason: str  # "length", "stop", "cancelled", "error"
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # facts of this branch (its adapter)


@dataclasses.dataclass
class SampleResult:
    continuations: list[Continuation]
    model: str
    prompt_tokens: int  # tokens actually fed to the model
    truncated_tokens: int = 0  # tokens cut from the left to fit the context
    truncated_chars: int = 0  # characters of the prompt those tokens covered
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # backend facts


@dataclasses.dataclass
class PromptScore:
    """How likely the model found each token of a prompt, in order (what an echo with logprobs shows).

    ``tokens`` are the prompt's text tokens (never a begin-of-text marker): each one's text (their
    texts join to the prompt exactly), its logprob given the tokens before it (None for a first
    token nothing precedes) and the ``top_logprobs`` words the model found likeliest there.
    ``offsets[i]`` is where token i's text begins in the prompt.
    """

    tokens: list[Token]
    offsets: list[int]


OnToken = Callable[[int, Token], None]


class Cancelled(Exception):
    """Sampling was cancelled (a newer event replaced this one)."""


class Sampler(abc.ABC):
    """A backend that branches a prompt into N continuations."""

    name: str = "sampler"
    capabilities: Capabilities = Capabilities()

    @property
    @abc.abstractmethod
    def context_length(self) -> int:
        """Most tokens (prompt + new) the model can attend to."""

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes with this model's own tokenizer."""

    @abc.abstractmethod
    def generate(
        self,
        prompt: str,
        options: SamplingOptions,
        on_token: OnToken | None = None,
        cancel: threading.Event | None = None,
    ) -> SampleResult:
        """Blocking: sample ``options.n`` continuations of ``prompt``.

        Calls ``on_token(branch, token)`` from the calling thread as each token
        is made. When ``cancel`` is set, stops at the next step and returns what
        exists with ``finish_reason="cancelled"``.
        """

    def score_prompt(self, prompt: str, top_logprobs: int = 0) -> PromptScore:
        """Blocking: each token of ``prompt``, its logprob given what precedes it, and the likeliest words.

        Backends that can say so set ``capabilities.scores_prompt``.
        """
        raise InvalidInput(
            f"the {self.name} backend cannot score a prompt's own tokens (an echo with logprobs): "
            'use the local backend (model.backend = "local"), or ask without echo or logprobs'
        )

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model's memory."""
