"""``ambient bench notes``: from a save to the first offered token, idle CPU, and prefix reuse.

Three measurements, each beside the obvious alternative:

1. **Save → first token** (p50/p95) through the real daemon with the notes
   source, the configured model (by default the bundled Gemma 3 270M) and the
   memory index off: a note grows by one sentence per save, as when writing;
   the clock starts when the save is on disk and stops when the first token of
   the offer is published to the UI. The time until the note is recorded (the
   quiet window, reading, storing the version) and the prefill are shown apart.
2. **Idle CPU**: the daemon watching 10,000 unchanged notes for 60 s, as a
   share of one core (``time.process_time`` over the window: every thread of
   the process), beside watchdog's polling observer on the same notes.
3. **Prefix reuse**: when a note only grew at its end, the local sampler
   reuses the key/value cache it kept from the previous offer
   (:mod:`ambient.sampling.prefix_cache`) and reads only the new tokens. This
   times the sampler's own prefill of the grown note with that cache and with
   it emptied, and compares the two next-token distributions. Section 1 runs
   the daemon with the cache on and off as well.

Nothing here touches the person's data: the store, notes and sidecars live in
a temporary folder; only the model is read from where the configuration says.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ambient.app import App
from ambient.config import Config
from ambient.sampling.base import OnToken, Sampler, SampleResult, SamplingOptions

IDLE_NOTES = 10_000
IDLE_SECONDS = 60.0
POLLING_SECONDS = 15.0
SAVES = 12
QUIET_MS = 250
N = 4
MAX_TOKENS = 8  # the first token is what is measured; short offers keep the run short
PREFIX_SIZES = (256, 1024, 2048)  # prompt tokens before the save (a CPU prefills ~50 tokens/s)
APPENDED = " And then, after a long pause, she wrote one more sentence about the river."

_BASE = (
    "Notes on the river walk. The water was grey in the morning and green by noon. "
    "Children walked along the bank on their way to school, and an old man fed the ducks. "
    "I keep thinking about how a place changes when you walk it every day: the same path, "
    "but the light is never the same, and neither am I. "
)
_SENTENCES = (
    " Today the wind came from the east.",
    " A heron stood in the shallows, perfectly still.",
    " I wondered what it would be like to write a letter to the river.",
    " The bridge was being painted, a pale blue that looked wrong at first.",
    " Someone had left a bicycle against the railing, its basket full of leaves.",
    " By the mill the current was fast and loud.",
    " I tried to remember the first time I came here.",
    " The ducks have learned my footsteps, or maybe my bread.",
    " Clouds piled up over the hills but it did not rain.",
    " On the way back I met the painter and we talked about colours.",
    " She said blue is the hardest colour to get right outdoors.",
    " Tomorrow I will take the long way round, past the orchards.",
    " There are still apples on the highest branches.",
    " The evening smelled of smoke and wet earth.",
)


# ----------------------------------------------------------------- entry points
def run(config: Config, *, quick: bool = False) -> dict[str, Any]:
    """Run the three measurements; ``quick`` shrinks them to a smoke run."""
    from ambient.models import resolve_model_path

    model_path = resolve_model_path(config) if config.model.backend == "local" else None
    with tempfile.TemporaryDirectory(prefix="ambient-bench-notes-") as tmp:
        work = Path(tmp)
        bench_config = _bench_config(config, work / "home", model_path)
        saves = 3 if quick else SAVES
        latency = asyncio.run(_latency(bench_config, work / "notes", saves=saves))
        without = bench_config.replace(model__prefix_cache_mb=0)
        latency["no_prefix_cache"] = asyncio.run(_latency(without, work / "notes-plain", saves=saves))
        idle = asyncio.run(
            _idle(
                bench_config,
                work / "idle",
                count=1000 if quick else IDLE_NOTES,
                seconds=3.0 if quick else IDLE_SECONDS,
                polling_seconds=2.0 if quick else POLLING_SECONDS,
            )
        )
    sizes = (256, 1024) if quick else PREFIX_SIZES
    prefix = _prefix_reuse(bench_config, sizes=sizes, repeats=2 if quick else 3)
    return {
        "quick": quick,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "model": str(model_path) if model_path is not None else config.model.name,
        "latency": latency,
        "idle": idle,
        "prefix": prefix,
    }


def to_markdown(result: dict[str, Any]) -> str:
    lines = ["## Notes: from a save to the first offered token", ""]
    lines += _latency_markdown(result["latency"], result["model"])
    lines += ["", "### Idle: watched notes that do not change", ""]
    lines += _idle_markdown(result["idle"])
    lines += ["", "### Reusing the key/value cache when a note only grew at its end", ""]
    lines += _prefix_markdown(result["prefix"])
    load = result.get("load_average")
    if load:
        lines += [
            "",
            f"_Load average at the end of the run: {', '.join(map(str, load))} on {result.get('cpus')} "
            "cores; timings are only as steady as the machine was._",
        ]
    if result.get("quick"):
        lines += ["", "_Quick run (`--quick`): small sizes, not representative._"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------- helpers
def _progress(message: str) -> None:
    print(f"bench notes: {message}", file=sys.stderr, flush=True)


def _bench_config(config: Config, home: Path, model_path: Path | None) -> Config:
    changes: dict[str, Any] = {
        "memory__enabled": False,
        "server__port": 0,
        "sampling__n": N,
        "sampling__max_tokens": MAX_TOKENS,
    }
    if model_path is not None:
        changes["model__path"] = str(model_path)
    return dataclasses.replace(config, home=home, sources={}, file=None).replace(**changes)


def _with_notes(config: Config, folder: Path) -> Config:
    table = {"folders": [str(folder)], "quiet_ms": QUIET_MS, "sidecars": False}
    return dataclasses.replace(config, sources={"notes": table})


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(_percentile(values, 0.5), 1),
        "p95": round(_percentile(values, 0.95), 1),
        "min": round(min(values), 1) if values else float("nan"),
        "max": round(max(values), 1) if values else float("nan"),
    }


async def _wait_watching(daemon: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        source = daemon.sources.get("notes")
        if source is not None and source.status().get("watching"):
            return source
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the notes source did not start: {daemon.sources.status()}")


# --------------------------------------------------------------- 1. latency
async def _latency(config: Config, folder: Path, *, saves: int) -> dict[str, Any]:
    from ambient.daemon import Daemon

    folder.mkdir(parents=True)
    note = folder / "walk.md"
    text = _BASE * 4
    note.write_text(text)
    config = _with_notes(config, folder)
    samples: list[dict[str, float]] = []
    async with Daemon(config) as daemon:
        await _wait_watching(daemon)
        subscriber = daemon.subscribe()
        for i in range(saves + 1):  # the first save warms up (and is the note's first sight)
            text += _SENTENCES[i % len(_SENTENCES)]
            sample = await _one_save(subscriber, note, text)
            _progress(f"save {i}/{saves}: first token after {sample['first_token_ms']:.0f} ms")
            if i > 0:
                samples.append(sample)
        daemon.unsubscribe(subscriber)
    first = [s["first_token_ms"] for s in samples]
    return {
        "saves": len(samples),
        "quiet_ms": QUIET_MS,
        "n": N,
        "max_tokens": MAX_TOKENS,
        "first_token_ms": _summary(first),
        "recorded_ms": _summary([s["recorded_ms"] for s in samples]),
        "prefill_ms": _summary([s["prefill_ms"] for s in samples]),
        "prompt_tokens": int(statistics.median([s["prompt_tokens"] for s in samples])) if samples else 0,
        "note_chars": len(text),
    }


async def _one_save(subscriber: Any, note: Path, text: str) -> dict[str, float]:
    await asyncio.to_thread(note.write_text, text)
    t0 = time.perf_counter()
    got: dict[str, float] = {}
    while "done" not in got:
        message = await asyncio.wait_for(subscriber.queue.get(), timeout=600)
        if message is None:
            raise RuntimeError("the daemon stopped during the benchmark")
        event = json.loads(message)
        now_ms = (time.perf_counter() - t0) * 1000
        if event["type"] == "note_changed":
            got.setdefault("recorded_ms", now_ms)
        elif event["type"] == "token":
            got.setdefault("first_token_ms", now_ms)
        elif event["type"] in ("offer_done", "offer_failed"):
            meta = (event["data"].get("offer") or {}).get("meta", {})
            got["prefill_ms"] = float(meta.get("prefill_s", float("nan"))) * 1000
            got["prompt_tokens"] = float(meta.get("prompt_tokens", 0))
            got["done"] = now_ms
    return got


def _latency_markdown(r: dict[str, Any], model: str) -> list[str]:
    ft, rec, pre = r["first_token_ms"], r["recorded_ms"], r["prefill_ms"]
    lines = [
        f"Model `{Path(model).name}`, the real daemon with the notes source, memory off; {r['saves']} saves, "
        f"each adding a sentence at the end of a note of about {r['note_chars']} characters "
        f"(median prompt {r['prompt_tokens']} tokens); N = {r['n']}, quiet window {r['quiet_ms']} ms.",
        "",
        "| from the save to | p50 | p95 | min | max |",
        "|---|---:|---:|---:|---:|",
        f"| the version recorded (quiet window + read + store) | {rec['p50']} ms | {rec['p95']} ms "
        f"| {rec['min']} ms | {rec['max']} ms |",
        f"| **the first offered token** | **{ft['p50']} ms** | **{ft['p95']} ms** | {ft['min']} ms "
        f"| {ft['max']} ms |",
        f"| of which the prefill (reusing the kept prefix cache) | {pre['p50']} ms | {pre['p95']} ms "
        f"| {pre['min']} ms | {pre['max']} ms |",
    ]
    plain = r.get("no_prefix_cache")
    if plain:
        pft, ppre = plain["first_token_ms"], plain["prefill_ms"]
        lines += [
            f"| the first offered token, prefix cache off (`model.prefix_cache_mb = 0`) | {pft['p50']} ms "
            f"| {pft['p95']} ms | {pft['min']} ms | {pft['max']} ms |",
            f"| of which the prefill of the whole prompt | {ppre['p50']} ms | {ppre['p95']} ms "
            f"| {ppre['min']} ms | {ppre['max']} ms |",
            "",
            f"Save → first token with the prefix cache: **{_ratio(pft['p50'], ft['p50'])}× faster** at p50, "
            f"{_ratio(pft['p95'], ft['p95'])}× at p95 (same saves, same daemon, run one after the other).",
        ]
    return lines


def _ratio(slow: float, fast: float) -> str:
    return f"{slow / fast:.1f}" if fast > 0 else "∞"


# ------------------------------------------------------------------ 2. idle
class _IdleSampler(Sampler):
    """Stands in for the model while measuring idle CPU: it must never be asked to sample."""

    name = "idle"

    @property
    def context_length(self) -> int:
        return 2048

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(
        self,
        prompt: str,
        options: SamplingOptions,
        on_token: OnToken | None = None,
        cancel: threading.Event | None = None,
    ) -> SampleResult:
        raise RuntimeError("nothing changed, so nothing should be sampled")


def _make_notes(folder: Path, count: int) -> None:
    per_folder = 100
    for i in range(count):
        sub = folder / f"f{i // per_folder:03d}"
        if i % per_folder == 0:
            sub.mkdir(parents=True)
        (sub / f"note{i:05d}.md").write_text(f"Note {i}: an unchanged thought.\n")


async def _idle(
    config: Config, folder: Path, *, count: int, seconds: float, polling_seconds: float
) -> dict[str, Any]:
    from ambient.daemon import Daemon

    await asyncio.to_thread(_make_notes, folder, count)
    config = _with_notes(config, folder)
    app = App(config, sampler=_IdleSampler())
    try:
        async with Daemon(config, app) as daemon:
            source = await _wait_watching(daemon)
            await asyncio.sleep(2.0)  # let start-up settle
            _progress(f"{count} notes watched; measuring idle CPU for {seconds:.0f} s")
            events_before = source.watcher.raw_events
            cpu, wall = await _cpu_over(seconds)
            events = source.watcher.raw_events - events_before
            threads = threading.active_count()
    finally:
        await asyncio.to_thread(app.close)
    _progress(f"the same notes under watchdog's polling observer for {polling_seconds:.0f} s")
    polling = await asyncio.to_thread(_polling_cpu, folder, polling_seconds)
    return {
        "notes": count,
        "folders": (count + 99) // 100,
        "seconds": round(wall, 1),
        "cpu_s": round(cpu, 4),
        "core_percent": round(100 * cpu / wall, 4),
        "events": events,
        "threads": threads,
        "polling": polling,
    }


async def _cpu_over(seconds: float) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    return time.process_time() - c0, time.perf_counter() - w0


def _polling_cpu(folder: Path, seconds: float) -> dict[str, Any]:
    """The alternative: watchdog's polling observer (a stat of every file each second)."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers.polling import PollingObserver

    observer = PollingObserver(timeout=1.0)
    observer.schedule(FileSystemEventHandler(), str(folder), recursive=True)
    observer.start()
    try:
        time.sleep(1.5)  # its first snapshot
        c0, w0 = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    finally:
        observer.stop()
        observer.join(10)
    return {"seconds": round(wall, 1), "cpu_s": round(cpu, 3), "core_percent": round(100 * cpu / wall, 1)}


