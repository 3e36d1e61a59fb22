"""Memory at scale: index up to 100,000 generated fragments and measure what a person would feel.

Through the real path: nodes go into a fresh TreeStore (trees of 100 nodes,
picked, offered and pruned), :meth:`MemoryIndex.sync` embeds them, searches go
through :meth:`MemoryIndex.search`. For each size it reports embedding
throughput, search latency p50/p95 (query embedding included, and the vector
query alone), disk and resident memory. Side by side, the obvious alternative:
exact search by brute force over the same vectors with numpy, and the recall of
Chroma's HNSW index against it. Then a restart: reopen time, the first query
after it, and a sync with nothing changed (it must embed nothing), with and
without the state file.

Everything happens in a temporary folder (``workdir``), removed at the end.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ambient.config import Config
from ambient.memory import MemoryIndex, open_memory
from ambient.store import TreeStore
from ambient.tree import HUMAN, MODEL, Author, Node, Status, Tree, new_id

SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (500, 2_000)
TREE_SIZE = 100
QUERIES = 100
_STATUSES = (Status.PICKED, Status.PICKED, Status.OFFERED, Status.OFFERED, Status.OFFERED, Status.PRUNED)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_NOUNS = _words(
    "harbour river lamp letter garden engine kitchen window forest market bridge storm teacher "
    "violin ledger mountain station library orchard lighthouse compass bakery meadow tower clock "
    "village ship anchor desert canyon glacier notebook theory proof melody painting fever doctor "
    "island winter summer harvest archive server database budget meeting contract sister brother"
)
_VERBS = _words(
    "remembers keeps loses finds carries mends breaks follows builds watches paints measures "
    "forgets answers hides opens closes questions repairs sells counts signs explains"
)
_ADJECTIVES = _words(
    "quiet old bright broken distant careful hidden golden narrow patient restless silver strange "
    "tired warm cold early late heavy gentle"
)


def run(
    config: Config,
    *,
    quick: bool = False,
    sizes: Sequence[int] | None = None,
    queries: int = QUERIES,
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark in a temporary home; returns plain data for :func:`to_markdown`."""
    sizes = tuple(sorted(sizes or (QUICK_SIZES if quick else SIZES)))
    say = progress or (lambda message: None)
    home = Path(tempfile.mkdtemp(prefix="ambient-bench-memory-", dir=workdir))
    bench_config = config.replace(home=home)
    if config.memory.url:
        bench_config = bench_config.replace(memory__collection=f"ambient-bench-{new_id()[:12]}")
    rng = random.Random(0)
    result: dict[str, Any] = {"load_before": _load(), "sizes": [], "queries": queries}
    try:
        with TreeStore(bench_config.db_path) as store:
            index = open_memory(bench_config)
            result["embedder"] = index.embedder.identity
            result["where"] = "Chroma server" if config.memory.url else "embedded chromadb"
            try:
                query_texts = [_sentence(rng) for _ in range(queries)]
                for size in sizes:
                    say(f"indexing {size} fragments")
                    result["sizes"].append(_measure_size(index, store, size, query_texts, rng))
                index.close()
                result["restart"] = _measure_restart(bench_config, store, query_texts[0])
                result["cold_restart"] = cold_restart(bench_config)
            finally:
                index.close()
            if config.memory.url:
                _drop_collection(bench_config)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    result["load_after"] = _load()
    return result


def _measure_size(
    index: MemoryIndex, store: TreeStore, size: int, query_texts: list[str], rng: random.Random
) -> dict[str, Any]:
    _add_trees(store, size - store.node_count(), rng)
    before = index.embedder.embedded
    start = time.perf_counter()
    embedded = index.sync(store)
    seconds = time.perf_counter() - start
    for text in query_texts[:5]:  # warm up
        index.search(text, 5)
    search_ms = [_timed(index.search, text, 5) for text in query_texts]
    vectors = index.embedder.embed(query_texts)
    collection = index.collection
    vector_ms = [_timed(collection.query, query_embeddings=[v], n_results=5, include=[]) for v in vectors]
    exact = _exact_search(collection, vectors)
    return {
        "fragments": size,
        "embedded": embedded,
        "embedder_calls": index.embedder.embedded - before,
        "embed_seconds": round(seconds, 2),
        "texts_per_second": round(embedded / seconds, 1) if seconds else None,
        "search_p50_ms": _pct(search_ms, 50),
        "search_p95_ms": _pct(search_ms, 95),
        "vector_p50_ms": _pct(vector_ms, 50),
        "vector_p95_ms": _pct(vector_ms, 95),
        **exact,
        "disk_bytes": _disk(index.location.folder),
        "rss_bytes": _rss(),
    }


