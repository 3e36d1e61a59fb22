"""``ambient bench completions``: what a Loom user waits for, through the official ``openai`` SDK.

One Loom-shaped request (a prompt of about :data:`PROMPT_TOKENS` tokens of the shipped prose,
``max_tokens`` 32, temperature 1, ``logprobs`` 4; once with ``echo`` false and once with ``echo``
true, as Loom sends it) through ``openai.OpenAI(base_url=..., api_key=...)``, to:

- **ambient, n=1 and n=8**: a real daemon in this process (:func:`ambient.server.serve`) on
  127.0.0.1, on the configured model (by default the bundled Gemma 3 270M), called with a client
  key; memory off and nothing retrieved (a key's default), so the time is the request's own;
- **llama.cpp, 8 choices**: llama-cpp-python's OpenAI server (``python -m llama_cpp.server``) on
  the bundled GGUF of the same model (Q4_K_M), with as many threads. It is asked ``n=8``; the
  choices it really returns are counted, and while fewer than 8 came back the request is sent
  again, one after the other, as Loom would have to.

Every timed request has a prompt of its own (a numbered first line), so no cache holds it before
(llama.cpp's repeated requests of one Loom click share theirs, as they would for a user). Each
ambient figure is the median of :data:`RUNS` runs after a warm-up. llama.cpp's 8 requests are one
run after a warm-up (each request is a repetition; they are reported too). llama-cpp-python
ranks the alternatives of every scored token in Python over Gemma's 262k-word vocabulary, so with
``echo`` (the whole prompt scored) one of its requests takes minutes on 2 cores: by default that
case times the first :data:`LLAMA_ECHO_REQUESTS` requests and estimates the others from them, and
says so.

The daemon, its store and the server's log live in a temporary folder; only the model is read
from where the configuration says.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import itertools
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ambient.config import Config
from ambient.errors import AmbientError, InvalidInput

SECTION = "completions"
LONG = True  # minutes (llama-cpp-python's logprobs): `ambient bench completions` only, not `all`
PROMPT_TOKENS = 300
MAX_TOKENS = 32
LOGPROBS = 4
N = 8
RUNS = 3
LLAMA_ECHO_REQUESTS = 2
N_CTX = 1024  # the llama.cpp server's context: the prompt and max_tokens with room to spare
KEY_NAME = "bench"
WARMUP_TOKENS = 4

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Shape:
    """The request, as Loom sends it (its ``n`` apart)."""

    max_tokens: int = MAX_TOKENS
    logprobs: int | None = LOGPROBS
    echo: bool = False
    temperature: float = 1.0

    def label(self) -> str:
        logprobs = f"logprobs {self.logprobs}" if self.logprobs is not None else "no logprobs"
        return f"echo {'true' if self.echo else 'false'}, {logprobs}"


@dataclasses.dataclass(frozen=True)
class Answer:
    seconds: float
    choices: int
    completion_tokens: int
    prompt_tokens: int


class Prompts:
    """The base prompt with a numbered first line: a prompt no cache has seen, each time."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._count = itertools.count(1)

    def fresh(self) -> str:
        return f"Part {next(self._count)}.\n\n{self.base}"


# ----------------------------------------------------------------- entry points
def run(config: Config, *, quick: bool = False) -> dict[str, Any]:
    """The benchmark on the configured model and the bundled GGUF; ``quick``: one run, 8 tokens."""
    from ambient.bench.measure import build_prompt
    from ambient.models import default_gguf_path, resolve_model_path
    from ambient.sampling.registry import create_sampler

    check_llama()
    if config.model.backend != "local":
        raise InvalidInput(
            'the completions benchmark samples the local model: run it with model.backend = "local"'
        )
    model_path = resolve_model_path(config)
    gguf = default_gguf_path(Path(config.models_dir))
    threads = config.model.threads or (os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="ambient-bench-completions-") as tmp:
        cfg = bench_config(config, model_path, Path(tmp) / "home")
        sampler = create_sampler(cfg)
        tokenizer: Any = getattr(sampler, "tokenizer", None)
        if tokenizer is None:
            raise InvalidInput("the completions benchmark needs the local backend's tokenizer for its prompt")
        prompt = build_prompt(tokenizer, PROMPT_TOKENS)
        return measure(
            cfg,
            gguf,
            prompt,
            Path(tmp),
            sampler=sampler,
            threads=threads,
            max_tokens=8 if quick else MAX_TOKENS,
            runs=1 if quick else RUNS,
        )


