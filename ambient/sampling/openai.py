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

This module is the sampler: requests, fan-out, resuming cut streams, cancel,
the result. The JSON it sends and reads (request body, streamed chunks and
their logprobs, errors) is :mod:`ambient.sampling.openai_wire`; token counts
and context length come from :mod:`ambient.sampling.openai_server`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

from ambient.errors import AmbientError, ConfigError, InvalidInput, ModelUnavailable
from ambient.sampling import openai_wire as wire
from ambient.sampling.base import (
    MAX_N,
    Capabilities,
    Continuation,
    OnToken,
    Sampler,
    SampleResult,
    SamplingOptions,
    Token,
)
from ambient.sampling.http_client import (
    Cancel,
    Client,
    Endpoint,
    HTTPStatusError,
    ReadTimeout,
    ServerUnreachable,
)
from ambient.sampling.openai_server import CHARS_PER_TOKEN, FALLBACK_CONTEXT, ServerFacts, estimate_tokens
from ambient.sampling.openai_wire import http_error

__all__ = [
    "API_KEY_VARS",
    "CHARS_PER_TOKEN",
    "FALLBACK_CONTEXT",
    "OpenAISampler",
    "estimate_tokens",
    "http_error",
]

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
        self._server = ServerFacts(self._client, self.endpoint, model, context_length)
        self._server_honours_n: bool | None = None
        self._logprobs_seen: bool | None = None
        self._fanout_workers = MAX_FANOUT_THREADS  # 1 once the server is seen to cut concurrent streams

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
        """``model.context_length`` if set, else what the server says, else :data:`FALLBACK_CONTEXT`."""
        return self._server.context_length()

    def count_tokens(self, text: str) -> int:
        """The server's count where it can tokenize, else an estimate that errs long."""
        return self._server.count_tokens(text)

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
        body = wire.completion_body(self.name, prompt, options, n, seed)
        seen: set[int] = set()
        try:
            with self._client.stream_events(wire.COMPLETIONS_PATH, body, stop) as events:
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

    def _absorb(
        self, event: Any, first: int, branches: list[_Branch], call: _Call, emit: OnToken, seen: set[int]
    ) -> None:
        """Apply one streamed chunk (or a whole non-streamed answer) to the branches."""
        if not isinstance(event, dict):
            return
        counted = wire.prompt_tokens(event)
        if counted is not None:
            call.prompt_tokens = counted
        for choice in event.get("choices") or ():
            index = first + wire.choice_index(choice)
            if index >= len(branches):
                continue  # a server that sent more than asked for
            seen.add(index)
            branch = branches[index]
            for token in wire.choice_tokens(choice, call.top):
                if token.logprob is not None:
                    call.logprobs = True
                branch.tokens.append(token)
                emit(index, token)
            reason = wire.finish_reason(choice)
            if reason:
                branch.finish_reason = reason

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
        return wire.unreachable_error(str(self.endpoint), exc)

    def _translate(self, exc: Exception) -> AmbientError:
        if isinstance(exc, ReadTimeout):
            return wire.timeout_error(str(self.endpoint), exc)
        assert isinstance(exc, HTTPStatusError)
        return http_error(exc, self.name, str(self.endpoint), self._server.served_models)


def _locked(on_token: OnToken | None) -> OnToken:
    """``on_token`` made safe to call from the fan-out threads (one call at a time)."""
    lock = threading.Lock()

    def emit(branch: int, token: Token) -> None:
        if on_token is not None:
            with lock:
                on_token(branch, token)

    return emit