def _exact_search(collection: Any, queries: np.ndarray) -> dict[str, Any]:
    """Brute force with numpy over all stored vectors: its latency, and HNSW's recall@5 against it."""
    ids: list[str] = []
    rows: list[np.ndarray] = []
    offset = 0
    while True:
        got = collection.get(limit=5000, offset=offset, include=["embeddings"])
        if not got["ids"]:
            break
        ids.extend(got["ids"])
        rows.append(np.asarray(got["embeddings"], dtype=np.float32))
        offset += len(got["ids"])
    matrix = np.concatenate(rows)
    times: list[float] = []
    hits = 0
    for q in queries:
        start = time.perf_counter()
        top = np.argpartition(-(matrix @ q), 5)[:5]
        times.append((time.perf_counter() - start) * 1000)
        approx = collection.query(query_embeddings=[q], n_results=5, include=[])["ids"][0]
        hits += len({ids[i] for i in top} & set(approx))
    return {
        "exact_p50_ms": _pct(times, 50),
        "exact_p95_ms": _pct(times, 95),
        "hnsw_recall_at_5": round(hits / (5 * len(queries)), 3),
        "stored": len(ids),
    }


_COLD_SCRIPT = """
import json, sys, time
start = time.perf_counter()
from ambient.config import load_config
from ambient.memory import open_memory
from ambient.store import TreeStore
config = load_config()
with TreeStore(config.db_path) as store:
    index = open_memory(config)
    embedded = index.sync(store)
    index.close()
print(json.dumps({"seconds": time.perf_counter() - start, "embedded": embedded,
                  "torch_loaded": "torch" in sys.modules}))
"""


def cold_restart(config: Config) -> dict[str, Any]:
    """A new process (``python -c``): import ambient, open the index, sync with nothing changed."""
    env = {**os.environ, "AMBIENT_HOME": str(config.home), "AMBIENT_MEMORY_URL": config.memory.url}
    env["AMBIENT_MEMORY_COLLECTION"] = config.memory.collection
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _COLD_SCRIPT], env=env, capture_output=True, text=True, timeout=600, check=True
    )
    wall = time.perf_counter() - start
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "process_seconds": round(wall, 2),
        "in_process_seconds": round(found["seconds"], 2),
        "embedded": found["embedded"],
        "torch_loaded": found["torch_loaded"],
    }


def _measure_restart(config: Config, store: TreeStore, query: str) -> dict[str, Any]:
    """Reopen the index as a new process would, then sync with nothing changed."""
    start = time.perf_counter()
    index = open_memory(config)
    reopen = time.perf_counter() - start
    try:
        before = index.embedder.embedded
        start = time.perf_counter()
        embedded = index.sync(store)
        sync_seconds = time.perf_counter() - start
        first_query_ms = _timed(index.search, query, 5)
        index.location.state_path.unlink(missing_ok=True)
        index.close()
        index = open_memory(config)
        start = time.perf_counter()
        verify_embedded = index.sync(store)
        verify_seconds = time.perf_counter() - start
        return {
            "reopen_seconds": round(reopen, 3),
            "sync_seconds": round(sync_seconds, 3),
            "restart_seconds": round(reopen + sync_seconds, 3),
            "embedded": embedded,
            "first_query_ms": round(first_query_ms, 1),
            "verify_without_state_seconds": round(verify_seconds, 2),
            "verify_embedded": verify_embedded,
            "embedder_calls": index.embedder.embedded - before,
        }
    finally:
        index.close()


