"""The OpenAI completions wire format, pure functions over JSON: what the ``openai`` backend sends and reads.

- the request: the streamed ``/v1/completions`` body (:func:`completion_body`);
- the streamed chunks: each choice's index, tokens (split per logprob entry
  when the server sent logprobs that agree with the text) and finish reason,
  and the prompt's token count from ``usage``;
- the server's other answers: ``/tokenize`` counts, served model names
  (``/v1/models``), context length (``/v1/models`` or llama.cpp's ``/props``);
- its failures as :mod:`ambient.errors` that name the fix (:func:`http_error`,
  :func:`unreachable_error`, :func:`timeout_error`).

The sampler that drives requests with these is :mod:`ambient.sampling.openai`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ambient.errors import AmbientError, ConfigError, InvalidInput, ModelUnavailable
from ambient.sampling.base import SamplingOptions, Token, TokenAlt
from ambient.sampling.http_client import HTTPStatusError

COMPLETIONS_PATH = "/v1/completions"
MODELS_PATH = "/v1/models"
PROPS_PATH = "/props"  # llama.cpp's server settings
TOKENIZE_PATHS = ("/tokenize", "/extras/tokenize")  # llama.cpp and vLLM; llama-cpp-python


# --------------------------------------------------------------------------- request


def completion_body(model: str, prompt: str, options: SamplingOptions, n: int, seed: int) -> dict[str, Any]:
    """The body of one streamed completions request for ``n`` continuations."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "n": n,
        "max_tokens": options.max_tokens,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "seed": seed,
        "stream": True,
    }
    if options.stop:
        body["stop"] = list(options.stop)
    if options.top_k > 0:
        body["top_k"] = options.top_k  # not OpenAI's, but llama.cpp and vLLM accept it
    if options.top_logprobs > 0:
        body["logprobs"] = options.top_logprobs
    if options.logit_bias:
        body["logit_bias"] = {str(k): v for k, v in options.logit_bias.items()}  # the server's token ids
    return body


def tokenize_body(model: str, text: str) -> dict[str, Any]:
    """One body every known tokenize endpoint understands (each reads the field it knows)."""
    return {"model": model, "prompt": text, "content": text, "input": text}


# --------------------------------------------------------------------------- streamed chunks


def prompt_tokens(event: dict[str, Any]) -> int | None:
    """The prompt's length in tokens, where the chunk carries ``usage``."""
    usage = event.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        return int(usage["prompt_tokens"])
    return None


def choice_index(choice: dict[str, Any]) -> int:
    """Which of the request's ``n`` continuations the choice belongs to."""
    return int(choice.get("index", 0) or 0)


def finish_reason(choice: dict[str, Any]) -> str | None:
    """``"stop"`` or ``"length"`` once the choice says it finished; None while it runs."""
    reason = choice.get("finish_reason")
    if not reason:
        return None
    return "stop" if reason in ("stop", "eos") else "length"


def choice_tokens(choice: dict[str, Any], top: int) -> list[Token]:
    """The tokens in one streamed choice: per logprob entry when given and consistent, else one chunk.

    At most ``top`` alternatives are kept: llama-cpp-python adds the chosen token when it is not among them.
    """
    text = choice.get("text") or ""
    lp = choice.get("logprobs")
    if isinstance(lp, dict) and lp.get("tokens"):
        toks = [str(t) for t in lp["tokens"]]
        values = list(lp.get("token_logprobs") or [None] * len(toks))
        tops = list(lp.get("top_logprobs") or [])
        tops += [None] * (len(toks) - len(tops))
        if "".join(toks) == text and len(values) == len(toks):
            return [_token(t, v, alts, top) for t, v, alts in zip(toks, values, tops, strict=False)]
        if len(toks) == 1 and len(values) == 1:
            return [_token(text, values[0], tops[0], top)]
    return [Token(text=text)] if text else []


def _token(text: str, logprob: Any, top: Any, limit: int) -> Token:
    alts: tuple[TokenAlt, ...] = ()
    if isinstance(top, dict):
        pairs = sorted(((str(k), float(v)) for k, v in top.items() if v is not None), key=lambda p: -p[1])
        alts = tuple(TokenAlt(k, v) for k, v in pairs[:limit])
    value = float(logprob) if isinstance(logprob, int | float) and math.isfinite(logprob) else None
    return Token(text=text, logprob=value, top=alts)


# --------------------------------------------------------------------------- other answers


def count_from(data: Any) -> int | None:
    """The token count in a tokenize answer (``count``, or the length of ``tokens``)."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("count"), int):
        return int(data["count"])
    tokens = data.get("tokens")
    return len(tokens) if isinstance(tokens, list) else None


def served_models(data: Any) -> list[str]:
    """The model names in a ``/v1/models`` answer (vLLM lists its LoRA modules there too)."""
    listed = data.get("data") if isinstance(data, dict) else None
    return [str(m.get("id")) for m in listed or () if isinstance(m, dict) and m.get("id")]


def context_from_models(data: Any, model: str) -> int | None:
    """``model``'s context length in a ``/v1/models`` answer (vLLM's ``max_model_len``, or ``meta.n_ctx``)."""
    for m in data.get("data") or ():
        if not isinstance(m, dict) or m.get("id") not in (model, None):
            continue
        for key in ("max_model_len", "context_length"):
            if isinstance(m.get(key), int):
                return int(m[key])
        meta = m.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("n_ctx"), int):
            return int(meta["n_ctx"])
    return None


def context_from_props(data: Any) -> int | None:
    """The context length in llama.cpp's ``/props`` answer."""
    settings = data.get("default_generation_settings") if isinstance(data, dict) else None
    for source in (settings, data):
        if isinstance(source, dict) and isinstance(source.get("n_ctx"), int):
            return int(source["n_ctx"])
    return None


# --------------------------------------------------------------------------- failures


def unreachable_error(where: str, exc: Exception) -> ModelUnavailable:
    """No connection to the server at ``where``."""
    return ModelUnavailable(
        f"cannot reach the completions server at {where} ({exc}): start it (e.g. "
        "`python -m llama_cpp.server --model FILE.gguf --port 8080`) or fix model.base_url"
    )


def timeout_error(where: str, exc: Exception) -> ModelUnavailable:
    """The server at ``where`` stopped answering mid-request."""
    return ModelUnavailable(
        f"the completions server at {where} did not answer in time ({exc}): it may be "
        "overloaded; raise model.timeout (seconds) or ask for fewer tokens"
    )


def http_error(
    exc: HTTPStatusError,
    model: str,
    where: str,
    served: Callable[[], list[str]],
    setting: str = "model.name (--model)",
) -> AmbientError:
    """A 4xx (or a 5xx after retries) as an error that names the fix (``setting``: where ``model`` is set)."""
    said = f"the server at {where} said {exc.status}: {exc.message}"
    if exc.status in (401, 403):
        return ConfigError(
            f"{said}; set the right key in model.api_key or AMBIENT_MODEL_API_KEY (or OPENAI_API_KEY)"
        )
    if exc.status == 404 or ("model" in exc.message.lower() and exc.status < 500):
        names = served()
        hint = f"it serves: {', '.join(names)}" if names else "check the name the server was started with"
        return ConfigError(f"{said}; set {setting} to a model it serves ({hint})")
    if exc.status >= 500:
        return ModelUnavailable(f"{said}; it kept failing after retries: check the server's log")
    return InvalidInput(f"{said}; change the sampling settings it rejected")