def bench_config(config: Config, model_path: Path, home: Path) -> Config:
    """A daemon of its own: a temporary home, the given model, no memory, no other place's table."""
    base = dataclasses.replace(config, home=home, sources={}, file=None)
    return base.replace(
        model__backend="local", model__path=str(model_path), memory__enabled=False, server__port=0
    )


def measure(
    cfg: Config,
    gguf: Path,
    prompt: str,
    work: Path,
    *,
    sampler: Any = None,
    threads: int = 2,
    max_tokens: int = MAX_TOKENS,
    logprobs: int = LOGPROBS,
    n: int = N,
    runs: int = RUNS,
    llama_echo_requests: int | None = LLAMA_ECHO_REQUESTS,
) -> dict[str, Any]:
    """Start both servers, time every case, stop both; plain data for :func:`to_markdown`.

    ``cfg`` is the daemon's configuration (:func:`bench_config`); ``sampler`` its sampler, made
    from ``cfg`` when None. ``llama_echo_requests``: how many of llama.cpp's requests with echo
    to time before scaling to ``n`` (None: all of them).
    """
    from ambient.app import App
    from ambient.keys import KeyStore
    from ambient.sampling.registry import create_sampler

    check_llama()
    load_before = _loadavg()
    _, secret = KeyStore(cfg.home).add(KEY_NAME)
    app = App(cfg, sampler=sampler if sampler is not None else create_sampler(cfg))
    prompts = Prompts(prompt)
    loom = Shape(max_tokens=max_tokens, logprobs=logprobs)
    cases = {
        "plain": loom,
        "echo": dataclasses.replace(loom, echo=True),
        "no_logprobs": dataclasses.replace(loom, logprobs=None),
    }
    with llama_server(gguf, threads, work) as (llama_url, llama_key):

        def timed(ambient_url: str) -> dict[str, Any]:
            ambient = _client(ambient_url, secret)
            llama = _client(llama_url, llama_key)
            warm_up(llama, prompts, loom, n)
            out: dict[str, Any] = {"cases": {}}
            for name, shape in cases.items():
                row: dict[str, Any] = {"label": shape.label()}
                if name != "no_logprobs":
                    row["ambient_1"] = ambient_runs(ambient, prompts, shape, 1, runs)
                row["ambient_n"] = ambient_runs(ambient, prompts, shape, n, runs)
                limit = llama_echo_requests if shape.echo else None
                row["llama"] = llama_choices(llama, prompts, shape, n, limit=limit)
                out["cases"][name] = _ratios(row)
            return out

        result = asyncio.run(_with_daemon(cfg, app, timed))
    return {
        "section": SECTION,
        "model": str(app.sampler.name),
        "gguf": gguf.name,
        "threads": threads,
        "n": n,
        "max_tokens": max_tokens,
        "logprobs": logprobs,
        "runs": runs,
        "prompt_tokens": result["cases"]["plain"]["ambient_1"]["prompt_tokens"],
        "llama_prompt_tokens": result["cases"]["plain"]["llama"]["prompt_tokens"],
        "load_before": load_before,
        "load_after": _loadavg(),
        **result,
    }


# ----------------------------------------------------------------- the two servers
async def _with_daemon(cfg: Config, app: Any, work: Callable[[str], T]) -> T:
    """A real daemon on 127.0.0.1 while ``work(its /v1 URL)`` runs in a thread (the SDK blocks)."""
    from ambient.server import serve

    async with serve(cfg, app) as server:
        return await asyncio.to_thread(work, f"http://127.0.0.1:{server.port}/v1")


def check_llama() -> None:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        raise InvalidInput(
            "the completions benchmark compares with llama.cpp's server: install llama-cpp-python[server] "
            "(`make setup-server`)"
        )


