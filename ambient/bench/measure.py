"""What the benchmarks share: the shipped prompt, best-of timing, memory bandwidth, peak RSS."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

BANDWIDTH_BYTES = 1 << 29  # 512 MiB: far bigger than any CPU cache, smaller than the model


def build_prompt(tokenizer: Any, prompt_tokens: int) -> str:
    """About ``prompt_tokens`` tokens (begin-of-text marker included) of the shipped prose, cut at a token."""
    text = resources.files("ambient.bench").joinpath("prompt.txt").read_text(encoding="utf-8")
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    while len(ids) < prompt_tokens:
        ids = ids + tokenizer("\n\n" + text, add_special_tokens=False)["input_ids"]
    special = len(tokenizer("a")["input_ids"]) - len(tokenizer("a", add_special_tokens=False)["input_ids"])
    return str(tokenizer.decode(ids[: max(1, prompt_tokens - special)]))


def measure_bandwidth(nbytes: int = BANDWIDTH_BYTES, repeats: int = 10) -> float:
    """Memory read bandwidth in bytes/s: the best time to sum a buffer much bigger than the caches."""
    import torch

    buf = torch.ones(nbytes // 4, dtype=torch.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        buf.sum()
        best = min(best, time.perf_counter() - t0)
    return nbytes / best


def load_average() -> str:
    """The load average over 1, 5 and 15 minutes, as /proc/loadavg gives it ("unknown" elsewhere)."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time of ``fn`` over ``repeats`` runs, and the last run's value."""
    best, value = float("inf"), None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value