def _idle_markdown(r: dict[str, Any]) -> list[str]:
    target = "met" if r["core_percent"] < 1.0 else "**missed**"
    return [
        f"{r['notes']} notes in {r['folders']} folders, watched by the running daemon (inotify through "
        f"watchdog; no polling loop) for {r['seconds']} s: {r['events']} file events, "
        f"{r['threads']} threads.",
        "",
        "| watcher | CPU time | share of one core |",
        "|---|---:|---:|",
        f"| ambient's notes source (inotify) | {r['cpu_s']} s | **{r['core_percent']} %** "
        f"(target < 1 %: {target}) |",
        f"| watchdog's polling observer, 1 s interval, same notes ({r['polling']['seconds']} s) "
        f"| {r['polling']['cpu_s']} s | {r['polling']['core_percent']} % |",
    ]


# ----------------------------------------------------------- 3. prefix reuse
def _prefix_reuse(config: Config, *, sizes: tuple[int, ...], repeats: int) -> dict[str, Any]:
    if config.model.backend != "local":
        return {"skipped": f"model.backend = {config.model.backend}: the key/value cache is the server's"}
    app = App(config)
    try:
        sampler = app.sampler
        if getattr(sampler, "prefixes", None) is None:
            return {"skipped": "this sampler keeps no prefix caches"}
        rows = [_prefix_row(sampler, size, repeats) for size in sizes]
    finally:
        app.close()
    return {"rows": rows, "appended_chars": len(APPENDED), "repeats": repeats}


