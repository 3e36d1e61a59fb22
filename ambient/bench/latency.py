"""``ambient bench latency``: from an event entering the daemon to its first token at a WebSocket client.

For each model (the tiny test model and the default one) a real daemon runs on
127.0.0.1 with a real WebSocket client. Each event is an explicit request (no
debounce; the configured debounce adds its own wait to ambient events). We
measure, per event:

* **end to end**: ``submit(event)`` to the first ``token`` message read by the client;
* **sampler**: inside the same event, the sampler's own time from being called
  to its first token (prompt pass + one decoding step);
* **overhead**: the difference, i.e. what the daemon adds (queue, context
  building, storing the offer's start, the hop from the worker thread to the
  event loop, JSON, the WebSocket).

As a cross-check, the sampler is also called directly (no daemon) on the same
prompt right after each event, so both see the same machine load. Memory
retrieval is off, so the overhead is the daemon's alone.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp

from ambient.app import App
from ambient.config import Config
from ambient.daemon import Daemon
from ambient.errors import AmbientError
from ambient.sampling.base import OnToken, Sampler, SampleResult, SamplingOptions, Token
from ambient.sampling.registry import create_sampler
from ambient.server import serve
from ambient.sources import SourceEvent

TARGET_MS = 20.0
MAX_TOKENS = 4
WARMUP = 3
PROMPT = (
    "The river runs past the old mill and under the stone bridge. In the morning the water is grey, "
    "and by noon it turns green and bright. Children walk along the bank on their way to school, "
    "and the miller's daughter counts the boats that pass: one, two, three. She keeps a notebook of "
    "small things, a line, a thought, a question that will not leave, and later they grow into"
)


class TimedSampler(Sampler):
    """Wraps a sampler and records when each call starts and when its first token comes."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.called = 0.0
        self.first = 0.0

    @property
    def context_length(self) -> int:
        return self.inner.context_length

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def close(self) -> None:
        self.inner.close()

    def generate(
        self,
        prompt: str,
        options: SamplingOptions,
        on_token: OnToken | None = None,
        cancel: threading.Event | None = None,
    ) -> SampleResult:
        self.called, self.first = time.perf_counter(), 0.0

        def first_token(branch: int, token: Token) -> None:
            if not self.first:
                self.first = time.perf_counter()
            if on_token is not None:
                on_token(branch, token)

        return self.inner.generate(prompt, options, first_token, cancel)

    @property
    def ttft(self) -> float:
        return self.first - self.called


def run(
    config: Config, *, events: int = 50, quick: bool = False, models: Iterable[str] = ("tiny", "default")
) -> dict[str, Any]:
    """Measure both models; a model that cannot be prepared is reported as skipped."""
    events = min(events, 10) if quick else events
    result: dict[str, Any] = {
        "events": events,
        "n": config.sampling.n,
        "max_tokens": MAX_TOKENS,
        "models": [],
    }
    with tempfile.TemporaryDirectory(prefix="ambient-bench-latency-") as tmp:
        for name in models:
            try:
                label, path = _model(name, config, Path(tmp))
            except AmbientError as exc:
                result["models"].append({"model": name, "skipped": str(exc)})
                continue
            home = Path(tmp) / f"home-{name}"
            result["models"].append({"model": label, **measure(config, path, home, events)})
    return result


def _model(name: str, config: Config, tmp: Path) -> tuple[str, Path]:
    from ambient import models

    if name == "tiny":
        return "tiny (2-layer test model)", models.build_tiny_model(tmp / "tiny-model")
    if name == "default":
        return "default (Gemma 3 270M base)", models.resolve_model_path(config)
    raise AmbientError(f"unknown model {name!r}: use tiny or default")


