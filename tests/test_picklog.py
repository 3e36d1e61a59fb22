"""The pick log and its export as DPO preference pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ambient.app import App
from ambient.cli import main
from ambient.config import load_config
from ambient.picklog import EDITED, IGNORED, PICKED, PRUNED, dpo_pairs, offer_records
from ambient.store import TreeStore
from ambient.tree import MODEL, Author, NewBranch, OfferState


def offer(store: TreeStore, parent_id: str, *texts: str, state: OfferState = OfferState.DONE) -> list[str]:
    o = store.begin_offer(parent_id, {"n": len(texts)})
    nodes = store.finish_offer(o.id, [NewBranch(t) for t in texts], author=Author(MODEL, "m"), state=state)
    return [n.id for n in nodes]


def edit_and_pick(store: TreeStore, node_id: str, text: str) -> str:
    from ambient.editing import edit_node

    app = App(load_config(env={"AMBIENT_HOME": str(store.path.parent)}))
    app.__dict__["store"] = store
    node, created, _ = edit_node(app, node_id, text)
    assert created
    return node.id


@pytest.fixture
def store(tmp_path: Path) -> TreeStore:
    return TreeStore(tmp_path / "ambient.sqlite3")


def test_each_offered_node_has_an_outcome(store: TreeStore) -> None:
    _, root = store.create_tree("The sea")
    a, b, c, d = offer(store, root.id, " was calm", " was grey", " roared", " slept")
    store.pick(a)
    store.prune(c)
    edited = edit_and_pick(store, d, " slept, at last")
    (record,) = offer_records(store)
    assert record.prompt == "The sea"
    assert [(n.node.id, n.outcome) for n in record.nodes] == [
        (a, PICKED),
        (b, IGNORED),
        (c, PRUNED),
        (d, EDITED),
    ]
    assert record.nodes[3].edited is not None and record.nodes[3].edited.id == edited
    assert record.as_dict()["nodes"][3]["edited_text"] == " slept, at last"


def test_dpo_pairs_put_each_choice_against_each_rejection(store: TreeStore) -> None:
    _, root = store.create_tree("The sea")
    a, _, c = offer(store, root.id, " was calm", " was grey", " roared")
    store.pick(a)
    store.prune(c)
    deeper = offer(store, a, ".", "!")
    edit_and_pick(store, deeper[1], "?")
    pairs = list(dpo_pairs(store))
    got = {(p["prompt"], p["chosen"], p["rejected"], p["rejected_outcome"]) for p in pairs}
    assert got == {
        ("The sea", " was calm", " was grey", IGNORED),
        ("The sea", " was calm", " roared", PRUNED),
        ("The sea was calm", "?", ".", IGNORED),
        ("The sea was calm", "?", "!", "edited away"),
    }
    assert all(
        {"prompt", "chosen", "rejected", "offer_id", "chosen_id", "rejected_id"} <= set(p) for p in pairs
    )


def test_offers_nobody_chose_from_and_failed_offers_give_no_pairs(store: TreeStore) -> None:
    _, root = store.create_tree("Start")
    offer(store, root.id, " a", " b")
    failed = offer(store, root.id, " c", " d", state=OfferState.FAILED)
    store.pick(failed[0])
    assert list(dpo_pairs(store)) == []


def test_export_picks_command_writes_jsonl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path))
    with TreeStore(tmp_path / "ambient.sqlite3") as store:
        _, root = store.create_tree("The sea")
        a, _ = offer(store, root.id, " was calm", " was grey")
        store.pick(a)
    assert main(["export-picks", "--format", "dpo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["chosen"] for line in lines] == [" was calm"]
    out = tmp_path / "pairs.jsonl"
    assert main(["export-picks", "--format", "log", "-o", str(out)]) == 0
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert [n["outcome"] for n in record["nodes"]] == [PICKED, IGNORED]
