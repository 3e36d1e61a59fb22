"""OpenAI's legacy completions answers, built from ambient's tokens: whole, or as server-sent events.

A choice's ``logprobs`` is the legacy shape: ``tokens``, ``token_logprobs``, ``top_logprobs``
(the requested number of likeliest words per token, as a word -> logprob object, plus the chosen
word when it is not among them, as OpenAI's do) and ``text_offset`` (where each token begins,
counted from the start of the prompt). With ``echo`` the prompt's own tokens come first; the
first of them has no logprob when nothing precedes it. ``usage.prompt_tokens`` counts the
prompt's tokens (with ``echo`` and ``logprobs``, exactly the echoed ones: clients slice on it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from ambient.sampling.base import PromptScore, Token

FINISH_REASONS = {"stop": "stop", "length": "length"}  # cancelled (shutdown) reads as length


class Logprobs:
    """One choice's logprobs in the legacy shape, grown token by token."""

    def __init__(self, top: int, start: int = 0) -> None:
        self.top = top
        self.at = start  # the text offset of the next token
        self.tokens: list[str] = []
        self.token_logprobs: list[float | None] = []
        self.top_logprobs: list[dict[str, float] | None] = []
        self.text_offset: list[int] = []

    def add(self, token: Token, *, scored: bool = True) -> None:
        self.tokens.append(token.text)
        self.token_logprobs.append(token.logprob)
        self.top_logprobs.append(top_words(token, self.top) if scored and token.logprob is not None else None)
        self.text_offset.append(self.at)
        self.at += len(token.text)

    def extend(self, tokens: Iterable[Token]) -> Logprobs:
        for token in tokens:
            self.add(token)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        }


def top_words(token: Token, k: int) -> dict[str, float]:
    """The ``k`` likeliest words at this token (the same word from two ids: its best), and the chosen one."""
    words: dict[str, float] = {}
    for alt in token.top[:k]:
        if alt.text not in words or alt.logprob > words[alt.text]:
            words[alt.text] = alt.logprob
    if token.logprob is not None and token.text not in words:
        words[token.text] = token.logprob
    return words


def echo_logprobs(score: PromptScore | None, top: int) -> Logprobs:
    """The prompt's tokens as the start of a choice's logprobs."""
    out = Logprobs(top)
    for token in score.tokens if score is not None else ():
        out.add(token)
    return out


def choice(
    index: int,
    text: str,
    finish_reason: str | None,
    logprobs: Logprobs | None,
) -> dict[str, Any]:
    return {
        "index": index,
        "text": text,
        "logprobs": logprobs.as_dict() if logprobs is not None else None,
        "finish_reason": FINISH_REASONS.get(finish_reason or "", "length") if finish_reason else None,
    }


def completion(
    request_id: str,
    created: int,
    model: str,
    choices: Sequence[dict[str, Any]],
    usage: dict[str, int] | None,
) -> dict[str, Any]:
    """A whole answer, or (``usage`` None and choices partial) one streamed chunk."""
    body: dict[str, Any] = {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": list(choices),
    }
    if usage is not None:
        body["usage"] = usage
    return body


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def event(data: dict[str, Any] | str) -> bytes:
    """One server-sent event: ``data: JSON`` and a blank line (``data: [DONE]`` ends the stream)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


DONE = event("[DONE]")


def models(model: str, aliases: Sequence[str], created: int) -> dict[str, Any]:
    """``GET /v1/models``: the configured model, then each alias (every name answers with it)."""
    entry = {"id": model, "object": "model", "created": created, "owned_by": "ambient"}
    data = [entry] + [{**entry, "id": alias, "root": model} for alias in aliases if alias != model]
    return {"object": "list", "data": data}
