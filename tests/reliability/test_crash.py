"""SIGKILL the daemon at random moments while it stores offers, picks, edits, note saves and imports.

After each kill: the store passes ``PRAGMA integrity_check`` and holds every action the API or
the CLI acknowledged (a 2xx answer read in full, an ``offer_done`` event, an import that exited 0);
an import killed half-way is all there or not there at all. After a restart, offers left streaming
are marked failed, and the memory index catches up by itself, embedding only the nodes it lacked.

Two children: ``ambient run`` with the tiny real model and memory on (a few kill points: each start
loads torch), and the same ``serve()`` with the fake sampler (many kill points, a second each).
``AMBIENT_CRASH_POINTS`` and ``AMBIENT_CRASH_REAL_POINTS`` raise the counts for a longer run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ambient.store import TreeStore
from ambient.tree import OfferState, Status
from tests.reliability.helpers import PYTHON, DaemonProcess, child_env

LIGHT_POINTS = int(os.environ.get("AMBIENT_CRASH_POINTS", "20"))
REAL_POINTS = int(os.environ.get("AMBIENT_CRASH_REAL_POINTS", "2"))
AMBIENT = str(Path(PYTHON).with_name("ambient"))


@dataclasses.dataclass
class Ledger:
    """Everything acknowledged to a client so far."""

    texts: dict[str, str] = dataclasses.field(default_factory=dict)  # node id -> text
    picked: set[str] = dataclasses.field(default_factory=set)
    offers: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # offer id -> node ids
    imports: dict[str, int] = dataclasses.field(default_factory=dict)  # root id -> node count
    unsure_imports: dict[str, int] = dataclasses.field(default_factory=dict)  # killed mid-way
    saves: int = 0
    actions: int = 0

    def check(self, store: TreeStore) -> None:
        assert store.integrity_check() == "ok"
        for node_id, text in self.texts.items():
            assert store.get_node(node_id).text == text, node_id
        for node_id in self.picked:
            assert store.get_node(node_id).status == Status.PICKED, node_id
        for offer_id, node_ids in self.offers.items():
            offer = store.get_offer(offer_id)
            assert offer.state == OfferState.DONE and offer.node_ids == node_ids, offer_id
        for root_id, count in self.imports.items():
            assert len(store.tree_nodes(store.get_node(root_id).tree_id)) == count, root_id
        for root_id, count in self.unsure_imports.items():  # all or nothing
            if store.tree_exists(_loom_tree_id(store, root_id)):
                assert len(store.tree_nodes(_loom_tree_id(store, root_id))) == count


def _loom_tree_id(store: TreeStore, root_id: str) -> str:
    try:
        return store.get_node(root_id).tree_id
    except Exception:
        return "-"


def _config_toml(home: Path, notes: Path, model: Path | None, memory: bool) -> None:
    model_table = f'[model]\npath = "{model}"\nthreads = 1\n' if model is not None else ""
    (home / "ambient.toml").write_text(
        model_table
        + "[sampling]\nn = 2\nmax_tokens = 6\n"
        + "[server]\nport = 0\ndebounce_ms = 0\n"
        + f"[memory]\nenabled = {'true' if memory else 'false'}\n"
        + f'[sources.notes]\nfolders = ["{notes}"]\nquiet_ms = 20\nsidecars = false\n'
    )


def _loom_file(path: Path, root_id: str, size: int) -> None:
    children = [
        {"id": f"{root_id}-c{i}", "text": f" branch {i} of {root_id}.", "children": []} for i in range(size)
    ]
    path.write_text(
        json.dumps({"root": {"id": root_id, "text": f"Imported {root_id}.", "children": children}})
    )


class Driver:
    """Acts like a person and a notes folder against a running daemon, recording what was acknowledged."""

    def __init__(self, proc: DaemonProcess, ledger: Ledger, notes: Path, rng: random.Random) -> None:
        self.proc, self.ledger, self.notes, self.rng = proc, ledger, notes, rng
        self.offered: list[str] = []

    async def run(self, session: aiohttp.ClientSession) -> None:
        listener = asyncio.ensure_future(self._listen(session))
        try:
            while True:
                await self._one(session)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _listen(self, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"{self.proc.base}/api/events", headers=self.proc.auth) as ws:
            async for msg in ws:
                event = json.loads(msg.data)
                if event["type"] == "offer_done" and event["data"]["offer"]["state"] == "done":
                    offer = event["data"]["offer"]
                    self.ledger.offers[offer["id"]] = tuple(offer["node_ids"])
                    self.offered += offer["node_ids"]

    async def _post(self, session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> Any:
        async with session.post(self.proc.base + path, json=body, headers=self.proc.auth) as resp:
            data = await resp.json()
            assert resp.status < 500, data
            return data if resp.status < 300 else None

    async def _one(self, session: aiohttp.ClientSession) -> None:
        kind = self.rng.choice(["tree", "child", "pick", "edit", "save"])
        if kind == "save":
            note = self.notes / f"note{self.rng.randrange(3)}.md"
            await asyncio.to_thread(note.write_text, f"Line {self.rng.random()} about the sea.\n")
            self.ledger.saves += 1
            await asyncio.sleep(0.03)
            return
        if (kind in ("pick", "edit") and not self.offered) or (kind == "child" and not self.ledger.texts):
            kind = "tree"
        if kind == "tree":
            text = f"Tree {self.rng.random()}: the lighthouse"
            data = await self._post(session, "/api/trees", {"text": text, "max_tokens": 4})
            if data:
                self.ledger.texts[data["root"]["id"]] = text
        elif kind == "child":
            parent = self.rng.choice(list(self.ledger.texts))
            text = f" and then {self.rng.random()}"
            data = await self._post(session, f"/api/nodes/{parent}/children", {"text": text, "offer": False})
            if data:
                self.ledger.texts[data["node"]["id"]] = text
        elif kind == "pick":
            node_id = self.rng.choice(self.offered)
            if await self._post(session, f"/api/nodes/{node_id}/pick", {}):
                self.ledger.picked.add(node_id)
        else:
            node_id = self.rng.choice(self.offered)
            text = f" edited {self.rng.random()}"
            data = await self._post(session, f"/api/nodes/{node_id}/edit", {"text": text})
            if data and data["created"]:
                self.ledger.texts[data["node"]["id"]] = text
                self.ledger.picked.add(data["node"]["id"])
        self.ledger.actions += 1


async def _import_in_background(home: Path, ledger: Ledger, tmp: Path, rng: random.Random) -> None:
    """``ambient import`` in its own process; killed too if the daemon is killed before it ends."""
    root_id = f"imp{rng.randrange(10**9)}"
    size = rng.randrange(5, 60)
    path = tmp / f"{root_id}.json"
    _loom_file(path, root_id, size)
    env = child_env(home, AMBIENT_MEMORY_ENABLED="false")
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "ambient.cli", "import", str(path), "--json",
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    ledger.unsure_imports[root_id] = size + 1
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["nodes"] == size + 1
    ledger.imports[root_id] = ledger.unsure_imports.pop(root_id)


async def _cycle(proc: DaemonProcess, ledger: Ledger, notes: Path, tmp: Path, rng: random.Random) -> None:
    """Drive the daemon, then SIGKILL it (and any import still running) at a random moment."""
    driver = Driver(proc, ledger, notes, rng)
    async with aiohttp.ClientSession() as session:
        work = [asyncio.ensure_future(driver.run(session))]
        if rng.random() < 0.5:
            work.append(asyncio.ensure_future(_import_in_background(proc.home, ledger, tmp, rng)))
        try:
            await asyncio.wait(work, timeout=rng.uniform(0.3, 2.5), return_when=asyncio.FIRST_EXCEPTION)
        finally:
            await asyncio.to_thread(proc.kill)  # also when the driver failed: never leave a daemon behind
            for task in work:
                task.cancel()
            results = await asyncio.gather(*work, return_exceptions=True)
    for result in results:
        if isinstance(result, AssertionError | IndexError | KeyError | TypeError):
            raise result


def _start(argv: list[str], home: Path, log: Path) -> DaemonProcess:
    proc = DaemonProcess(argv, home, log)
    try:
        proc.wait_ready()
    except BaseException:
        proc.kill()
        raise
    return proc


def _indexed_counts(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [int(m) for m in re.findall(r"indexed (\d+) node\(s\)", log.read_text())]


def _index_count(home: Path) -> int:
    """Nodes in the memory index, read offline (the daemon is down)."""
    from ambient.config import load_config
    from ambient.memory.location import Location

    config = load_config(env={"AMBIENT_HOME": str(home)})
    client = Location.from_config(config).connect()
    try:
        return int(client.get_collection(config.memory.collection).count())
    except Exception:
        return 0
    finally:
        client.close()


def _run_kill_points(
    tmp_path: Path, argv: list[str], points: int, model: Path | None, memory: bool, seed: int
) -> dict[str, Any]:
    home, notes = tmp_path / "home", tmp_path / "notes"
    home.mkdir()
    notes.mkdir()
    _config_toml(home, notes, model, memory)
    rng, ledger = random.Random(seed), Ledger()
    log = tmp_path / "daemon.log"
    started = time.perf_counter()
    caught_up: list[tuple[int, int]] = []
    for _ in range(points):
        proc = _start_and_catch_up(argv, home, log, memory, caught_up)
        asyncio.run(_cycle(proc, ledger, notes, tmp_path, rng))
        with TreeStore(home / "ambient.sqlite3") as store:
            ledger.check(store)
    proc = _start_and_catch_up(argv, home, log, memory, caught_up)
    assert proc.terminate() == 0
    with TreeStore(home / "ambient.sqlite3") as store:
        ledger.check(store)
        streaming = [o for t in store.list_trees() for o in store.tree_offers(t.id) if o.state == "streaming"]
        assert streaming == []
        nodes = store.node_count()
    if memory:
        assert _index_count(home) == nodes
    return {
        "kill_points": points,
        "actions": ledger.actions,
        "offers": len(ledger.offers),
        "picks": len(ledger.picked),
        "saves": ledger.saves,
        "imports": len(ledger.imports),
        "nodes": nodes,
        "seconds": round(time.perf_counter() - started, 1),
        "caught_up": caught_up,
    }


def _start_and_catch_up(
    argv: list[str], home: Path, log: Path, memory: bool, caught_up: list[tuple[int, int]]
) -> DaemonProcess:
    """Start the daemon; with memory on, its first sync must embed exactly the nodes the index lacked."""
    if not memory:
        return _start(argv, home, log)
    before = _index_count(home)
    seen = len(_indexed_counts(log))
    proc = _start(argv, home, log)
    try:
        deadline = time.monotonic() + 120
        while len(_indexed_counts(log)) == seen and time.monotonic() < deadline:
            time.sleep(0.05)
        counts = _indexed_counts(log)
        assert len(counts) > seen, "the memory index did not catch up after the restart"
        with TreeStore(home / "ambient.sqlite3") as store:
            missing = store.node_count() - before
        assert counts[seen] == missing, f"embedded {counts[seen]} node(s), the index lacked {missing}"
    except BaseException:
        proc.kill()
        raise
    caught_up.append((missing, counts[seen]))
    return proc


def test_sigkill_while_storing_loses_nothing_acknowledged(tmp_path: Path) -> None:
    figures = _run_kill_points(
        tmp_path, [PYTHON, "-m", "tests.reliability.crash_child"], LIGHT_POINTS, None, False, seed=9
    )
    print("crash (fake sampler):", figures)
    assert figures["actions"] > LIGHT_POINTS and figures["offers"] > 0


@pytest.mark.skipif(
    not os.environ.get("AMBIENT_SLOW_TESTS"),
    reason="each start of `ambient run` loads torch (about 30 s a kill point on 2 cores): "
    "set AMBIENT_SLOW_TESTS=1 to run it",
)
def test_sigkill_of_ambient_run_with_the_tiny_model(tmp_path: Path, tiny_model_path: Path) -> None:
    argv = [AMBIENT, "-v", "run", "--no-browser"]
    figures = _run_kill_points(tmp_path, argv, REAL_POINTS, tiny_model_path, True, seed=10)
    print("crash (ambient run, tiny model, memory on):", figures)
    assert figures["offers"] > 0
