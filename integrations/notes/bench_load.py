"""``ambient bench load``: many WebSocket clients while note saves pour in (the tiny real model).

A real daemon (notes source on a temporary folder, server on 127.0.0.1) with ``clients``
WebSocket clients connected; ``saves`` note saves spread over ``seconds`` across ``notes``
notes. We record:

* whether every note's **latest** save got a finished offer (older saves of a note are
  cancelled or dropped by design: latest wins), and how many offers finished, were
  cancelled or failed;
* the pipeline queue at its fullest (it is bounded) and events it dropped;
* whether any client fell behind (a client that cannot keep up is disconnected, 1013);
* the daemon's RSS and open file descriptors at the start and at the end.

The test ``tests/reliability/test_load.py`` runs :func:`measure` with the same defaults.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from ambient.config import Config

CLIENTS = 50
SAVES = 1000
SECONDS = 45.0
NOTES = 20


@dataclasses.dataclass
class _Clients:
    """The WebSocket clients' side: what they saw."""

    offers_done: set[str] = dataclasses.field(default_factory=set)
    per_client: list[int] = dataclasses.field(default_factory=list)
    closed_slow: int = 0


def run(config: Config, quick: bool = False) -> dict[str, Any]:
    from ambient.models import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="ambient-bench-load-") as tmp:
        model = build_tiny_model(Path(tmp) / "tiny-model")
        saves, seconds = (200, 10.0) if quick else (SAVES, SECONDS)
        return measure(config, model, Path(tmp), saves=saves, seconds=seconds)


def bench_config(config: Config, model: Path, home: Path, folder: Path) -> Config:
    table = {"folders": [str(folder)], "quiet_ms": 50, "sidecars": False}
    base = dataclasses.replace(config, home=home, sources={"notes": table}, file=None)
    return base.replace(
        model__backend="local",
        model__path=str(model),
        model__threads=1,
        memory__enabled=False,
        server__port=0,
        sampling__n=2,
        sampling__max_tokens=8,
    )


def measure(
    config: Config,
    model: Path,
    tmp: Path,
    *,
    clients: int = CLIENTS,
    saves: int = SAVES,
    seconds: float = SECONDS,
    notes: int = NOTES,
) -> dict[str, Any]:
    folder = tmp / "notes"
    folder.mkdir(parents=True, exist_ok=True)
    cfg = bench_config(config, model, tmp / "home", folder)
    return asyncio.run(_measure(cfg, folder, clients, saves, seconds, notes))


async def _measure(
    cfg: Config, folder: Path, clients: int, saves: int, seconds: float, notes: int
) -> dict[str, Any]:
    from ambient.server import serve
    from integrations.notes.bench import _wait_watching

    async with serve(cfg) as server, aiohttp.ClientSession() as session:
        daemon = server.daemon
        await _wait_watching(daemon)
        seen = _Clients()
        url = f"http://127.0.0.1:{server.port}/api/events"
        auth = {"Authorization": f"Bearer {server.token}"}
        sockets = [await session.ws_connect(url, headers=auth) for _ in range(clients)]
        readers = [asyncio.ensure_future(_read(ws, seen)) for ws in sockets]
        rss_start, fds_start = rss_kib(), open_fds()
        began = time.perf_counter()
        finals, max_waiting = await _save(daemon, folder, saves, seconds, notes)
        saving_s = time.perf_counter() - began
        latest = await _wait_latest(daemon, finals, timeout=120.0)
        settle_s = time.perf_counter() - began - saving_s
        rss_end, fds_end = rss_kib(), open_fds()
        await asyncio.sleep(0.2)  # the last events reach the clients
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*readers, return_exceptions=True)
        states = await daemon.run_blocking(_offer_states, daemon)
        queue = daemon.pipeline.status()
    return {
        "clients": clients,
        "saves": saves,
        "notes": notes,
        "saving_s": round(saving_s, 1),
        "settle_s": round(settle_s, 1),
        "latest_offered": latest,
        "lost": notes - latest,
        "offers": states,
        "queue_max_waiting": max_waiting,
        "queue_bound": queue["max"],
        "dropped": queue["dropped"],
        "clients_disconnected_slow": seen.closed_slow,
        "events_per_client_min": min(seen.per_client, default=0),
        "events_per_client_max": max(seen.per_client, default=0),
        "offers_seen_by_clients": len(seen.offers_done),
        "rss_start_mib": round(rss_start / 1024, 1),
        "rss_end_mib": round(rss_end / 1024, 1),
        "fds_start": fds_start,
        "fds_end": fds_end,
    }


