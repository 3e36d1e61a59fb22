"""The memory index, with the real embedding model and real chromadb (embedded, and a real `chroma run`)."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ambient.app import App
from ambient.cli import main
from ambient.config import Config, load_config
from ambient.errors import InvalidInput, MemoryUnavailable, ModelUnavailable
from ambient.memory import MemoryIndex, get_embedder, open_memory
from ambient.memory.embedder import resolve_embedder_path
from ambient.offers import make_offer, options_from
from ambient.sampling.registry import register_backend
from ambient.store import TreeStore
from ambient.tree import MODEL, Author, NewBranch
from tests.fakes import FakeSampler
from tests.servers import chroma, free_port

LOOM_DEMO = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "loom" / "loom_demo.json"

TEXTS = {
    "storm": "The storm tore the mainsail to ribbons, and we drifted for three days without wind.",
    "harbour": "At dusk the harbour master counted the fishing boats as they came home.",
    "tomato": "My tomato plants wilted in the August heat, so now I water them at dawn.",
    "migration": "The database migration failed halfway because the disk was completely full.",
    "bread": "Every Sunday she baked bread, kneading the dough by hand for twenty minutes.",
    "violin": "He practised the violin concerto until his fingers ached and the neighbours complained.",
}


# ------------------------------------------------------------------ fixtures
def make_config(home: Path, url: str = "") -> Config:
    config = load_config(env={"AMBIENT_HOME": str(home)})
    collection = f"t-{uuid.uuid4().hex[:12]}" if url else config.memory.collection
    return config.replace(memory__url=url, memory__collection=collection)


@pytest.fixture(params=["embedded", "server"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    url = request.getfixturevalue("chroma_server") if request.param == "server" else ""
    return make_config(tmp_path / "home", url)


@pytest.fixture
def store(config: Config) -> Iterator[TreeStore]:
    with TreeStore(config.db_path) as s:
        yield s


@pytest.fixture
def memory(config: Config) -> Iterator[MemoryIndex]:
    index = open_memory(config)
    yield index
    index.close()


def build_corpus(store: TreeStore) -> dict[str, str]:
    """Trees on unrelated topics: picked, offered (never chosen) and pruned nodes. Returns name -> node id."""
    ids: dict[str, str] = {}
    _, sea = store.create_tree("Notes from the voyage.\n", source="cli")
    ids["storm"] = store.add_node(sea.id, TEXTS["storm"]).id
    model = Author(MODEL, "fake")
    _, offered = store.add_offer(
        sea.id, [NewBranch(TEXTS["harbour"]), NewBranch(TEXTS["violin"])], author=model
    )
    ids["harbour"], ids["violin"] = offered[0].id, offered[1].id
    store.prune(ids["violin"])
    _, garden = store.create_tree("Garden diary.\n", source="note:garden.md")
    ids["tomato"] = store.add_node(garden.id, TEXTS["tomato"]).id
    _, ops = store.create_tree("Incident log.\n", source="discord:ops")
    ids["migration"] = store.add_node(ops.id, TEXTS["migration"]).id
    _, kitchen = store.create_tree("Family memories.\n", source="note:family.md")
    ids["bread"] = store.add_node(kitchen.id, TEXTS["bread"]).id
    return ids


def top_ids(memory: MemoryIndex, query: str, k: int = 3, **filters: str) -> list[str]:
    return [f.node_id for f in memory.search(query, k, **filters)]


# ------------------------------------------------------------------ embedder
def test_embedder_gives_unit_vectors_and_refuses_missing_models(tmp_path: Path) -> None:
    embedder = get_embedder(make_config(tmp_path))
    vectors = embedder.embed(["a cat sat on the mat", "a kitten rested on the rug", "tax law reform"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert np.allclose(embedder.embed(["tax law reform"])[0], vectors[2], atol=1e-5)  # batch-independent
    with pytest.raises(ModelUnavailable, match="never downloads"):
        resolve_embedder_path(str(tmp_path / "no-model-here"))


def test_query_path_matches_the_batch_path(tmp_path: Path) -> None:
    """A query (small batch) runs on the float16-packed encoder; its vectors must match the float32 ones.

    Where torch has no FBGEMM (builds other than x86-64) queries use the float32 model itself.
    """
    from ambient.packing import fbgemm_ready

    embedder = get_embedder(make_config(tmp_path))
    texts = [f"how do gardens grow in winter light, question {i}" for i in range(12)]
    batch = embedder.embed(texts)  # 12 texts: the float32 batch path
    one_by_one = np.concatenate([embedder.embed([t]) for t in texts])  # the packed query path
    assert float((batch * one_by_one).sum(axis=1).min()) > 0.99999
    if fbgemm_ready():
        assert embedder._query_model is not None
        assert not np.array_equal(batch, one_by_one)  # really a different path, not the same model twice
    else:
        assert embedder._query_model is None


def test_chroma_uses_ambients_embedding_function(memory: MemoryIndex) -> None:
    before = memory.embedder.embedded
    memory.collection.add(ids=["x1"], documents=["a lighthouse in the fog"], metadatas=[{"node_id": "x1"}])
    found = memory.collection.query(query_texts=["a beacon on a misty coast"], n_results=1)
    assert found["ids"][0] == ["x1"] and memory.embedder.embedded == before + 2


# ------------------------------------------------------------- search, sync
def test_search_finds_by_meaning(store: TreeStore, memory: MemoryIndex) -> None:
    ids = build_corpus(store)
    assert memory.sync(store) == store.node_count()
    assert top_ids(memory, "a ship's sail ripped apart in bad weather")[0] == ids["storm"]
    assert top_ids(memory, "vegetables dying because summer is too hot")[0] == ids["tomato"]
    assert top_ids(memory, "ran out of storage space during a schema upgrade")[0] == ids["migration"]
    assert top_ids(memory, "making homemade loaves at the weekend")[0] == ids["bread"]
    best = memory.search("a ship's sail ripped apart in bad weather", 1)[0]
    assert 0.3 < best.score <= 1.0
    assert best.text == TEXTS["storm"] and best.lead.endswith("Notes from the voyage.\n")
    assert best.status == "picked" and best.source == "cli"


def test_roads_not_taken_are_found_and_filters_apply(store: TreeStore, memory: MemoryIndex) -> None:
    ids = build_corpus(store)
    memory.sync(store)
    assert top_ids(memory, "fishermen returning to port in the evening")[0] == ids["harbour"]
    assert top_ids(memory, "rehearsing a piece for string instrument")[0] == ids["violin"]
    found = memory.search("fishermen returning to port in the evening", 5, status="offered")
    assert {f.node_id for f in found} == {ids["harbour"]}
    pruned = memory.search("anything at all", 5, status="pruned")
    assert [f.node_id for f in pruned] == [ids["violin"]]
    in_notes = memory.search("boats and the sea", 10, source="note:garden.md")
    assert {f.node_id for f in in_notes} <= set(
        n.id for n in store.tree_nodes(store.get_node(ids["tomato"]).tree_id)
    )
    assert ids["storm"] not in top_ids(memory, "a sail torn by a storm", 5, source="note:family.md")


def test_resync_and_restart_embed_nothing(config: Config, store: TreeStore, memory: MemoryIndex) -> None:
    build_corpus(store)
    first = memory.sync(store)
    assert first == store.node_count()
    before = memory.embedder.embedded
    assert memory.sync(store) == 0
    memory.close()
    reopened = open_memory(config)  # a restart
    try:
        assert reopened.sync(store) == 0
        reopened.location.state_path.unlink()  # even without the state file: hashes are compared
        reopened.close()
        reopened = open_memory(config)
        writes: list[str] = []
        collection = reopened.collection
        for name in ("add", "upsert", "update", "delete"):
            real = getattr(collection, name)
            setattr(
                collection,
                name,
                lambda *a, _real=real, _name=name, **kw: writes.append(_name) or _real(*a, **kw),
            )
        assert reopened.sync(store) == 0
        assert writes == []  # nothing rewritten either: times read back from Chroma compare equal
        assert reopened.count() == first
    finally:
        reopened.close()
    assert memory.embedder.embedded == before


def test_edit_and_prune_update_without_duplicates(store: TreeStore, memory: MemoryIndex) -> None:
    ids = build_corpus(store)
    memory.sync(store)
    count = memory.count()
    child = store.add_node(
        ids["migration"], " We restored last night's backup and then tried the whole thing again."
    )
    short = store.add_node(ids["migration"], " It failed again.")  # so short it is embedded with its lead
    assert memory.sync(store) == 2
    store.edit(ids["migration"], "The quarterly budget meeting ran two hours over time.")
    before = memory.embedder.embedded
    assert memory.sync(store) == 2  # the node and its short child; the long child keeps its vector
    assert memory.embedder.embedded == before + 2
    assert memory.count() == count + 2
    assert ids["migration"] in top_ids(memory, "a finance meeting that lasted far too long", 2)
    assert ids["migration"] not in top_ids(memory, "ran out of disk space during a schema upgrade", 2)
    found = {f.node_id: f for f in memory.search("restored from a backup and retried", 10)}
    assert "budget meeting" in found[child.id].lead and "budget meeting" in found[short.id].lead
    store.prune(ids["storm"])
    store.pick(ids["harbour"])
    assert memory.sync(store) == 0  # status changes update metadata only
    assert memory.search("sail torn by a storm", 5, status="pruned")[0].node_id == ids["storm"]
    assert memory.count() == count + 2


def test_bad_queries_are_refused(store: TreeStore, memory: MemoryIndex) -> None:
    for query in ("", "   \n", "x" * 2001):
        with pytest.raises(InvalidInput):
            memory.search(query)
    with pytest.raises(InvalidInput, match="k must be"):
        memory.search("boats", 0)
    with pytest.raises(InvalidInput, match="status"):
        memory.search("boats", 3, status="chosen")
    assert memory.retriever()("   ", 3, None) == []


def test_retriever_leaves_out_given_nodes(store: TreeStore, memory: MemoryIndex) -> None:
    ids = build_corpus(store)
    memory.sync(store)
    retrieve = memory.retriever()
    assert retrieve("a sail torn by a storm at sea", 1, None)[0].node_id == ids["storm"]
    found = retrieve("a sail torn by a storm at sea", 3, None, {ids["storm"]})
    assert ids["storm"] not in [f.node_id for f in found]
    tree_id = store.get_node(ids["storm"]).tree_id
    assert all(f.tree_id != tree_id for f in retrieve("a sail torn by a storm at sea", 5, tree_id))


# ----------------------------------------------------------- lost, corrupt
@pytest.fixture
def local_config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "home")


def test_lost_index_folder_is_rebuilt_from_sqlite(local_config: Config) -> None:
    with TreeStore(local_config.db_path) as store:
        build_corpus(store)
        index = open_memory(local_config)
        index.sync(store)
        before = [(f.node_id, round(f.score, 4)) for f in index.search("boats coming home at night", 4)]
        index.close()
        shutil.rmtree(local_config.memory_dir)
        index = open_memory(local_config)
        try:
            assert index.sync(store) == store.node_count()
            after = [(f.node_id, round(f.score, 4)) for f in index.search("boats coming home at night", 4)]
        finally:
            index.close()
    assert after == before


def test_corrupt_index_gives_a_clear_error_and_reindex_fixes_it(
    local_config: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with TreeStore(local_config.db_path) as store:
        ids = build_corpus(store)
        nodes = store.node_count()
        index = open_memory(local_config)
        index.sync(store)
        index.close()
    (local_config.memory_dir / "chroma.sqlite3").write_bytes(b"this is not a database" * 500)
    with pytest.raises(MemoryUnavailable, match="ambient reindex") as err:
        open_memory(local_config)
    assert str(local_config.memory_dir) in str(err.value)

    app = App(local_config, sampler=FakeSampler())
    assert app.memory is None and app.memory_warning and "ambient reindex" in app.memory_warning
    with TreeStore(local_config.db_path) as store:
        assert store.node_count() == nodes  # the trees are untouched
    app.close()

    monkeypatch.setenv("AMBIENT_HOME", str(local_config.home))
    assert main(["reindex", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["nodes"] == nodes and result["embedded"] == nodes
    assert result["moved_aside"] and Path(result["moved_aside"]).is_dir()
    index = open_memory(local_config)
    try:
        assert top_ids(index, "a ship's sail ripped apart in bad weather", 1) == [ids["storm"]]
    finally:
        index.close()


def test_a_replaced_store_is_indexed_from_scratch(local_config: Config) -> None:
    with TreeStore(local_config.db_path) as store:
        build_corpus(store)
        index = open_memory(local_config)
        index.sync(store)
    local_config.db_path.unlink()  # a new, smaller store whose versions start again at 1
    for suffix in ("-wal", "-shm"):
        Path(str(local_config.db_path) + suffix).unlink(missing_ok=True)
    try:
        with TreeStore(local_config.db_path) as store:
            _, root = store.create_tree("A new beginning.\n", source="cli")
            node = store.add_node(root.id, TEXTS["bread"])
            assert index.sync(store) == 2
            assert top_ids(index, "making homemade loaves at the weekend", 1) == [node.id]
    finally:
        index.close()


def test_index_path_that_is_a_file(local_config: Config) -> None:
    local_config.home.mkdir(parents=True)
    local_config.memory_dir.write_text("not a folder")
    with pytest.raises(MemoryUnavailable, match="not a folder"):
        open_memory(local_config)


def test_reindex_of_a_healthy_index(config: Config, store: TreeStore) -> None:
    from ambient.memory import reindex

    ids = build_corpus(store)
    result = reindex(config, store)
    assert result.moved_aside is None and result.nodes == result.embedded == store.node_count()
    again = reindex(config, store)
    assert again.nodes == result.nodes and again.moved_aside is None
    index = open_memory(config)
    try:
        assert index.sync(store) == 0
        assert top_ids(index, "making homemade loaves at the weekend", 1) == [ids["bread"]]
    finally:
        index.close()


# -------------------------------------------------------------- server down
@pytest.fixture
def down_config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "home", f"http://127.0.0.1:{free_port()}")


def test_server_down_is_a_clear_error(down_config: Config) -> None:
    with pytest.raises(MemoryUnavailable, match="memory.url") as err:
        open_memory(down_config)
    assert down_config.memory.url in str(err.value)


def test_server_down_continuations_go_on_without_retrieval(down_config: Config) -> None:
    app = App(down_config, sampler=FakeSampler())
    try:
        _, root = app.store.create_tree("The lighthouse keeper", source="cli")
        outcome = make_offer(app, root.id, options_from(app.config.sampling, n=2, max_tokens=3))
        assert len(outcome.nodes) == 2
        assert app.memory is None and app.memory_warning and down_config.memory.url in app.memory_warning
        assert outcome.context.provenance["memory"] == "off"
        assert app.index_pending() == 0
    finally:
        app.close()


def test_server_down_cli_continue_warns(
    down_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_backend("fake", lambda config: FakeSampler())
    monkeypatch.setenv("AMBIENT_HOME", str(down_config.home))
    monkeypatch.setenv("AMBIENT_MODEL_BACKEND", "fake")
    monkeypatch.setenv("AMBIENT_MEMORY_URL", down_config.memory.url)
    note = tmp_path / "note.txt"
    note.write_text("The lighthouse keeper")
    assert main(["continue", str(note), "-n", "2", "--max-tokens", "2"]) == 0
    captured = capsys.readouterr()
    assert "warning: memory is off for now" in captured.err and "memory.url" in captured.err
    assert main(["search", "lighthouse"]) == 2
    err = capsys.readouterr().err
    assert err.count("cannot be reached") == 1, err  # once: as the error, not also as a warning
    assert err.startswith("ambient: the Chroma server") and "warning" not in err


def test_server_stopping_after_open(tmp_path: Path) -> None:
    with chroma(tmp_path / "srv") as url:
        index = open_memory(make_config(tmp_path / "home", url))
    try:
        with pytest.raises(MemoryUnavailable, match="memory.url"):
            index.search("anything")
    finally:
        index.close()


# ----------------------------------------------------------------------- CLI
@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("AMBIENT_HOME", str(home))
    return home


def test_cli_search(cli_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with TreeStore(cli_home / "ambient.sqlite3") as store:
        ids = build_corpus(store)  # not indexed yet: search indexes what is pending first
        storm_path = [n.id for n in store.ancestry(ids["storm"])]
    assert main(["search", "a sail torn apart by a gale", "-k", "2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 2
    first = results[0]
    assert {"node_id", "tree_id", "text", "score", "ancestry"} <= set(first)
    assert first["node_id"] == ids["storm"] and first["ancestry"] == storm_path
    assert first["text"] == TEXTS["storm"] and first["score"] > results[1]["score"]

    assert main(["search", "rehearsing music", "--status", "pruned"]) == 0
    out = capsys.readouterr().out
    assert ids["violin"][:12] in out and "pruned" in out and "path:" in out


@pytest.mark.parametrize("query", ["", "   ", "y" * 2001])
def test_cli_search_bad_query(cli_home: Path, query: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", query]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ambient: the search query") and "\n" not in err


# --------------------------------------------------------------- Loom demo
@pytest.fixture(scope="session")
def loom_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ambient import` of the Loom demo tree (764 nodes, all embedded: the slowest fixture here)."""
    if not LOOM_DEMO.is_file():
        pytest.fail(f"the Loom demo fixture is not at {LOOM_DEMO} (it lives in ../shared/fixtures/loom)")
    home = tmp_path_factory.mktemp("loom-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMBIENT_HOME", str(home))
        assert main(["import", str(LOOM_DEMO), "--json"]) == 0
    return home