# ----------------------------------------------------------------- helpers
def _add_trees(store: TreeStore, count: int, rng: random.Random) -> None:
    """``count`` generated nodes, in trees of up to TREE_SIZE nodes that branch at random."""
    while count > 0:
        size = min(TREE_SIZE, count)
        tree_id, t = new_id(), time.time()
        nodes: list[Node] = []
        for _ in range(size):
            parent = nodes[rng.randrange(len(nodes))].id if nodes else None
            status = Status.PICKED if parent is None else rng.choice(_STATUSES)
            author = Author(HUMAN) if parent is None else Author(MODEL, "bench")
            text = " ".join(_sentence(rng) for _ in range(rng.randint(1, 3)))
            nodes.append(
                Node(new_id(), tree_id, parent, (" " if parent else "") + text, author, status, t, t)
            )
        tree = Tree(tree_id, nodes[0].id, f"bench tree {tree_id[:8]}", f"bench:{rng.randrange(7)}", t, t)
        store.import_nodes(tree, nodes)
        count -= size


def _sentence(rng: random.Random) -> str:
    adjective, noun, verb = rng.choice(_ADJECTIVES), rng.choice(_NOUNS), rng.choice(_VERBS)
    other, place = rng.choice(_NOUNS), rng.choice(_NOUNS)
    return f"The {adjective} {noun} {verb} the {other} near the {place}."


def _timed(fn: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return (time.perf_counter() - start) * 1000


def _pct(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return round(values[0], 2) if values else 0.0
    return round(statistics.quantiles(values, n=100, method="inclusive")[pct - 1], 2)


def _disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _rss() -> int:
    """Resident memory now (Linux /proc), else the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _drop_collection(config: Config) -> None:
    from ambient.memory.location import Location

    location = Location.from_config(config)
    client = location.connect()
    try:
        client.delete_collection(location.collection)
    finally:
        client.close()


# ---------------------------------------------------------------- markdown
def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "## Memory",
        "",
        f"{result.get('where', '')}, embedder {result.get('embedder', '?')}; generated fragments in trees "
        f"of {TREE_SIZE} nodes; {result['queries']} queries per size, k = 5. Load average before/after: "
        f"{result['load_before']} / {result['load_after']} (other work on the machine slows everything).",
        "",
        "| fragments | embed texts/s | search p50 / p95 ms | vector query p50 / p95 ms "
        "| numpy exact p50 / p95 ms | HNSW recall@5 | disk MiB | RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in result["sizes"]:
        lines.append(
            f"| {s['fragments']:,} | {s['texts_per_second']} | {s['search_p50_ms']} / {s['search_p95_ms']} "
            f"| {s['vector_p50_ms']} / {s['vector_p95_ms']} | {s['exact_p50_ms']} / {s['exact_p95_ms']} "
            f"| {s['hnsw_recall_at_5']} | {s['disk_bytes'] / 2**20:.1f} | {s['rss_bytes'] / 2**20:.0f} |"
        )
    r = result.get("restart")
    if r:
        lines += [
            "",
            f"Restart with nothing changed: reopen {r['reopen_seconds']} s + sync {r['sync_seconds']} s "
            f"= **{r['restart_seconds']} s**, {r['embedded']} embedded; first query after reopen "
            f"{r['first_query_ms']} ms. Without the state file, comparing every hash: "
            f"{r['verify_without_state_seconds']} s, {r['verify_embedded']} embedded.",
        ]
    cold = result.get("cold_restart")
    if cold:
        lines += [
            "",
            f"The same restart in a new process (`python -c`: imports, open, sync): "
            f"**{cold['process_seconds']} s** wall, {cold['embedded']} embedded, torch "
            f"{'loaded' if cold['torch_loaded'] else 'not even imported'}.",
        ]
    largest = result["sizes"][-1] if result["sizes"] else None
    if largest and r:
        ok_query = largest["search_p95_ms"] < 50
        restart = max(r["restart_seconds"], cold["process_seconds"] if cold else 0)
        ok_restart = restart < 5 and r["embedded"] == 0 and (not cold or cold["embedded"] == 0)
        lines += [
            "",
            f"Targets at {largest['fragments']:,}: search p95 under 50 ms: "
            f"{'met' if ok_query else 'missed'} ({largest['search_p95_ms']} ms); restart with no "
            f"changes under 5 s embedding nothing: {'met' if ok_restart else 'missed'}.",
        ]
    return "\n".join(lines) + "\n"
