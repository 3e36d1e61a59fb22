"""The ``openai`` backend: any server that speaks the OpenAI completions API (``/v1/completions``).

llama.cpp's server, llama-cpp-python's server and vLLM all do, but each differs:

- **n**: some servers return one completion whatever ``n`` asks for
  (llama-cpp-python's server drops it). The first answer shows how many
  branches the server really made; the missing ones are then requested
  concurrently with ``n = 1`` each (branch ``i`` with seed ``seed + i``), and
  later calls fan out at once. A stream that ends without a finish reason was
  cut short (llama-cpp-python's server, by default, ends a running stream when
  another request arrives): that branch is continued from its own text, and
  later fan-outs go one request at a time. ``SampleResult.meta`` says what
  happened: ``{"server_n": 1, "fanned_out": true, "requests": 5, "resumed": 1,
  "logprobs": false}``.
- **logprobs**: asked for (``top_logprobs`` alternatives) and used when they
  come back; ``capabilities.logprobs`` reports what the server has sent so far
  (False until a response carried them).
- **token counting**: ``/tokenize`` (llama.cpp, vLLM) or ``/extras/tokenize``
  (llama-cpp-python) when the server has one; otherwise an estimate of one
  token per :data:`CHARS_PER_TOKEN` characters plus one, which errs long.
- **context length**: ``model.context_length`` if set; else what the server
  says (vLLM's ``max_model_len``, llama.cpp's ``/props`` ``n_ctx``); else
  :data:`FALLBACK_CONTEXT`.

Tokens stream through server-sent events into ``on_token``. ``cancel`` closes
the connections at once. Connection errors and 5xx are retried with backoff
before any token has arrived; 4xx are :mod:`ambient.errors` naming the fix.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ambient.errors import AmbientError, ConfigError, InvalidInput, ModelUnavailable
from ambient.sampling.base import (
    MAX_N,
    Capabilities,
    Continuation,
    OnToken,
    Sampler,
    SampleResult,
    SamplingOptions,
    Token,
    TokenAlt,
)
from ambient.sampling.http_client import (
    Cancel,
    Client,
    Endpoint,
    HTTPStatusError,
    ReadTimeout,
    ServerUnreachable,
)

_LOGGER = logging.getLogger(__name__)

CHARS_PER_TOKEN = 3  # estimate when the server cannot count (English prose averages about 4)
FALLBACK_CONTEXT = 2048  # context length when neither config nor server says
MAX_FANOUT_THREADS = 8
MAX_RESUME_PASSES = 3
API_KEY_VARS = ("AMBIENT_MODEL_API_KEY", "OPENAI_API_KEY")


@dataclasses.dataclass
class _Branch:
    """One continuation as it arrives."""

    tokens: list[Token] = dataclasses.field(default_factory=list)
    finish_reason: str | None = None

    @property
    def text(self) -> str:
        return "".join(t.text for t in self.tokens)

    def continuation(self) -> Continuation:
        return Continuation(text=self.text, tokens=self.tokens, finish_reason=self.finish_reason or "length")


@dataclasses.dataclass
class _Call:
    """What one generate() learned about the server."""

    top: int = 0  # logprob alternatives asked for
    requests: int = 0
    resumed: int = 0  # requests that continued a branch whose stream was cut short
    server_n: int | None = None
    logprobs: bool = False
    prompt_tokens: int | None = None
    errors: list[str] = dataclasses.field(default_factory=list)


class OpenAISampler(Sampler):
    """Samples through an OpenAI-compatible completions server; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        context_length: int = 0,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.25,
    ) -> None:
        if not model:
            raise ConfigError(
                "model.name is empty: set it to the model the server serves "
                "(`ambient continue --backend openai --model NAME`, or model.name in ambient.toml)"
            )
        self.endpoint = Endpoint.parse(base_url)
        self.name = model
        self._client = Client(
            self.endpoint, api_key, connect_timeout=connect_timeout, read_timeout=timeout,
            retries=retries, backoff=backoff,
        )
        self._context_override = context_length
        self._context: int | None = None
        self._tokenize_path: str | None = None  # found on first use; "" = the server has none
        self._server_honours_n: bool | None = None
        self._logprobs_seen: bool | None = None
        self._fanout_workers = MAX_FANOUT_THREADS  # 1 once the server is seen to cut concurrent streams
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Any, env: Mapping[str, str] | None = None) -> OpenAISampler:
        m = config.model
        if not m.base_url:
            raise ConfigError(
                "model.base_url is empty: set it to the server's address, e.g. http://127.0.0.1:8080 "
                "(`--base-url URL`, or model.base_url in ambient.toml)"
            )
        env = os.environ if env is None else env
        key = m.api_key or next((env[v] for v in API_KEY_VARS if env.get(v)), "")
        return cls(
            m.base_url, m.name, api_key=key, context_length=m.context_length, timeout=m.timeout,
        )

    def __repr__(self) -> str:
        return f"OpenAISampler(base_url={str(self.endpoint)!r}, model={self.name!r})"

    # ------------------------------------------------------------ capabilities
    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]  # a property: what was seen so far
        """Streams; logprobs only once a response has carried them."""
        return Capabilities(streams=True, logprobs=bool(self._logprobs_seen), max_n=MAX_N)

    @property
    def context_length(self) -> int:
        if self._context_override > 0:
            return self._context_override
        if self._context is None:
            self._context = self._ask_context_length() or FALLBACK_CONTEXT
        return self._context

    def count_tokens(self, text: str) -> int:
        """The server's count where it can tokenize, else an estimate that errs long."""
        if self._tokenize_path != "":
            counted = self._server_count(text)
            if counted is not None:
                return counted
        return estimate_tokens(text)

    # ----------------------------------------------------------------- generate
    def generate(
        self,
        prompt: str,
        options: SamplingOptions,
        on_token: OnToken | None = None,
        cancel: threading.Event | None = None,
    ) -> SampleResult:
        options = options.validate()
        if not prompt:
            raise InvalidInput("the prompt is empty: give some text to continue")
        seed = options.seed if options.seed is not None else secrets.randbits(31)
        branches = [_Branch() for _ in range(options.n)]
        call = _Call(top=options.top_logprobs)
        emit = _locked(on_token)
        t0 = time.perf_counter()
        with Cancel(cancel) as stop:
            self._run(prompt, options, seed, branches, call, emit, stop)
            cancelled = stop.is_set
        if cancelled:
            for b in branches:
                b.finish_reason = b.finish_reason or "cancelled"
        if call.prompt_tokens is None:  # the server did not report usage: count (no round trip if cancelled)
            call.prompt_tokens = estimate_tokens(prompt) if cancelled else self.count_tokens(prompt)
        return self._result(branches, call, options, seed, time.perf_counter() - t0)

    def _run(
        self, prompt: str, options: SamplingOptions, seed: int, branches: list[_Branch], call: _Call,
        emit: OnToken, stop: Cancel,
    ) -> None:
        n = options.n
        if n == 1 or self._server_honours_n is not False:
            call.requests += 1
            seen = self._request(prompt, options, n, seed, 0, branches, call, emit, stop)
            call.server_n = len(seen)
            if n > 1 and not stop.is_set and call.server_n > 0:
                self._server_honours_n = call.server_n >= n
            missing = [i for i in range(n) if i not in seen]
        else:
            call.server_n = 1
            missing = list(range(n))
        if missing and not stop.is_set:
            self._fan_out(prompt, options, seed, missing, branches, call, emit, stop)
        self._resume(prompt, options, seed, branches, call, emit, stop)

    def _resume(
        self, prompt: str, options: SamplingOptions, seed: int, branches: list[_Branch], call: _Call,
        emit: OnToken, stop: Cancel,
    ) -> None:
        """Continue the branches whose stream ended without a finish reason, from where they stopped.

        llama-cpp-python's server (by default) ends a running stream when another request arrives, so
        a concurrent fan-out leaves all but one branch cut short. Such a branch is continued with its
        own text appended to the prompt, one request at a time, and later fan-outs go one at a time.
        """
        for _ in range(MAX_RESUME_PASSES):
            cut = [
                i for i, b in enumerate(branches)
                if b.finish_reason is None and len(b.tokens) < options.max_tokens
            ]
            if not cut or stop.is_set:
                return
            self._fanout_workers = 1
            for i in cut:
                if stop.is_set:
                    return
                b = branches[i]
                rest = dataclasses.replace(options, max_tokens=options.max_tokens - len(b.tokens))
                call.requests += 1
                call.resumed += 1
                try:
                    self._request(prompt + b.text, rest, 1, seed + i, i, branches, call, emit, stop)
                except AmbientError as exc:
                    call.errors.append(str(exc))
                    b.finish_reason = "error"

    def _fan_out(
        self, prompt: str, options: SamplingOptions, seed: int, missing: list[int], branches: list[_Branch],
        call: _Call, emit: OnToken, stop: Cancel,
    ) -> None:
        """One ``n = 1`` request per missing branch, concurrently; branch ``i`` uses ``seed + i``."""
        workers = min(len(missing), self._fanout_workers)
        call.requests += len(missing)
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="ambient-fanout") as pool:
            futures = [
                pool.submit(self._request, prompt, options, 1, seed + i, i, branches, call, emit, stop)
                for i in missing
            ]
            errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed and len(failed) == len(futures) and not any(b.tokens for b in branches):
            raise failed[0]
        for e in failed:
            call.errors.append(str(e))

    def _request(
        self, prompt: str, options: SamplingOptions, n: int, seed: int, first: int, branches: list[_Branch],
        call: _Call, emit: OnToken, stop: Cancel,
    ) -> set[int]:
        """One streamed request; returns the branch indices (choice index + ``first``) it filled."""
        body = self._body(prompt, options, n, seed)
        seen: set[int] = set()
        try:
            with self._client.stream_events("/v1/completions", body, stop) as events:
                for event in events:
                    self._absorb(event, first, branches, call, emit, seen)
                    if stop.is_set:
                        break
        except ServerUnreachable as exc:
            if stop.is_set:
                return seen
            if not seen:
                raise self._unreachable(exc) from exc
            call.errors.append(f"the stream broke: {exc}")
            for i in seen:
                branches[i].finish_reason = branches[i].finish_reason or "error"
        except (ReadTimeout, HTTPStatusError) as exc:
            raise self._translate(exc) from exc
        return seen

    def _body(self, prompt: str, options: SamplingOptions, n: int, seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.name,
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
        return body

    def _absorb(
        self, event: Any, first: int, branches: list[_Branch], call: _Call, emit: OnToken, seen: set[int]
    ) -> None:
        """Apply one streamed chunk (or a whole non-streamed answer) to the branches."""
        if not isinstance(event, dict):
            return
        usage = event.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
            call.prompt_tokens = usage["prompt_tokens"]
        for choice in event.get("choices") or ():
            index = first + int(choice.get("index", 0) or 0)
            if index >= len(branches):
                continue  # a server that sent more than asked for
            seen.add(index)
            branch = branches[index]
            for token in _tokens(choice, call.top):
                if token.logprob is not None:
                    call.logprobs = True
                branch.tokens.append(token)
                emit(index, token)
            reason = choice.get("finish_reason")
            if reason:
                branch.finish_reason = "stop" if reason in ("stop", "eos") else "length"

    def _result(
        self, branches: list[_Branch], call: _Call, options: SamplingOptions, seed: int, wall: float
    ) -> SampleResult:
        if options.top_logprobs > 0 and any(b.tokens for b in branches):
            self._logprobs_seen = call.logprobs
        meta: dict[str, Any] = {
            "backend": "openai",
            "base_url": str(self.endpoint),
            "server_n": call.server_n,
            "fanned_out": call.requests > 1,
            "requests": call.requests,
            "resumed": call.resumed,
            "logprobs": call.logprobs,
            "seed": seed,
            "wall_s": round(wall, 4),
        }
        if call.errors:
            meta["errors"] = call.errors[:4]
        return SampleResult(
            continuations=[b.continuation() for b in branches],
            model=self.name,
            prompt_tokens=call.prompt_tokens or 0,
            meta=meta,
        )

    # ------------------------------------------------------------ errors
    def _unreachable(self, exc: Exception) -> ModelUnavailable:
        return ModelUnavailable(
            f"cannot reach the completions server at {self.endpoint} ({exc}): start it (e.g. "
            "`python -m llama_cpp.server --model FILE.gguf --port 8080`) or fix model.base_url"
        )

    def _translate(self, exc: Exception) -> AmbientError:
        if isinstance(exc, ReadTimeout):
            return ModelUnavailable(
                f"the completions server at {self.endpoint} did not answer in time ({exc}): it may be "
                "overloaded; raise model.timeout (seconds) or ask for fewer tokens"
            )
        assert isinstance(exc, HTTPStatusError)
        return http_error(exc, self.name, str(self.endpoint), self._served_models)

    def _served_models(self) -> list[str]:
        try:
            data = self._client.get_json("/v1/models")
        except Exception:
            return []
        return [str(m.get("id")) for m in (data.get("data") or []) if isinstance(m, dict)]

    # ----------------------------------------------------------- server facts
    def _ask_context_length(self) -> int | None:
        for path, find in (("/v1/models", self._context_from_models), ("/props", _context_from_props)):
            try:
                found = find(self._client.get_json(path))
            except Exception:
                continue
            if found:
                return found
        return None

    def _context_from_models(self, data: Any) -> int | None:
        for m in data.get("data") or ():
            if not isinstance(m, dict) or m.get("id") not in (self.name, None):
                continue
            for key in ("max_model_len", "context_length"):
                if isinstance(m.get(key), int):
                    return int(m[key])
            meta = m.get("meta")
            if isinstance(meta, dict) and isinstance(meta.get("n_ctx"), int):
                return int(meta["n_ctx"])
        return None

    def _server_count(self, text: str) -> int | None:
        paths = [self._tokenize_path] if self._tokenize_path else ["/tokenize", "/extras/tokenize"]
        body = {"model": self.name, "prompt": text, "content": text, "input": text}
        for path in paths:
            assert path is not None
            try:
                data = self._client.post_json(path, body)
            except HTTPStatusError:
                continue
            except (ServerUnreachable, ReadTimeout):
                return None  # say nothing yet: the next generate() gives the clear error
            count = _count_from(data)
            if count is not None:
                with self._lock:
                    self._tokenize_path = path
                return count
        with self._lock:
            self._tokenize_path = ""
        _LOGGER.info("the server at %s cannot tokenize; token counts are estimates", self.endpoint)
        return None


# --------------------------------------------------------------------------- helpers


def estimate_tokens(text: str) -> int:
    """One token per :data:`CHARS_PER_TOKEN` characters, rounded up, plus a begin-of-text marker."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) + 1


def http_error(exc: HTTPStatusError, model: str, where: str, served: Callable[[], list[str]]) -> AmbientError:
    """A 4xx (or a 5xx after retries) as an error that names the fix."""
    said = f"the server at {where} said {exc.status}: {exc.message}"
    if exc.status in (401, 403):
        return ConfigError(
            f"{said}; set the right key in model.api_key or AMBIENT_MODEL_API_KEY (or OPENAI_API_KEY)"
        )
    if exc.status == 404 or ("model" in exc.message.lower() and exc.status < 500):
        names = served()
        hint = f"it serves: {', '.join(names)}" if names else "check the name the server was started with"
        return ConfigError(f"{said}; set model.name (--model) to a model it serves ({hint})")
    if exc.status >= 500:
        return ModelUnavailable(f"{said}; it kept failing after retries: check the server's log")
    return InvalidInput(f"{said}; change the sampling settings it rejected")


def _tokens(choice: dict[str, Any], top: int) -> list[Token]:
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


def _count_from(data: Any) -> int | None:
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("count"), int):
        return int(data["count"])
    tokens = data.get("tokens")
    return len(tokens) if isinstance(tokens, list) else None


def _context_from_props(data: Any) -> int | None:
    settings = data.get("default_generation_settings") if isinstance(data, dict) else None
    for source in (settings, data):
        if isinstance(source, dict) and isinstance(source.get("n_ctx"), int):
            return int(source["n_ctx"])
    return None


def _locked(on_token: OnToken | None) -> OnToken:
    """``on_token`` made safe to call from the fan-out threads (one call at a time)."""
    lock = threading.Lock()

    def emit(branch: int, token: Token) -> None:
        if on_token is not None:
            with lock:
                on_token(branch, token)

    return emit