def _prefix_row(sampler: Any, size: int, repeats: int) -> dict[str, Any]:
    """The sampler's own prefill of a grown note: with its prefix cache, and with the cache emptied."""
    _progress(f"prefix reuse at {size} prompt tokens")
    old_text = _text_of_size(sampler, size)
    new_text = old_text + APPENDED
    options = SamplingOptions(n=1, max_tokens=1, temperature=0, seed=0, top_logprobs=20)
    reuse, cold = [], []
    for _ in range(repeats):
        sampler.prefixes.clear()
        sampler.generate(old_text, options)  # the previous save's offer, which leaves its prefix behind
        reuse.append(sampler.generate(new_text, options))
        sampler.prefixes.clear()
        cold.append(sampler.generate(new_text, options))
    best_reuse = min(reuse, key=lambda r: r.meta["prefill_s"])
    best_cold = min(cold, key=lambda r: r.meta["prefill_s"])
    reuse_s, cold_s = best_reuse.meta["prefill_s"], best_cold.meta["prefill_s"]
    return {
        "prompt_tokens": best_reuse.prompt_tokens,
        "reused_tokens": best_reuse.meta["prefill_reused_tokens"],
        "full_ms": round(cold_s * 1000, 1),
        "reuse_ms": round(reuse_s * 1000, 1),
        "speedup": round(cold_s / reuse_s, 1) if reuse_s > 0 else float("inf"),
        "max_logprob_diff": _logprob_diff(best_reuse, best_cold),
    }


