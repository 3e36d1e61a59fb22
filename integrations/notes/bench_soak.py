"""``ambient bench soak [--minutes 30]``: the daemon running for a long while with saves arriving.

A real daemon (notes source, server, the tiny model, memory off) in this process gets a steady
stream of note saves (``SAVES_PER_S`` across ``NOTES`` notes) and ``CLIENTS`` WebSocket clients;
every ``SAMPLE_S`` seconds we record the process's RSS (and its anonymous part), threads and open
file descriptors. A leak shows as a line that keeps climbing; the section reports the first and
last minute and the least-squares slope of RSS from minute 10 (:data:`WARM_UP_S`) to the end.

The clients run in a child process (this module run with ``python -m``), as browsers would: in
this process their own memory (aiohttp's client, the events they parse) made the daemon's RSS
climb by about 0.1-0.2 MiB/min, which was theirs, not the daemon's.
Not run by the tests (``tests/reliability/test_load.py`` is the short version).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from ambient.config import Config
from integrations.notes.bench_load import _Clients, _read, bench_config, open_fds

SAVES_PER_S = 4.0
NOTES = 10
CLIENTS = 5
SAMPLE_S = 5.0
WARM_UP_S = 600.0  # the slope is fitted from here (or from a third of a shorter run) to the end
CLIENT_START_S = 60.0
CLIENTS_MODULE = "integrations.notes.bench_soak"

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


async def _soak(cfg: Config, folder: Path, seconds: float, clients: int = CLIENTS) -> dict[str, Any]:
    from ambient.server import serve
    from integrations.notes.bench import _wait_watching

    samples = _Samples()
    async with serve(cfg) as server:
        daemon = server.daemon
        await _wait_watching(daemon)
        url = f"http://127.0.0.1:{server.port}/api/events"
        async with ClientProcess(url, server.token, clients) as seen:
            load_start = os.getloadavg()
            start = time.perf_counter()
            saves = 0
            next_sample = start
            while (now := time.perf_counter()) - start < seconds:
                if now >= next_sample:
                    samples.take(now - start)
                    next_sample += SAMPLE_S
                await asyncio.to_thread(_save, folder, saves)
                saves += 1
                await asyncio.sleep(max(0.0, start + saves / SAVES_PER_S - time.perf_counter()))
            samples.take(time.perf_counter() - start)
            load_end = os.getloadavg()
            queue = daemon.pipeline.status()
    return _summary(samples.as_dicts(), saves, queue, seen.result, (load_start, load_end))


def _save(folder: Path, i: int) -> None:
    (folder / f"note{i % NOTES:02d}.md").write_text(f"Note {i % NOTES}.\nSave {i}: the tide turns")


class _Samples:
    """The measurements, kept in flat arrays while the soak runs (a few bytes each, not a dict each)."""

    FIELDS = ("VmRSS", "RssAnon", "Threads")

    def __init__(self) -> None:
        self.t = array.array("d")
        self.rss, self.anon, self.threads, self.fds = (array.array("q") for _ in range(4))

    def take(self, t: float) -> None:
        status = _proc_status(self.FIELDS)
        self.t.append(t)
        self.rss.append(status["VmRSS"])
        self.anon.append(status["RssAnon"])
        self.threads.append(status["Threads"])
        self.fds.append(open_fds())

    def as_dicts(self) -> list[dict[str, Any]]:
        rows = zip(self.t, self.rss, self.anon, self.threads, self.fds, strict=True)
        return [
            {"t_s": round(t, 1), "rss_mib": _mib(r), "anon_mib": _mib(a), "threads": n, "fds": f}
            for t, r, a, n, f in rows
        ]


def _mib(kib: int) -> float:
    return round(kib / 1024, 2)


def _proc_status(fields: Sequence[str]) -> dict[str, int]:
    """Numeric fields of /proc/self/status (kB for the memory ones); 0 where absent."""
    found = dict.fromkeys(fields, 0)
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in found:
            found[key] = int(value.split()[0])
    return found


def slope_per_min(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per minute (0 for fewer than two times)."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def fit_from_s(duration_s: float) -> float:
    """Where the slope's fit starts: minute 10, or a third of a run shorter than 30 minutes."""
    return min(WARM_UP_S, duration_s / 3)