# Each query says, in other words, what one node of the demo tree says.
LOOM_QUERIES = [
    (
        "a wrecked restaurant by the highway with shattered glass everywhere",
        "you come across a roadside diner",
    ),
    ("mom recalls visiting the shopping center with dad", "I used to go there with your father"),
    ("an abandoned clinic taken over by plants, your mom pushing your wheelchair", "overrun by vegetation"),
    ("she had a job in a clock tower and wound the clock daily", "We had to wind up the clock every day"),
    ("a method in biology for comparing similar genes across species", "commonalities between separate gene"),
    ("fields of crops burned to charred stumps beside the highway", "vast expanse of blackened cornfields"),
    ("a modest bedroom with gray walls, a white rug and a big window", "pale grey walls, white carpet"),
]


@pytest.mark.parametrize(("query", "snippet"), LOOM_QUERIES)
def test_loom_import_then_search_by_paraphrase(
    loom_home: Path,
    query: str,
    snippet: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AMBIENT_HOME", str(loom_home))
    with TreeStore(loom_home / "ambient.sqlite3") as store:
        targets = [n.id for n in store.iter_nodes() if snippet in n.text]
    assert len(targets) == 1
    capsys.readouterr()
    assert main(["search", query, "-k", "5", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert targets[0] in [r["node_id"] for r in results], [r["text"][:80] for r in results]


def test_loom_reimport_embeds_nothing(
    loom_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMBIENT_HOME", str(loom_home))
    capsys.readouterr()
    assert main(["import", str(LOOM_DEMO), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["indexed"] == 0 and result["unchanged"] == result["nodes"]
