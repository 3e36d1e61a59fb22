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

A **personal adapter** is served by name: ``model.adapter = NAME`` with a
server that lists NAME in ``/v1/models`` (vLLM with ``--enable-lora
--lora-modules NAME=FOLDER``) writes :attr:`OpenAISampler.adapter_share` of
each offer's branches, spread out as the local sampler spreads them: those
branches are requested with ``model = NAME``, the rest with ``model.name``,
each group with the fan-out and resuming above, branch ``i`` always with seed
``seed + i``. Each branch says who wrote it (``Continuation.meta["adapter"]``:
NAME or ``"none"``; ``SampleResult.meta["adapter"]``: the name and the
branches). The server is asked once, on a thread at start (and again at an
offer while it could not be reached). A name it does not list is refused:
:attr:`OpenAISampler.adapter_problem` says so in one line with the fix, and the
base model writes every branch (llama-cpp-python's server would otherwise
quietly answer an unknown name with its default model). ``model.adapter =
"personal"`` is refused while the home has an active adapter: a server cannot
read ambient's adapter files. ``SamplingOptions.personal = False`` (a
document's switch) keeps the adapter out of that offer.

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
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ambient import adapters
from ambient.config import adapter_backend_problem
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
from ambient.sampling.openai_server import (
    CHARS_PER_TOKEN,
    FALLBACK_CONTEXT,
    ServedAdapter,
    ServerFacts,
    adapter_refusal,
    estimate_tokens,
    personal_refusal,
)
from ambient.sampling.openai_wire import http_error

__all__ = [
    "API_KEY_VARS",
    "CHARS_PER_TOKEN",
    "FALLBACK_CONTEXT",
    "OpenAISampler",
    "ServedAdapter",
    "estimate_tokens",
    "http_error",
    "personal_rows",
]

_LOGGER = logging.getLogger(__name__)

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


@dataclasses.dataclass(frozen=True)
class _Group:
    """The branches one model name writes (the base model's, or the adapter's), by their positions."""

    model: str
    rows: tuple[int, ...]
    setting: str = "model.name (--model)"  # where that name is set, for an error