def _logprob_diff(a: SampleResult, b: SampleResult) -> float:
    """Largest difference between the two runs' top-20 next-token logprobs (same words expected)."""
    ta, tb = a.continuations[0].tokens[0], b.continuations[0].tokens[0]
    if [x.text for x in ta.top] != [x.text for x in tb.top]:
        return float("inf")
    return round(max(abs(x.logprob - y.logprob) for x, y in zip(ta.top, tb.top, strict=True)), 6)


def _text_of_size(sampler: Any, size: int) -> str:
    text = _BASE
    while sampler.count_tokens(text) < size:
        text += "".join(_SENTENCES) + _BASE
    ids = list(sampler.tokenizer(text)["input_ids"])[:size]
    decoded: str = sampler.tokenizer.decode(ids, skip_special_tokens=True)
    return decoded


def _prefix_markdown(r: dict[str, Any]) -> list[str]:
    if "skipped" in r:
        return [f"Not measured: {r['skipped']}."]
    lines = [
        f"A note that grew by one sentence ({r['appended_chars']} characters) at its end, after an offer on "
        "the note as it was. The local sampler's own prefill of the new prompt (`prefill_s` of the offer, "
        f"best of {r['repeats']}): reusing the key/value cache of the prefix it kept from the previous "
        "offer (`model.prefix_cache_mb`, on by default), against the same call with that cache emptied. "
        "The last column is the largest difference in the top-20 next-token logprobs between the two: "
        "the same result.",
        "",
        "| prompt tokens | read from the kept cache | full prefill | with the kept cache | speed-up "
        "| max logprob diff |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['prompt_tokens']} | {row['reused_tokens']} | {row['full_ms']} ms | {row['reuse_ms']} ms "
            f"| **{row['speedup']}×** | {row['max_logprob_diff']} |"
        )
    return lines


if __name__ == "__main__":  # pragma: no cover - `ambient bench notes` is the way in
    from ambient.config import load_config

    print(to_markdown(run(load_config(), quick=bool(os.environ.get("QUICK")))))