@contextlib.contextmanager
def llama_server(gguf: Path, threads: int, folder: Path, n_ctx: int = N_CTX) -> Iterator[tuple[str, str]]:
    """llama-cpp-python's OpenAI server on ``gguf`` on a free loopback port; yields its /v1 URL and key."""
    check_llama()
    port, key = _free_port(), secrets.token_hex(16)
    log = folder / "llama-server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
        "--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads),
        "--n_ctx", str(n_ctx), f"--api_key={key}",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/v1"
            _wait_serving(url, key, proc, log)
            yield url, key
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_serving(
    url: str, key: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180.0
) -> None:
    request = urllib.request.Request(url + "/models", headers={"Authorization": f"Bearer {key}"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise AmbientError(f"llama.cpp's server exited ({proc.returncode}): {tail[0]}; see {log}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AmbientError(f"llama.cpp's server did not answer within {timeout:.0f} s: see {log}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(base_url: str, key: str) -> Any:
    import openai

    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=3600.0)


# ----------------------------------------------------------------- timing
def request(client: Any, prompt: str, shape: Shape, n: int) -> Answer:
    """One call through the SDK, timed from the call to the whole answer."""
    start = time.perf_counter()
    got = client.completions.create(
        model="davinci",
        prompt=prompt,
        n=n,
        max_tokens=shape.max_tokens,
        temperature=shape.temperature,
        logprobs=shape.logprobs,
        echo=shape.echo,
    )
    seconds = time.perf_counter() - start
    usage = got.usage
    return Answer(
        seconds,
        len(got.choices),
        usage.completion_tokens if usage is not None else 0,
        usage.prompt_tokens if usage is not None else 0,
    )


def warm_up(client: Any, prompts: Prompts, shape: Shape, n: int) -> None:
    """One untimed request of the same shape, a few tokens long, on a prompt of its own."""
    request(client, prompts.fresh(), dataclasses.replace(shape, max_tokens=WARMUP_TOKENS), n)


def ambient_runs(client: Any, prompts: Prompts, shape: Shape, n: int, runs: int) -> dict[str, Any]:
    """A warm-up, then ``runs`` requests asking ``n`` choices, each on a fresh prompt."""
    warm_up(client, prompts, shape, n)
    answers = [request(client, prompts.fresh(), shape, n) for _ in range(max(1, runs))]
    for a in answers:
        if a.choices != n:
            raise AmbientError(f"ambient answered {a.choices} choices for n={n}: that is a bug, report it")
    times = [a.seconds for a in answers]
    return {
        "times_s": [round(t, 2) for t in times],
        "median_s": round(statistics.median(times), 3),
        "tokens": [a.completion_tokens for a in answers],
        "tokens_per_s": round(statistics.median(a.completion_tokens / a.seconds for a in answers), 2),
        "prompt_tokens": answers[0].prompt_tokens,
    }


def llama_choices(
    client: Any, prompts: Prompts, shape: Shape, n: int, *, limit: int | None = None
) -> dict[str, Any]:
    """``n`` choices of one fresh prompt: asked ``n`` at once, then again while fewer came back.

    ``limit``: time at most that many requests and estimate the rest: the later requests (the
    prompt already read) as the mean of the timed ones after the first, or as the first when it is
    the only one. Reported as estimated.
    """
    prompt = prompts.fresh()
    answers: list[Answer] = []
    got = 0
    while got < n and (limit is None or len(answers) < limit):
        answer = request(client, prompt, shape, n - got)
        if answer.choices < 1:
            raise AmbientError("llama.cpp's server answered no choice: see its log")
        answers.append(answer)
        got += answer.choices
    per_request = [a.seconds for a in answers]
    seconds, tokens = sum(per_request), sum(a.completion_tokens for a in answers)
    first = answers[0].choices
    missing = -(-(n - got) // first) if got < n else 0  # requests not sent, at the first answer's choices
    later = answers[1:] or answers
    seconds += missing * statistics.mean(a.seconds for a in later)
    tokens += round(missing * statistics.mean(a.completion_tokens for a in later))
    return {
        "server_n": first,
        "requests": len(answers) + missing,
        "timed_requests": len(answers),
        "estimated": missing > 0,
        "per_request_s": [round(t, 2) for t in per_request],
        "median_s": round(seconds, 3),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 2),
        "prompt_tokens": answers[0].prompt_tokens,
    }


def _ratios(row: dict[str, Any]) -> dict[str, Any]:
    many = row["ambient_n"]["median_s"]
    if "ambient_1" in row:
        row["n_over_1"] = round(many / row["ambient_1"]["median_s"], 2)
    row["llama_over_ambient_n"] = round(row["llama"]["median_s"] / many, 2)
    return row


def _loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return [round(x, 2) for x in os.getloadavg()]


# ----------------------------------------------------------------- the report
def _cell(stats: dict[str, Any] | None) -> str:
    if stats is None:
        return "—"
    mark = "≈ " if stats.get("estimated") else ""
    return f"{mark}{stats['median_s']:.2f} s ({stats['tokens_per_s']:.1f} tokens/s)"


def to_markdown(result: dict[str, Any]) -> str:
    r = result
    n = r["n"]
    lines = [
        "## Completions: a Loom request through the openai SDK, ambient beside llama.cpp's server",
        "",
        f"The same Loom-shaped request through the official `openai` SDK: a prompt of {r['prompt_tokens']} "
        f"tokens ({r['llama_prompt_tokens']} by llama.cpp's count), `max_tokens` {r['max_tokens']}, "
        f"temperature 1, `logprobs` {r['logprobs']}, each timed request on a prompt of its own. "
        f"**ambient**: the daemon's `/v1/completions` ({r['model']}, a client key, nothing retrieved), "
        f"median of {r['runs']} run(s) after a warm-up. **llama.cpp**: llama-cpp-python's OpenAI server "
        f"on the bundled GGUF ({r['gguf']}), {r['threads']} threads like ambient; it answered "
        f"{r['cases']['plain']['llama']['server_n']} choice(s) to `n={n}`, so {n} choices "
        + (
            f"are {n} requests in a row, as a Loom user waits for them (one run after a warm-up)."
            if r["cases"]["plain"]["llama"]["server_n"] < n
            else "came in one request."
        ),
        "",
        f"| request | ambient n=1 | ambient n={n} | llama.cpp, {n} choices | ambient n={n} ÷ n=1 "
        f"| llama.cpp ÷ ambient n={n} |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("plain", "echo", "no_logprobs"):
        c = r["cases"].get(name)
        if c is None:
            continue
        ratio = f"{c['n_over_1']:.2f}×" if "n_over_1" in c else "—"
        lines.append(
            f"| {c['label']} | {_cell(c.get('ambient_1'))} | {_cell(c['ambient_n'])} | {_cell(c['llama'])} "
            f"| {ratio} | {c['llama_over_ambient_n']:.1f}× |"
        )
    lines.append("")
    for name in ("plain", "echo", "no_logprobs"):
        c = r["cases"].get(name)
        if c is None:
            continue
        llama = c["llama"]
        times = ", ".join(f"{t:.2f}" for t in llama["per_request_s"])
        what = (
            f"{llama['timed_requests']} of its {llama['requests']} requests timed ({times} s), the others "
            "estimated from those after the first (≈)"
            if llama["estimated"]
            else f"{llama['requests']} request(s): {times} s"
        )
        ambient = ", ".join(f"{t:.2f}" for t in c["ambient_n"]["times_s"])
        lines.append(f"- {c['label']}: ambient n={n}, each run: {ambient} s; llama.cpp {what}.")
    lb, la = r["load_before"], r["load_after"]
    lines += [
        "",
        "Tokens/s counts the completion tokens of all the choices (the end of text may stop a "
        "choice early on either side). ambient reads the prompt once for all its choices and "
        "scores an echoed prompt in one pass; llama-cpp-python ranks every scored token's "
        "alternatives in Python over the 262k-word vocabulary, which is most of its time with "
        "logprobs (compare the row without them).",
        f"The machine is shared with other work: load average (1/5/15 min) before "
        f"{lb[0]} / {lb[1]} / {lb[2]}, after {la[0]} / {la[1]} / {la[2]}; both servers ran on the "
        "same cores, one request at a time.",
    ]
    return "\n".join(lines) + "\n"