def personal_rows(n: int, share: float) -> list[bool]:
    """Which of ``n`` branches the adapter writes: ``share`` of them, spread out (as the local sampler)."""
    return [int((i + 1) * share + 1e-9) > int(i * share + 1e-9) for i in range(n)]


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

    def add(self, other: _Call) -> None:
        """Take in what another group's requests learnt."""
        self.requests += other.requests
        self.resumed += other.resumed
        if other.server_n is not None:
            self.server_n = max(self.server_n or 0, other.server_n)
        self.logprobs = self.logprobs or other.logprobs
        if self.prompt_tokens is None:
            self.prompt_tokens = other.prompt_tokens
        self.errors += other.errors


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
        adapter: str = adapters.NONE,
        adapter_share: float = 0.5,
        home: Path | None = None,
    ) -> None:
        problem = adapter_backend_problem(adapter, "openai")
        if problem:
            raise ConfigError(problem)
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
        # the personal adapter: read by /api/status (ambient.daemon) as the local sampler's are
        self.adapter: ServedAdapter | None = None  # the one in use: the server serves it by name
        self.adapter_share = adapter_share  # the share of each offer's branches it writes
        self.adapter_problem: str | None = None  # why the adapter asked for is not in use (one line)
        self._wanted = adapter  # "none", "personal" (the home's active one) or a name the server serves
        self._home = home
        self._adapter_lock = threading.Lock()
        self._adapter_asked = False  # the server has answered whether it serves the named adapter
        if adapter == adapters.PERSONAL:
            self.check_adapter()  # a file of the home: no server asked
        elif adapter != adapters.NONE:  # ask the server now, without holding up whoever builds the sampler
            threading.Thread(target=self._check_quietly, name="ambient-adapter-check", daemon=True).start()

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
            adapter=m.adapter, adapter_share=m.adapter_share, home=Path(config.home),
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

    # ----------------------------------------------------------------- adapter
    def check_adapter(self) -> ServedAdapter | None:
        """The adapter the personal branches use now, settling it first: the server is asked once whether
        it serves ``model.adapter`` (again later while it cannot be reached); with ``"personal"`` the
        home's active adapter is looked up each time (``ambient tune`` may have made one)."""
        with self._adapter_lock:
            if self._wanted == adapters.PERSONAL:
                self._refuse(self._personal_problem())
            elif self._wanted != adapters.NONE and not self._adapter_asked:
                listed = self._server.listed_models()
                if listed is not None:  # None: not reachable now; the offer itself will say so
                    self._adapter_asked = True
                    problem = adapter_refusal(self._wanted, str(self.endpoint), listed)
                    self.adapter = None if problem else ServedAdapter(self._wanted)
                    self._refuse(problem)
            return self.adapter

    def _personal_problem(self) -> str | None:
        """Why the home's active adapter is not used with ``model.adapter = "personal"`` (None: none is)."""
        active = adapters.active_name(self._home) if self._home is not None else None
        if self._home is None or active is None:
            return None
        return personal_refusal(active, str(adapters.folder(self._home) / active), str(self.endpoint))

    def _refuse(self, problem: str | None) -> None:
        if problem and problem != self.adapter_problem:
            _LOGGER.warning("%s", problem)
        self.adapter_problem = problem

    def _check_quietly(self) -> None:
        try:
            self.check_adapter()
        except Exception:  # pragma: no cover - asked again at the first offer, which reports errors
            _LOGGER.debug("checking the adapter at start failed", exc_info=True)

    def _groups(self, n: int, personal: bool) -> tuple[ServedAdapter | None, list[bool], list[_Group]]:
        """The adapter in use, which branches it writes, and the branches per model name."""
        adapter = self.check_adapter()
        rows = personal_rows(n, self.adapter_share if adapter is not None and personal else 0.0)
        groups = [_Group(self.name, tuple(i for i, p in enumerate(rows) if not p))]
        if adapter is not None:
            groups.append(_Group(adapter.name, tuple(i for i, p in enumerate(rows) if p), "model.adapter"))
        return adapter, rows, [g for g in groups if g.rows]

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
        adapter, personal, groups = self._groups(options.n, options.personal)
        branches = [_Branch() for _ in range(options.n)]
        emit = _locked(on_token)
        t0 = time.perf_counter()
        with Cancel(cancel) as stop:
            call = self._run_groups(prompt, options, seed, groups, branches, emit, stop)
            cancelled = stop.is_set
        if cancelled:
            for b in branches:
                b.finish_reason = b.finish_reason or "cancelled"
        if call.prompt_tokens is None:  # the server did not report usage: count (no round trip if cancelled)
            call.prompt_tokens = estimate_tokens(prompt) if cancelled else self.count_tokens(prompt)
        result = self._result(branches, call, options, seed, time.perf_counter() - t0)
        if adapter is not None:  # each branch says who wrote it: the base model or the adapter
            written = [i for i, p in enumerate(personal) if p]
            result.meta["adapter"] = {"name": adapter.name, "branches": written}
            for c, p in zip(result.continuations, personal, strict=True):
                c.meta["adapter"] = adapter.name if p else adapters.NONE
        return result

    def _run_groups(
        self, prompt: str, options: SamplingOptions, seed: int, groups: list[_Group], branches: list[_Branch],
        emit: OnToken, stop: Cancel,
    ) -> _Call:
        """Each model's branches (base, adapter): first requested at once (one after the other once the
        server is seen to cut concurrent streams), then cut streams resumed one group after the other.
        A group that fails leaves its branches as errors while another group wrote."""
        calls = [_Call(top=options.top_logprobs) for _ in groups]
        if len(groups) == 1:
            self._start(prompt, options, seed, groups[0], branches, calls[0], emit, stop)
            self._resume(prompt, options, seed, groups[0], branches, calls[0], emit, stop)
            return calls[0]

        def start(pair: tuple[_Group, _Call]) -> AmbientError | None:
            return self._guarded(self._start, prompt, options, seed, pair[0], branches, pair[1], emit, stop)

        pairs = list(zip(groups, calls, strict=True))
        if self._fanout_workers == 1:
            outcomes = [start(pair) for pair in pairs]
        else:
            with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="ambient-models") as pool:
                outcomes = list(pool.map(start, pairs))
        failed = [exc for exc in outcomes if exc is not None]
        if len(failed) == len(groups) and not any(b.tokens for b in branches):
            raise failed[0]
        for (group, call), outcome in zip(pairs, outcomes, strict=True):
            if outcome is None:  # one group after the other: a server that cuts streams would cut these too
                self._guarded(self._resume, prompt, options, seed, group, branches, call, emit, stop)
        total = _Call(top=options.top_logprobs)
        for call in calls:
            total.add(call)
        return total

    @staticmethod
    def _guarded(
        step: Callable[..., None], prompt: str, options: SamplingOptions, seed: int, group: _Group,
        branches: list[_Branch], call: _Call, emit: OnToken, stop: Cancel,
    ) -> AmbientError | None:
        """``step`` for one group; its error, if any, is returned, the group's branches marked as errors."""
        try:
            step(prompt, options, seed, group, branches, call, emit, stop)
        except AmbientError as exc:
            call.errors.append(str(exc))
            for i in group.rows:
                branches[i].finish_reason = branches[i].finish_reason or "error"
            return exc
        return None

    def _start(
        self, prompt: str, options: SamplingOptions, seed: int, group: _Group, branches: list[_Branch],
        call: _Call, emit: OnToken, stop: Cancel,
    ) -> None:
        """One model's branches: one request for all of them, then the ones it did not make fanned out."""
        rows = list(group.rows)
        n = len(rows)
        if n == 1 or self._server_honours_n is not False:
            call.requests += 1
            seen = self._request(prompt, group, options, n, seed + rows[0], rows, branches, call, emit, stop)
            call.server_n = max(call.server_n or 0, len(seen))
            if n > 1 and not stop.is_set and seen:
                self._server_honours_n = len(seen) >= n
            missing = [i for i in rows if i not in seen]
        else:
            call.server_n = 1
            missing = rows
        if missing and not stop.is_set:
            self._fan_out(prompt, options, seed, group, missing, branches, call, emit, stop)

    def _resume(
        self, prompt: str, options: SamplingOptions, seed: int, group: _Group, branches: list[_Branch],
        call: _Call, emit: OnToken, stop: Cancel,
    ) -> None:
        """Continue the branches whose stream ended without a finish reason, from where they stopped.

        llama-cpp-python's server (by default) ends a running stream when another request arrives, so
        a concurrent fan-out leaves all but one branch cut short. Such a branch is continued with its
        own text appended to the prompt, one request at a time, and later fan-outs go one at a time.
        """
        for _ in range(MAX_RESUME_PASSES):
            cut = [
                i for i in group.rows
                if branches[i].finish_reason is None and len(branches[i].tokens) < options.max_tokens
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
                    self._request(prompt + b.text, group, rest, 1, seed + i, [i], branches, call, emit, stop)
                except AmbientError as exc:
                    call.errors.append(str(exc))
                    b.finish_reason = "error"

    def _fan_out(
        self, prompt: str, options: SamplingOptions, seed: int, group: _Group, missing: list[int],
        branches: list[_Branch], call: _Call, emit: OnToken, stop: Cancel,
    ) -> None:
        """One ``n = 1`` request per missing branch, concurrently; branch ``i`` uses ``seed + i``."""
        workers = min(len(missing), self._fanout_workers)
        call.requests += len(missing)
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="ambient-fanout") as pool:
            futures = [
                pool.submit(
                    self._request, prompt, group, options, 1, seed + i, [i], branches, call, emit, stop
                )
                for i in missing
            ]
            errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed and len(failed) == len(futures) and not any(b.tokens for b in branches):
            raise failed[0]
        for e in failed:
            call.errors.append(str(e))

    def _request(
        self, prompt: str, group: _Group, options: SamplingOptions, n: int, seed: int, rows: Sequence[int],
        branches: list[_Branch], call: _Call, emit: OnToken, stop: Cancel,
    ) -> set[int]:
        """One streamed request to ``group``'s model; returns the branches it filled (choice ``c`` is
        branch ``rows[c]``)."""
        body = wire.completion_body(group.model, prompt, options, n, seed)
        seen: set[int] = set()
        try:
            with self._client.stream_events(wire.COMPLETIONS_PATH, body, stop) as events:
                for event in events:
                    self._absorb(event, rows, branches, call, emit, seen)
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
            raise self._translate(exc, group) from exc
        return seen

    def _absorb(
        self, event: Any, rows: Sequence[int], branches: list[_Branch], call: _Call, emit: OnToken,
        seen: set[int],
    ) -> None:
        """Apply one streamed chunk (or a whole non-streamed answer) to the branches."""
        if not isinstance(event, dict):
            return
        counted = wire.prompt_tokens(event)
        if counted is not None:
            call.prompt_tokens = counted
        for choice in event.get("choices") or ():
            choice_at = wire.choice_index(choice)
            if choice_at >= len(rows):
                continue  # a server that sent more than asked for
            index = rows[choice_at]
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

    def _translate(self, exc: Exception, group: _Group) -> AmbientError:
        if isinstance(exc, ReadTimeout):
            return wire.timeout_error(str(self.endpoint), exc)
        assert isinstance(exc, HTTPStatusError)
        return http_error(exc, group.model, str(self.endpoint), self._server.served_models, group.setting)


def _locked(on_token: OnToken | None) -> OnToken:
    """``on_token`` made safe to call from the fan-out threads (one call at a time)."""
    lock = threading.Lock()

    def emit(branch: int, token: Token) -> None:
        if on_token is not None:
            with lock:
                on_token(branch, token)

    return emit
