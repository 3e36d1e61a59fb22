"""ContextBuilder: budget (counted with a real tokenizer), layout, exclusion and provenance."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from pathlib import Path

import pytest

from ambient.app import App
from ambient.cli import main
from ambient.config import ContextSection, load_config
from ambient.context import ContextBuilder, Fragment
from ambient.memory.embedder import resolve_embedder_path
from ambient.offers import make_offer, options_from
from ambient.scopes import View
from tests.fakes import FakeSampler

SOURCE = (
    "The lighthouse keeper wrote in his log every evening. The lamp had to be trimmed, the glass "
    "polished, the clockwork wound. Ships passed far out, and sometimes one signalled back. "
) * 6 + "Tonight the fog came in early, and he climbed the stairs and "


@pytest.fixture(scope="module")
def count_tokens() -> Callable[[str], int]:
    """Token counts from a real tokenizer (the embedding model's WordPiece one)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_embedder_path("default"))
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


class ListRetriever:
    """Returns fixed fragments (minus the excluded ones) and records each call."""

    def __init__(self, fragments: list[Fragment]) -> None:
        self.fragments = fragments
        self.calls: list[tuple[str, int, set[str]]] = []
        self.views: list[View | None] = []

    def __call__(
        self,
        query: str,
        k: int,
        exclude_tree_id: str | None = None,
        exclude_node_ids: Collection[str] = (),
        view: View | None = None,
    ) -> list[Fragment]:
        self.calls.append((query, k, set(exclude_node_ids)))
        self.views.append(view)
        return [f for f in self.fragments if f.node_id not in exclude_node_ids][:k]


def fragment(i: int, words: int = 25, score: float = 0.8) -> Fragment:
    text = f"fragment {i} says " + " ".join(["tide"] * words)
    return Fragment(f"n{i}", "t-other", text, score, "picked", "cli", lead="an earlier line, ")


def builder(count: Callable[[str], int], retriever: object, **settings: object) -> ContextBuilder:
    section = ContextSection(**settings)  # type: ignore[arg-type]
    return ContextBuilder(count, 2048, section, retriever=retriever, k=4, min_score=0.3)  # type: ignore[arg-type]


def test_budget_is_respected_and_source_ends_the_prompt(count_tokens: Callable[[str], int]) -> None:
    retriever = ListRetriever([fragment(i, words=12) for i in range(6)])
    built = builder(count_tokens, retriever, budget=160).build(SOURCE, max_tokens=48)
    assert count_tokens(built.prompt) <= 160
    cut = built.provenance["cut"]["source_chars"]
    assert cut > 0 and built.prompt.endswith(SOURCE[cut:])
    assert built.provenance["source"]["chars"] == [cut, len(SOURCE)]
    kept = [r["node_id"] for r in built.provenance["retrieved"]]
    dropped = [r["node_id"] for r in built.provenance["cut"]["fragments"]]
    assert kept and dropped and set(kept) | set(dropped) == {"n0", "n1", "n2", "n3"}
    assert sum(r["tokens"] for r in built.provenance["retrieved"]) <= int(160 * 0.35)


def test_layout_template_and_exact_end(count_tokens: Callable[[str], int]) -> None:
    source = "Tonight the fog came in early, and he climbed the stairs and "
    retriever = ListRetriever([fragment(1, words=5, score=0.9), fragment(2, words=5, score=0.7)])
    built = builder(count_tokens, retriever, fragment_template="[{score:.2f}] {text}\n").build(
        source, max_tokens=48
    )
    assert built.prompt.endswith(source)  # the continuation starts exactly where the source stops
    block = built.prompt[: -len(source)]
    assert block.startswith(ContextSection().memory_header) and block.endswith(ContextSection().memory_footer)
    assert "[0.90] …an earlier line, fragment 1 says tide" in block
    assert block.index("fragment 1 says") < block.index("fragment 2 says")  # best first
    assert [r["node_id"] for r in built.provenance["retrieved"]] == ["n1", "n2"]
    assert built.provenance["retrieved"][0]["score"] == 0.9
    assert built.provenance["memory"] == "on"


def test_never_retrieves_the_text_it_continues(count_tokens: Callable[[str], int]) -> None:
    ancestry = Fragment("a1", "t-this", "the clockwork wound.", 0.99)
    copy = Fragment("c1", "t-copy", "Tonight the fog came in early", 0.95)  # same words, another node
    other = fragment(3, words=5)
    retriever = ListRetriever([ancestry, copy, other])
    built = builder(count_tokens, retriever).build(SOURCE, max_tokens=48, exclude_node_ids={"a1"})
    assert retriever.calls and retriever.calls[0][2] == {"a1"}
    assert len(retriever.calls[0][0]) <= 1000 and SOURCE.endswith(retriever.calls[0][0])
    assert [r["node_id"] for r in built.provenance["retrieved"]] == ["n3"]


def test_low_scores_failures_and_memory_off(count_tokens: Callable[[str], int]) -> None:
    low = ListRetriever([fragment(1, score=0.1)])
    built = builder(count_tokens, low).build("a short note", max_tokens=8)
    assert built.prompt == "a short note" and built.provenance["retrieved"] == []

    def broken(
        query: str, k: int, exclude_tree_id: str | None = None, exclude_node_ids: object = ()
    ) -> list[Fragment]:
        raise RuntimeError("index on fire")

    built = builder(count_tokens, broken).build("a short note", max_tokens=8)
    assert built.prompt == "a short note" and built.provenance["memory"].startswith("unavailable")

    unused = ListRetriever([fragment(1)])
    built = builder(count_tokens, unused).build("a short note", max_tokens=8, use_memory=False)
    assert built.provenance["memory"] == "off" and unused.calls == []


# ------------------------------------------------- with the real memory index
def test_offer_records_retrieved_nodes_and_show_displays_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    config = load_config(env={"AMBIENT_HOME": str(home)})
    app = App(config, sampler=FakeSampler())
    try:
        store = app.store
        _, old_root = store.create_tree("Harbour notes.\n", source="cli")
        past = store.add_node(old_root.id, "A fishing boat went down in the gale off the northern cape.")
        store.add_node(old_root.id, "The bakery on Mill Street sells rye bread on Thursdays.")
        _, root = store.create_tree("Tonight the storm reached the coast", source="cli")
        current = store.add_node(root.id, " and a trawler sank near the cape in the high wind.")
        assert app.index_pending() == store.node_count()
        outcome = make_offer(app, current.id, options_from(config.sampling, n=2, max_tokens=3))
    finally:
        app.close()
    provenance = outcome.nodes[0].provenance
    assert provenance is not None and provenance["memory"] == "on"
    retrieved = [r["node_id"] for r in provenance["retrieved"]]
    assert retrieved and retrieved[0] == past.id and provenance["retrieved"][0]["score"] > 0.3
    assert root.id not in retrieved and current.id not in retrieved
    assert outcome.context.prompt.endswith(root.text + current.text)

    monkeypatch.setenv("AMBIENT_HOME", str(home))
    assert main(["show", outcome.nodes[0].id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["provenance"]["retrieved"][0]["node_id"] == past.id
    assert main(["show", outcome.nodes[0].id]) == 0
    assert past.id in capsys.readouterr().out
