"""``ambient bench soak [--minutes 30]``: the daemon running for a long while with saves arriving.

A real daemon (notes source, server, the tiny model, memory off) in this process gets a steady
stream of note saves (``SAVES_PER_S`` across ``NOTES`` notes) and a few WebSocket clients; every
``SAMPLE_S`` seconds we record the process's RSS and open file descriptors. A leak shows as a
line that keeps climbing; the section reports the first and last minute and the slope.
Not run by the tests (``tests/reliability/test_load.py`` is the short version).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from ambient.config import Config
from ambient.server import serve
from integrations.notes.bench_load import _Clients, _read, bench_config, open_fds, rss_kib

SAVES_PER_S = 4.0
NOTES = 10
CLIENTS = 5
SAMPLE_S = 5.0


LONG = True  # `ambient bench soak` only: not part of `ambient bench all`


def run(config: Config, quick: bool = False, minutes: float = 30.0) -> dict[str, Any]:
    from ambient.models import build_tiny_model

    minutes = min(minutes, 1.0) if quick else minutes
    with tempfile.TemporaryDirectory(prefix="ambient-bench-soak-") as tmp:
        model = build_tiny_model(Path(tmp) / "tiny-model")
        folder = Path(tmp) / "notes"
        folder.mkdir()
        cfg = bench_config(config, model, Path(tmp) / "home", folder)
        return asyncio.run(_soak(cfg, folder, minutes * 60))


async def _soak(cfg: Config, folder: Path, seconds: float) -> dict[str, Any]:
    from integrations.notes.bench import _wait_watching

    samples: list[tuple[float, int, int]] = []
    async with serve(cfg) as server, aiohttp.ClientSession() as session:
        daemon = server.daemon
        await _wait_watching(daemon)
        url = f"http://127.0.0.1:{server.port}/api/events"
        auth = {"Authorization": f"Bearer {server.token}"}
        seen = _Clients()
        sockets = [await session.ws_connect(url, headers=auth) for _ in range(CLIENTS)]
        readers = [asyncio.ensure_future(_read(ws, seen)) for ws in sockets]
        start = time.perf_counter()
        saves = 0
        next_sample = start
        while (now := time.perf_counter()) - start < seconds:
            if now >= next_sample:
                samples.append((round(now - start, 1), rss_kib(), open_fds()))
                next_sample += SAMPLE_S
            path = folder / f"note{saves % NOTES:02d}.md"
            await asyncio.to_thread(path.write_text, f"Note {saves % NOTES}.\nSave {saves}: the tide turns")
            saves += 1
            await asyncio.sleep(max(0.0, start + saves / SAVES_PER_S - time.perf_counter()))
        samples.append((round(time.perf_counter() - start, 1), rss_kib(), open_fds()))
        queue = daemon.pipeline.status()
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*readers, return_exceptions=True)
    return _summary(samples, saves, queue, seen)


def _summary(
    samples: list[tuple[float, int, int]], saves: int, queue: dict[str, Any], seen: _Clients
) -> dict[str, Any]:
    minute = [s for s in samples if s[0] <= 60] or samples[:1]
    last = [s for s in samples if s[0] >= samples[-1][0] - 60] or samples[-1:]
    span_min = max(samples[-1][0] - samples[0][0], 1.0) / 60
    return {
        "minutes": round(samples[-1][0] / 60, 1),
        "saves": saves,
        "offers_done": queue["done"],
        "dropped": queue["dropped"],
        "clients_disconnected_slow": seen.closed_slow,
        "rss_first_minute_mib": round(max(s[1] for s in minute) / 1024, 1),
        "rss_last_minute_mib": round(max(s[1] for s in last) / 1024, 1),
        "rss_slope_mib_per_min": round((last[-1][1] - minute[-1][1]) / 1024 / span_min, 2),
        "fds_first": samples[0][2],
        "fds_max": max(s[2] for s in samples),
        "fds_last": samples[-1][2],
        "samples": [{"t_s": t, "rss_mib": round(r / 1024, 1), "fds": f} for t, r, f in samples],
    }


def to_markdown(result: dict[str, Any]) -> str:
    r = result
    every = max(1, len(r["samples"]) // 10)
    rows = [f"| {s['t_s']:.0f} | {s['rss_mib']} | {s['fds']} |" for s in r["samples"][::every]]
    return "\n".join(
        [
            "## Soak: the daemon over time with saves arriving",
            "",
            f"{r['minutes']} min, {r['saves']} note saves ({SAVES_PER_S:g}/s over {NOTES} notes), {CLIENTS} "
            f"WebSocket clients, tiny model; {r['offers_done']} sampling jobs run, {r['dropped']} dropped, "
            f"{r['clients_disconnected_slow']} clients disconnected for being slow.",
            "",
            f"RSS {r['rss_first_minute_mib']} MiB in the first minute, {r['rss_last_minute_mib']} MiB in the "
            f"last (slope {r['rss_slope_mib_per_min']} MiB/min); open file descriptors "
            f"{r['fds_first']} → {r['fds_last']} (at most {r['fds_max']}).",
            "",
            "| t (s) | RSS (MiB) | open fds |",
            "| ---: | ---: | ---: |",
            *rows,
        ]
    )
