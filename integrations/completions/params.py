"""A ``POST /v1/completions`` body, checked: what ambient honours, accepts as neutral, or refuses.

Honoured: ``model`` (any name: the configured model answers), ``prompt`` (a string or a list of
strings), ``n``, ``max_tokens`` (0 only with ``echo``: the prompt scored, nothing sampled),
``temperature``, ``top_p``, ``top_k`` (not OpenAI's; vLLM's and llama.cpp's), ``seed`` (a negative
one means none, as llama.cpp's and SillyTavern's -1), ``stop`` (a string, a list or null),
``logprobs``, ``echo``, ``logit_bias``, ``stream``, ``stream_options.include_usage``, ``user``.
Omitted values are OpenAI's defaults (n 1, max_tokens 16, temperature 1, top_p 1).

Accepted only at values that change nothing (:data:`NEUTRAL`): penalties 0, ``best_of`` 1 or n,
an empty ``suffix``, and the neutral settings of the samplers other servers add. Anything else
is refused with a 400 naming the parameter: a request is answered as asked, or not at all.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from ambient.config import MAX_TEMPERATURE, MAX_TOKENS, MAX_TOP_LOGPROBS, SamplingSection
from ambient.offers import Overrides
from ambient.sampling.base import MAX_BIAS, MAX_N
from integrations.completions.errors import OpenAIError, bad_param

MAX_PROMPTS = 16  # prompts in one request (each is its own offer, sampled one after another)
MAX_STOPS = 16
MAX_STOP_CHARS = 1000
MAX_USER_CHARS = 256
DEFAULTS = {"n": 1, "max_tokens": 16, "temperature": 1.0, "top_p": 1.0}  # OpenAI's, when omitted


@dataclasses.dataclass(frozen=True)
class CompletionRequest:
    """What one request asks for, checked."""

    model: str
    prompts: tuple[str, ...]
    n: int = 1
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # alternatives per token in the answer (None: no logprobs at all)
    echo: bool = False
    logit_bias: Mapping[int, float] = dataclasses.field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    user: str = ""

    @property
    def samples(self) -> bool:
        """Whether anything is sampled (``max_tokens`` 0 with ``echo`` only scores the prompt)."""
        return self.max_tokens > 0

    def overrides(self, section: SamplingSection) -> Overrides:
        """The sampling settings of each offer: exactly what was asked; alternatives kept as configured
        too (the UI shows them), and signals as configured (they change no text)."""
        return Overrides(
            n=self.n,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            top_p=self.top_p,
            top_k=self.top_k,
            seed=self.seed,
            stop=self.stop,
            top_logprobs=max(self.logprobs or 0, section.top_logprobs),
            logit_bias=dict(self.logit_bias),
            oversample=0,
        )


def parse(body: Any, vocab_size: int = 0) -> CompletionRequest:
    """``body`` (the JSON) as a :class:`CompletionRequest`, or an :class:`OpenAIError` naming the field."""
    if not isinstance(body, dict):
        raise OpenAIError('the body must be a JSON object, e.g. {"model": "davinci", "prompt": "Once"}')
    unknown = [k for k in body if k not in FIELDS and k not in NEUTRAL]
    if unknown:
        raise OpenAIError(
            f"Unrecognized request argument supplied: {unknown[0]} (ambient's /v1/completions takes "
            f"{', '.join(FIELDS)}; and {', '.join(NEUTRAL)} at values that change nothing)",
            param=unknown[0],
            code="unknown_parameter",
        )
    values: dict[str, Any] = {}
    for name, read in FIELDS.items():
        if body.get(name) is not None:
            values["prompts" if name == "prompt" else name] = read(body[name])
    if "model" not in values:
        raise bad_param("model", "you must provide a model parameter (any name: ambient's model answers)")
    if "prompts" not in values:
        raise bad_param("prompt", "you must provide a prompt: the text to continue")
    stream_options = values.pop("stream_options", {})
    values["include_usage"] = bool(stream_options.get("include_usage", False))
    if stream_options and not values.get("stream"):
        raise bad_param("stream_options", "stream_options is only allowed with stream: true")
    request = CompletionRequest(**{**DEFAULTS, **values})
    for name, neutral in NEUTRAL.items():
        if name in body and not neutral(body[name], request):
            raise bad_param(
                name,
                f"{name} = {json.dumps(body[name])[:60]} is not supported: ambient samples the model "
                "as it is (send it at its neutral value, or leave it out)",
                code="unsupported_parameter",
            )
    _check_together(request, vocab_size)
    return request


def _check_together(request: CompletionRequest, vocab_size: int) -> None:
    if request.max_tokens == 0 and not request.echo:
        raise bad_param("max_tokens", "max_tokens must be at least 1 (0 only with echo: the prompt scored)")
    if vocab_size and any(i >= vocab_size for i in request.logit_bias):
        wrong = next(i for i in request.logit_bias if i >= vocab_size)
        raise bad_param(
            "logit_bias",
            f"logit_bias names token {wrong}, but this model's tokens are 0..{vocab_size - 1}: "
            "use ids of ambient's model's tokenizer, not GPT's",
        )


# ------------------------------------------------------------------ readers, one per field
def _integer(name: str, lo: int, hi: int) -> Callable[[Any], int]:
    def read(value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise bad_param(
                name, f"{name} must be an integer from {lo} to {hi}, got {json.dumps(value)[:40]}"
            )
        return value

    return read


def _number(name: str, lo: float, hi: float, *, above: bool = False) -> Callable[[Any], float]:
    def read(value: Any) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value > hi or value < lo or (above and value == lo):
            span = f"above {lo:g} and at most {hi:g}" if above else f"from {lo:g} to {hi:g}"
            raise bad_param(name, f"{name} must be a number {span}, got {json.dumps(value)[:40]}")
        return float(value)

    return read


def _model(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad_param("model", "model must be a model name (any name: ambient's model answers)")
    return value


def _prompts(value: Any) -> tuple[str, ...]:
    prompts = [value] if isinstance(value, str) else value
    if not isinstance(prompts, list) or not prompts:
        raise bad_param("prompt", "prompt must be a string or a list of strings")
    if all(isinstance(p, int) and not isinstance(p, bool) for p in prompts) or all(
        isinstance(p, list) for p in prompts
    ):
        raise bad_param(
            "prompt", "prompts of token ids are not supported: send the text", code="unsupported_value"
        )
    if len(prompts) > MAX_PROMPTS:
        raise bad_param("prompt", f"at most {MAX_PROMPTS} prompts in one request, got {len(prompts)}")
    for p in prompts:
        if not isinstance(p, str):
            raise bad_param("prompt", "prompt must be a string or a list of strings")
        if not p:
            raise bad_param("prompt", "a prompt is empty: send some text to continue")
    return tuple(prompts)


def _seed(value: Any) -> int | None:
    seed = _integer("seed", -(2**63), 2**63 - 1)(value)
    return None if seed < 0 else seed % 2**62  # negative: no seed (-1 in llama.cpp and SillyTavern)


def _stop(value: Any) -> tuple[str, ...]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad_param("stop", "stop must be a string, a list of strings or null")
    if len(stops) > MAX_STOPS:
        raise bad_param("stop", f"at most {MAX_STOPS} stop strings, got {len(stops)}")
    if any(not s or len(s) > MAX_STOP_CHARS for s in stops):
        raise bad_param("stop", f"each stop string must have 1 to {MAX_STOP_CHARS} characters")
    return tuple(dict.fromkeys(stops))


def _logit_bias(value: Any) -> dict[int, float]:
    if not isinstance(value, dict):
        raise bad_param(
            "logit_bias", 'logit_bias must be an object of token ids to biases, e.g. {"50256": -100}'
        )
    out: dict[int, float] = {}
    for key, bias in value.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) < 10):
            raise bad_param("logit_bias", f"logit_bias keys must be token ids (0 or more), got {key!r}")
        out[int(key)] = _number("logit_bias", -MAX_BIAS, MAX_BIAS)(bias)
    return out


def _logprobs(value: Any) -> int:
    return _integer("logprobs", 0, MAX_TOP_LOGPROBS)(value)


def _flag(name: str) -> Callable[[Any], bool]:
    def read(value: Any) -> bool:
        if not isinstance(value, bool):
            raise bad_param(name, f"{name} must be true or false, got {json.dumps(value)[:40]}")
        return value

    return read


def _stream_options(value: Any) -> dict[str, Any]:
    known = {"include_usage", "include_obfuscation"}
    if not isinstance(value, dict) or not set(value) <= known:
        raise bad_param("stream_options", 'stream_options must be an object such as {"include_usage": true}')
    for name in value:
        _flag(f"stream_options.{name}")(value[name])
    return value


def _user(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_USER_CHARS:
        raise bad_param("user", f"user must be a string of at most {MAX_USER_CHARS} characters")
    return value


def _top_k(value: Any) -> int:
    k = _integer("top_k", -1, 1_000_000)(value)
    return max(k, 0)  # -1 (vLLM) and 0 (llama.cpp) both mean off


# Each request field and its reader ("prompt" fills CompletionRequest.prompts).
FIELDS: dict[str, Callable[[Any], Any]] = {
    "model": _model,
    "prompt": _prompts,
    "n": _integer("n", 1, MAX_N),
    "max_tokens": _integer("max_tokens", 0, MAX_TOKENS),
    "temperature": _number("temperature", 0, MAX_TEMPERATURE),
    "top_p": _number("top_p", 0, 1, above=True),
    "top_k": _top_k,
    "seed": _seed,
    "stop": _stop,
    "logprobs": _logprobs,
    "echo": _flag("echo"),
    "logit_bias": _logit_bias,
    "stream": _flag("stream"),
    "stream_options": _stream_options,
    "user": _user,
}


def _is(*values: Any) -> Callable[[Any, CompletionRequest], bool]:
    return lambda value, request: value is None or any(value == v and type(value) is not bool for v in values)


# Parameters accepted only at a value that changes nothing; anything else is refused, naming it.
NEUTRAL: dict[str, Callable[[Any, CompletionRequest], bool]] = {
    "frequency_penalty": _is(0),
    "presence_penalty": _is(0),
    "best_of": lambda value, request: value is None or (type(value) is int and value in (1, request.n)),
    "suffix": lambda value, request: value is None or value == "",
    "repetition_penalty": _is(1),
    "repeat_penalty": _is(1),
    "min_p": _is(0),
    "typical_p": _is(1),
    "tfs_z": _is(1),
    "top_a": _is(0),
    "min_tokens": _is(0),
    "mirostat": _is(0),
    "ignore_eos": lambda value, request: value is None or value is False,
}
