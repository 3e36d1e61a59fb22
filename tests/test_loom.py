import json
from collections import Counter
from pathlib import Path

import pytest

from ambient.errors import InvalidInput
from ambient.loom import export_jsonl, export_loom, import_loom
from ambient.store import TreeStore
from ambient.tree import Status

LOOM_DEMO = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "loom" / "loom_demo.json"


@pytest.fixture
def loom_demo() -> Path:
    """The demo tree of the original Loom (../shared/fixtures/loom beside the repo)."""
    assert LOOM_DEMO.is_file(), f"the Loom fixture is not at {LOOM_DEMO} (../shared beside the repo)"
    return LOOM_DEMO


def _walk(node: dict, depth: int = 0):
    yield node, depth
    for child in node.get("children", []):
        yield from _walk(child, depth + 1)


@pytest.fixture
def store(tmp_path: Path) -> TreeStore:
    s = TreeStore(tmp_path / "a.sqlite3")
    yield s
    s.close()


@pytest.mark.usefixtures("loom_demo")
def test_import_real_loom_tree_keeps_everything(store: TreeStore) -> None:
    original = json.loads(LOOM_DEMO.read_text())
    raw_nodes = {n["id"]: (n, d) for n, d in _walk(original["root"])}
    assert len(raw_nodes) == 764 and max(d for _, d in raw_nodes.values()) == 21

    tree, counts = import_loom(store, LOOM_DEMO)
    assert counts == {"nodes": 764, "added": 764, "edited": 0, "unchanged": 0}
    nodes = {n.id: n for n in store.tree_nodes(tree.id)}
    assert set(nodes) == set(raw_nodes)
    for node_id, (raw, depth) in raw_nodes.items():
        node = nodes[node_id]
        assert node.text == raw["text"]
        assert len(store.ancestry(node_id)) == depth + 1  # same place in the tree
        parent = raw.get("parent_id")
        if depth:
            assert node.parent_id == parent
        assert list(node.tags) == raw.get("tags", [])
        assert node.bookmarked == ("bookmark" in raw.get("tags", []))
        assert node.meta["source"] == (raw.get("meta") or {}).get("source", "") or ""
        assert node.meta.get("chapter_id") == raw.get("chapter_id")
    assert tree.meta["loom"]["chapters"] == original["chapters"]
    sources = Counter(n.author.kind for n in nodes.values())
    assert sources["model"] == 374  # meta.source == "AI"
    assert sum(n.status == Status.PRUNED for n in nodes.values()) == 106  # tagged archived


@pytest.mark.usefixtures("loom_demo")
def test_export_then_import_round_trip(store: TreeStore, tmp_path: Path) -> None:
    tree, _ = import_loom(store, LOOM_DEMO)
    exported = export_loom(store, tree.id)
    original = json.loads(LOOM_DEMO.read_text())
    assert {k for k in original if k != "root"} <= set(exported)
    out = tmp_path / "out.json"
    out.write_text(json.dumps(exported))
    again = TreeStore(tmp_path / "b.sqlite3")
    tree2, counts = import_loom(again, out)
    assert counts["added"] == 764
    a = {n.id: (n.text, n.parent_id, n.tags, n.meta.get("loom")) for n in store.tree_nodes(tree.id)}
    b = {n.id: (n.text, n.parent_id, n.tags, n.meta.get("loom")) for n in again.tree_nodes(tree2.id)}
    assert a == b
    # every original node dict comes back with its own fields
    original_nodes = {n["id"]: n for n, _ in _walk(original["root"])}
    exported_nodes = {n["id"]: n for n, _ in _walk(exported["root"])}
    for node_id, raw in original_nodes.items():
        got = exported_nodes[node_id]
        for key, value in raw.items():
            if key != "children":
                assert got[key] == value, (node_id, key)
    again.close()


@pytest.mark.usefixtures("loom_demo")
def test_reimport_unchanged_adds_nothing_and_merges_changes(store: TreeStore, tmp_path: Path) -> None:
    _tree, _ = import_loom(store, LOOM_DEMO)
    _, counts = import_loom(store, LOOM_DEMO)
    assert counts == {"nodes": 764, "added": 0, "edited": 0, "unchanged": 764}
    data = json.loads(LOOM_DEMO.read_text())
    first_child = data["root"]["children"][0]
    first_child["text"] = "changed text"
    first_child["children"].append({"id": "new-node-1", "text": "a new branch", "children": []})
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    _, counts = import_loom(store, changed)
    assert counts["added"] == 1 and counts["edited"] == 1
    assert store.get_node(first_child["id"]).text == "changed text"
    assert [r.text for r in store.revisions(first_child["id"])] == [""]
    assert store.get_node("new-node-1").parent_id == first_child["id"]


def test_export_native_tree_opens_as_loom(store: TreeStore, tmp_path: Path) -> None:
    tree, root = store.create_tree("The sea was calm")
    child = store.add_node(root.id, " and the ship sailed.")
    store.bookmark(child.id)
    data = export_loom(store, tree.id)
    assert data["root"]["id"] == root.id and data["root"]["text"] == "The sea was calm"
    kid = data["root"]["children"][0]
    assert kid["parent_id"] == root.id and kid["tags"] == ["bookmark"]
    assert kid["meta"]["source"] == "prompt" and "creation_timestamp" in kid["meta"]
    lines = [json.loads(line) for line in export_jsonl(store, tree.id)]
    assert [(x["id"], x["parent_id"], x["text"], x["status"]) for x in lines] == [
        (root.id, None, "The sea was calm", "picked"),
        (child.id, root.id, " and the ship sailed.", "picked"),
    ]
    assert lines[0]["author"] == {"kind": "human", "name": ""}
    # re-importing an exported native tree merges into the same tree
    out = tmp_path / "native.json"
    out.write_text(json.dumps(data))
    tree2, counts = import_loom(store, out)
    assert tree2.id == tree.id and counts["unchanged"] == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b'{"nodes": []}', "not a Loom tree"),
        (b'{"root": {"text": "x", "children": []}}', "has no id"),
        (b'{"root": {"id": "a", "text": "x", "children": [{"id": "a", "text": "y"}]}}', "appears twice"),
        (b"[1, 2]", "not a Loom tree"),
    ],
)
def test_corrupt_or_foreign_json_is_refused(
    store: TreeStore, tmp_path: Path, content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        import_loom(store, bad)
    assert store.list_trees() == []


def test_missing_file(store: TreeStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        import_loom(store, tmp_path / "nope.json")