async def _read(ws: aiohttp.ClientWebSocketResponse, seen: _Clients) -> None:
    import json

    count = 0
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        count += 1
        event = json.loads(msg.data)
        if event["type"] == "offer_done":
            seen.offers_done.add(event["data"]["offer"]["id"])
    if ws.close_code == 1013:
        seen.closed_slow += 1
    seen.per_client.append(count)


async def _save(
    daemon: Any, folder: Path, saves: int, seconds: float, notes: int
) -> tuple[dict[str, str], int]:
    """Write ``saves`` saves round-robin over ``notes`` notes, evenly over ``seconds``; the final texts."""
    finals: dict[str, str] = {}
    max_waiting = 0
    interval = seconds / saves
    start = time.perf_counter()
    for i in range(saves):
        path = folder / f"note{i % notes:02d}.md"
        text = f"Note {i % notes}.\nSave {i}: the tide turns and the boats come home"
        await asyncio.to_thread(path.write_text, text)
        finals[os.path.realpath(path)] = text
        max_waiting = max(max_waiting, daemon.pipeline.status()["waiting"])
        delay = start + (i + 1) * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    return finals, max_waiting


async def _wait_latest(daemon: Any, finals: dict[str, str], timeout: float) -> int:
    """How many notes have their final text recorded with a finished offer at its point (waits for all)."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = await daemon.run_blocking(_latest_offered, daemon.app.store, finals)
        if done == len(finals):
            break
        await asyncio.sleep(0.2)
    return int(done)


def _latest_offered(store: Any, finals: dict[str, str]) -> int:
    from integrations.notes.history import NoteHistory

    history = NoteHistory(store)
    count = 0
    for path, text in finals.items():
        tree = history.find_tree(path)
        if tree is None:
            continue
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        point, offers = history.current_offers(tree)
        last = tree.meta.get("last") or {}
        if last.get("sha256") == sha and point is not None and any(o.state == "done" for o in offers):
            count += 1
    return count


def _offer_states(daemon: Any) -> dict[str, int]:
    store = daemon.app.store
    states: dict[str, int] = {}
    for tree in store.list_trees():
        for offer in store.tree_offers(tree.id):
            states[str(offer.state)] = states.get(str(offer.state), 0) + 1
    return states


def rss_kib(pid: int | None = None) -> int:
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int | None = None) -> int:
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))


def to_markdown(result: dict[str, Any]) -> str:
    r = result
    offers = ", ".join(f"{v} {k}" for k, v in sorted(r["offers"].items()))
    return "\n".join(
        [
            "## Load: WebSocket clients while note saves pour in",
            "",
            f"{r['clients']} WebSocket clients connected while {r['saves']} note saves (round-robin over "
            f"{r['notes']} notes) arrived over {r['saving_s']} s, with the tiny 2-layer model "
            "(n = 2, 8 tokens), notes source and server in one daemon.",
            "",
            "| measure | value |",
            "| --- | --- |",
            f"| notes whose latest save got a finished offer | {r['latest_offered']} / {r['notes']} "
            f"(lost: {r['lost']}) |",
            f"| offers by state | {offers} |",
            f"| time for the last offers after the last save | {r['settle_s']} s |",
            f"| pipeline queue at its fullest / bound | {r['queue_max_waiting']} / {r['queue_bound']} "
            f"({r['dropped']} dropped) |",
            f"| clients disconnected for being slow | {r['clients_disconnected_slow']} |",
            f"| events per client (min / max) | {r['events_per_client_min']} / "
            f"{r['events_per_client_max']} |",
            f"| RSS start → end | {r['rss_start_mib']} → {r['rss_end_mib']} MiB |",
            f"| open file descriptors start → end | {r['fds_start']} → {r['fds_end']} |",
            "",
            "Older saves of a note are cancelled by its newer ones (latest wins), so most offers end "
            "cancelled; what must never happen is a note whose latest save has no offer.",
        ]
    )
