"""Two homes, one Chroma server and one sampling server: each finds by meaning what the other stored.

Two :class:`App` instances with separate ``AMBIENT_HOME`` folders (as two
daemons would have) use the same real ``chroma run`` and the same real
llama-cpp-python server. With the same ``memory.collection`` they share one
memory; with different names each keeps its own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ambient.app import App
from ambient.config import Config, load_config
from ambient.offers import make_offer
from ambient.sampling.base import SamplingOptions
from ambient.tree import Node
from tests.llama_server import LlamaServer

SEA = "The storm tore the mainsail to ribbons, and we drifted for three days without wind."
GARDEN = "My tomato plants wilted in the August heat, so now I water them at dawn."


def home_config(home: Path, chroma: str, llama: LlamaServer, collection: str) -> Config:
    return load_config(env={"AMBIENT_HOME": str(home)}).replace(
        model__backend="openai",
        model__base_url=llama.url,
        model__name=llama.model,
        model__api_key=llama.api_key,
        memory__url=chroma,
        memory__collection=collection,
    )


@pytest.fixture
def two_apps(
    tmp_path: Path, chroma_server: str, llama_server: LlamaServer
) -> Iterator[tuple[App, App]]:
    shared = f"shared-{uuid.uuid4().hex[:8]}"
    apps = (
        App(home_config(tmp_path / "alice", chroma_server, llama_server, shared)),
        App(home_config(tmp_path / "bob", chroma_server, llama_server, shared)),
    )
    yield apps
    for app in apps:
        app.close()


def write_and_offer(app: App, title: str, text: str) -> Node:
    """A tree with a person's node, an offer of two continuations from the server; all indexed."""
    _, root = app.store.create_tree(title, source="cli")
    node = app.store.add_node(root.id, text)
    options = SamplingOptions(n=2, max_tokens=6, seed=5, top_logprobs=0)
    outcome = make_offer(app, node.id, options, source={"kind": "tree", "tree_id": root.tree_id})
    assert outcome.offer.meta["server_n"] == 1 and len(outcome.nodes) == 2
    assert app.index_pending() >= 4  # root, the person's node, two continuations
    return node


def found(app: App, query: str, node: Node) -> bool:
    """``node`` is among the 3 nearest, and the nearest is in its tree (its continuations carry its text)."""
    assert app.memory is not None
    hits = app.memory.search(query, k=3)
    return node.id in [h.node_id for h in hits] and hits[0].tree_id == node.tree_id


def test_two_homes_share_one_memory(two_apps: tuple[App, App]) -> None:
    alice, bob = two_apps
    sea = write_and_offer(alice, "Notes from the voyage.\n", SEA)
    garden = write_and_offer(bob, "Garden diary.\n", GARDEN)  # bob's first sync is a full pass
    assert found(alice, "vegetables suffering in hot summer weather", garden)
    assert found(bob, "a sailing ship caught in bad weather", sea)
    assert alice.store.node_count() == 4 and bob.store.node_count() == 4  # the trees stay in each home


def test_a_full_pass_purges_only_its_own_entries(two_apps: tuple[App, App]) -> None:
    """A lost state file makes the next sync a full pass, which removes stale entries: only this home's."""
    alice, bob = two_apps
    write_and_offer(alice, "Notes from the voyage.\n", SEA)
    garden = write_and_offer(bob, "Garden diary.\n", GARDEN)
    assert alice.memory is not None
    alice.memory.location.state_path.unlink()
    again = App(alice.config)
    try:
        again.index_pending()
        assert again.memory is not None and again.memory.count() == 8
        assert found(again, "vegetables suffering in hot summer weather", garden)
    finally:
        again.close()


def test_reindex_on_a_shared_server_rebuilds_only_its_own_entries(two_apps: tuple[App, App]) -> None:
    alice, bob = two_apps
    sea = write_and_offer(alice, "Notes from the voyage.\n", SEA)
    garden = write_and_offer(bob, "Garden diary.\n", GARDEN)
    assert alice.memory is not None and bob.memory is not None
    before = alice.memory.count()
    assert bob.memory.rebuild(bob.store) > 0  # embeds Bob's nodes again
    assert alice.memory.count() == before
    assert found(bob, "vegetables suffering in hot summer weather", garden)
    assert found(bob, "a sailing ship caught in bad weather", sea)  # Alice's entries were left alone


def test_bob_s_offer_is_built_with_alice_s_memory(two_apps: tuple[App, App]) -> None:
    alice, bob = two_apps
    sea = write_and_offer(alice, "Notes from the voyage.\n", SEA)
    _, root = bob.store.create_tree("Sailing log.\n", source="cli")
    node = bob.store.add_node(root.id, "The storm came back and tore the sail again while we drifted.")
    outcome = make_offer(bob, node.id, SamplingOptions(n=1, max_tokens=4, seed=1, top_logprobs=0))
    assert sea.id in json.dumps(outcome.context.provenance)


def test_separate_collections_keep_separate_memories(
    tmp_path: Path, chroma_server: str, llama_server: LlamaServer
) -> None:
    apps = [
        App(home_config(tmp_path / name, chroma_server, llama_server, f"{name}-{uuid.uuid4().hex[:8]}"))
        for name in ("carol", "dave")
    ]
    try:
        carol, dave = apps
        write_and_offer(carol, "Notes from the voyage.\n", SEA)
        assert dave.memory is not None and dave.memory.count() == 0
        garden = write_and_offer(dave, "Garden diary.\n", GARDEN)
        assert {f.tree_id for f in dave.memory.search("a ship in a storm", k=5)} == {garden.tree_id}
    finally:
        for app in apps:
            app.close()