def measure(config: Config, model_path: Path, home: Path, events: int) -> dict[str, Any]:
    """One model: the daemon end to end, and the sampler alone, event after event (same conditions)."""
    cfg = config.replace(
        home=home,
        model__backend="local",
        model__path=str(model_path),
        memory__enabled=False,
        server__port=0,
        sampling__max_tokens=MAX_TOKENS,
    )
    sampler = TimedSampler(create_sampler(cfg))
    try:
        rows = asyncio.run(_interleaved(cfg, sampler, events))
    finally:
        sampler.close()
    return {
        "device": str(getattr(sampler.inner, "device", "")),
        "end_to_end_ms": _summary([r[0] for r in rows]),
        "sampler_in_daemon_ms": _summary([r[1] for r in rows]),
        "sampler_direct_ms": _summary([r[2] for r in rows]),
        "overhead_ms": _summary([r[0] - r[1] for r in rows]),
        "meets_target": _pct([r[0] - r[1] for r in rows], 95) * 1000 < TARGET_MS,
    }


def _direct(sampler: TimedSampler, options: SamplingOptions) -> float:
    """The sampler called on its own: its time to the first token."""
    sampler.generate(PROMPT, options, lambda b, t: None)
    return sampler.ttft


async def _interleaved(cfg: Config, sampler: TimedSampler, events: int) -> list[tuple[float, float, float]]:
    """Per event: (end to end through the daemon, the sampler's part of it, the sampler called directly)."""
    options = SamplingOptions(n=cfg.sampling.n, max_tokens=MAX_TOKENS, temperature=cfg.sampling.temperature)
    app = App(cfg, sampler=sampler)
    rows: list[tuple[float, float, float]] = []
    try:
        async with serve(cfg, app) as server, aiohttp.ClientSession() as session:
            daemon = server.daemon
            _, root = await daemon.run_blocking(app.store.create_tree, PROMPT)
            url = f"http://127.0.0.1:{server.port}/api/events"
            auth = {"Authorization": f"Bearer {server.token}"}
            async with session.ws_connect(url, headers=auth) as ws:
                await ws.receive_json()  # hello
                for i in range(WARMUP + events):
                    event = SourceEvent("bench", f"event-{i}", root.id, debounce=False)
                    total = await _one(daemon, ws, event)
                    in_daemon = sampler.ttft
                    direct = await asyncio.to_thread(_direct, sampler, options)
                    if i >= WARMUP:
                        rows.append((total, in_daemon, direct))
    finally:
        await asyncio.to_thread(app.store.close)
    return rows


async def _one(daemon: Daemon, ws: aiohttp.ClientWebSocketResponse, event: SourceEvent) -> float:
    start = time.perf_counter()
    await daemon.submit(event)
    first = 0.0
    while True:
        message = await ws.receive_json()
        if message["type"] == "token" and not first:
            first = time.perf_counter()
        elif message["type"] in ("offer_done", "offer_failed"):
            if message["type"] == "offer_failed":
                raise AmbientError(f"sampling failed during the benchmark: {message['data']['error']}")
            return first - start


def _pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(_pct(values, 50) * 1000, 2), "p95": round(_pct(values, 95) * 1000, 2)}


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "## Latency: event to first token at a WebSocket client",
        "",
        f"{result['events']} events per model (after {WARMUP} warm-up events), n = {result['n']} "
        f"continuations, {result['max_tokens']} tokens each, explicit events (no debounce), memory "
        "retrieval off. *Sampler* is the model's own time to its first token inside the same event; "
        "*overhead* is what the daemon adds on top (queue, context, storing, thread hop, WebSocket).",
        "",
        "| model | device | end to end p50 / p95 (ms) | sampler p50 / p95 (ms) | sampler alone, no daemon "
        "p50 / p95 (ms) | daemon overhead p50 / p95 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for m in result["models"]:
        if "skipped" in m:
            lines.append(f"| {m['model']} | skipped: {m['skipped']} | | | | |")
            continue
        cells = [
            _cell(m[k]) for k in ("end_to_end_ms", "sampler_in_daemon_ms", "sampler_direct_ms", "overhead_ms")
        ]
        lines.append(f"| {m['model']} | {m['device']} | " + " | ".join(cells) + " |")
    measured = [m for m in result["models"] if "skipped" not in m]
    verdict = "met" if measured and all(m["meets_target"] for m in measured) else "not met"
    lines += ["", f"Target: daemon overhead under {TARGET_MS:.0f} ms at p95: **{verdict}**."]
    return "\n".join(lines)


def _cell(summary: dict[str, float]) -> str:
    return f"{summary['p50']:.1f} / {summary['p95']:.1f}"