def _summary(
    samples: list[dict[str, Any]],
    saves: int,
    queue: dict[str, Any],
    seen: dict[str, Any],
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> dict[str, Any]:
    end = samples[-1]["t_s"]
    minute = [s for s in samples if s["t_s"] <= 60] or samples[:1]
    last = [s for s in samples if s["t_s"] >= end - 60] or samples[-1:]
    fit_from = fit_from_s(end)
    fitted = [s for s in samples if s["t_s"] >= fit_from]
    return {
        "minutes": round(end / 60, 1),
        "saves": saves,
        "offers_done": queue["done"],
        "dropped": queue["dropped"],
        "clients": seen.get("clients", 0),
        "clients_disconnected_slow": seen.get("closed_slow", 0),
        "events_per_client_min": seen.get("events_min", 0),
        "rss_first_minute_mib": round(max(s["rss_mib"] for s in minute), 1),
        "rss_last_minute_mib": round(max(s["rss_mib"] for s in last), 1),
        "slope_from_min": round(fit_from / 60, 1),
        "slope_to_min": round(end / 60, 1),
        "slope_samples": len(fitted),
        "rss_slope_mib_per_min": round(slope_per_min([(s["t_s"], s["rss_mib"]) for s in fitted]), 3),
        "anon_slope_mib_per_min": round(slope_per_min([(s["t_s"], s["anon_mib"]) for s in fitted]), 3),
        "threads_first": samples[0]["threads"],
        "threads_max": max(s["threads"] for s in samples),
        "fds_first": samples[0]["fds"],
        "fds_max": max(s["fds"] for s in samples),
        "fds_last": samples[-1]["fds"],
        "load_start": [round(x, 2) for x in load[0]],
        "load_end": [round(x, 2) for x in load[1]],
        "samples": samples,
    }


def to_markdown(result: dict[str, Any]) -> str:
    r = result
    every = max(1, len(r["samples"]) // 12)
    rows = [
        f"| {s['t_s']:.0f} | {s['rss_mib']:.1f} | {s['anon_mib']:.1f} | {s['threads']} | {s['fds']} |"
        for s in [*r["samples"][::every][:-1], r["samples"][-1]]
    ]
    return "\n".join(
        [
            "## Soak: the daemon over time with saves arriving",
            "",
            f"{r['minutes']} min, {r['saves']} note saves ({SAVES_PER_S:g}/s over {NOTES} notes), "
            f"{r['clients']} WebSocket clients in a child process (each saw at least "
            f"{r['events_per_client_min']} events), tiny model, memory off; {r['offers_done']} sampling "
            f"jobs run, {r['dropped']} dropped, {r['clients_disconnected_slow']} clients disconnected for "
            "being slow.",
            "",
            f"RSS {r['rss_first_minute_mib']} MiB in the first minute, {r['rss_last_minute_mib']} MiB in the "
            f"last. **Slope {r['rss_slope_mib_per_min']} MiB/min**: least squares over the "
            f"{r['slope_samples']} samples (every {SAMPLE_S:g} s) from minute {r['slope_from_min']:g} to "
            f"minute {r['slope_to_min']:g}, past the warm-up (anonymous memory alone: "
            f"{r['anon_slope_mib_per_min']} MiB/min). Threads {r['threads_first']} "
            f"(at most {r['threads_max']}); open file descriptors {r['fds_first']} → {r['fds_last']} "
            f"(at most {r['fds_max']}).",
            "",
            f"Load average (1 / 5 / 15 min) {' / '.join(map(str, r['load_start']))} at the start, "
            f"{' / '.join(map(str, r['load_end']))} at the end: other work on the machine shares its cores, "
            "so time-based figures vary; RSS, threads and descriptors are what this measures. The clients "
            "run in their own process, as browsers do, so their memory is not counted as the daemon's.",
            "",
            "| t (s) | RSS (MiB) | anonymous (MiB) | threads | open fds |",
            "| ---: | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )


# ------------------------------------------------------------------ the clients' process
class ClientProcess:
    """``count`` WebSocket clients in a child process, reading events until told to stop.

    ``async with ClientProcess(url, token, count) as seen`` returns once every client is connected;
    leaving the block closes them and fills ``seen.result`` (what they saw). The token goes
    through the child's stdin, never its command line.
    """

    def __init__(self, url: str, token: str, count: int) -> None:
        self.url, self.token, self.count = url, token, count
        self.result: dict[str, Any] = {}
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> ClientProcess:
        self._proc = proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", CLIENTS_MODULE, self.url, str(self.count),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(self.token.encode() + b"\n")
        await proc.stdin.drain()
        line = await asyncio.wait_for(proc.stdout.readline(), CLIENT_START_S)
        if line.strip() != b"ready":
            await self._end()
            raise RuntimeError(f"the soak's clients did not connect (they said {line!r}): read their stderr")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._end()

    async def _end(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        with contextlib.suppress(ConnectionError):  # it may have gone already
            proc.stdin.write(b"stop\n")
            await proc.stdin.drain()
            proc.stdin.close()
        out = await asyncio.wait_for(proc.stdout.read(), CLIENT_START_S)
        await proc.wait()
        lines = out.decode().strip().splitlines()
        self.result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}


async def _clients(url: str, token: str, count: int) -> dict[str, Any]:
    """In the child: connect, say ``ready``, read until stdin says stop (or closes), then report."""
    seen = _Clients()
    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bearer {token}"}
        sockets = [await session.ws_connect(url, headers=auth) for _ in range(count)]
        readers = [asyncio.ensure_future(_read(ws, seen)) for ws in sockets]
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*readers, return_exceptions=True)
    return {
        "clients": count,
        "closed_slow": seen.closed_slow,
        "events_min": min(seen.per_client, default=0),
        "events_max": max(seen.per_client, default=0),
        "offers_seen": len(seen.offers_done),
    }


def _main(argv: Sequence[str]) -> int:
    url, count = argv[0], int(argv[1])
    token = sys.stdin.readline().strip()
    print(json.dumps(asyncio.run(_clients(url, token, count))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
