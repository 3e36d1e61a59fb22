"""Importing loomsidian and Tapestry Loom files (and Loom's, through the same door): real shapes, bad inputs.

The test files are written in the exact shapes the real programs write:

* loomsidian: ``data.json`` is ``{"settings", "state": {note path: NoteState}}`` (``save()`` in main.ts of
  github.com/cosmicoptima/loom); ``NoteState`` and ``Node`` as declared in its common.ts; generated nodes are
  made with ``newNode(completion, rootNode, true)`` (unread), ``loom:switch-to`` sets ``unread = false`` and
  ``lastVisited = Date.now()``; "export" writes one NoteState (``JSON.stringify(state[file.path], null, 2)``).
* Tapestry Loom: the serde JSON of ``TapestryWeave`` (tapestry-weave/src/weave/mod.rs, content/mod.rs and
  metadata.rs of github.com/transkatgirl/Tapestry-Loom; the ``IndependentWeave`` fields ``nodes``,
  ``roots``, ``active``, ``bookmarked``, ``metadata`` from src/independent/mod.rs of
  github.com/transkatgirl/universal-weave);
  bytes are base64 (``#[serde(with = "Base64Standard")]``), enums externally tagged (serde's default), times
  are jiff ``Zoned`` strings. The binary form starts with ``VersionedTapestryWeave__`` and a u64 version.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ambient.cli import main
from ambient.errors import InvalidInput
from ambient.importers import import_file
from ambient.store import TreeStore
from ambient.tree import Status

LOOM_DEMO = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "loom" / "loom_demo.json"

# ----------------------------------------------------------------------------- loomsidian
ROOT, A, B, C, A1, A2 = (
    "0b7e4c1e-6a55-4a1c-9d0e-2f9f1f2f8a01",
    "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e02",
    "2d3e4f5a-6b7c-4d8e-9fa0-1b2c3d4e5f03",
    "3e4f5a6b-7c8d-4e9f-a0b1-2c3d4e5f6a04",
    "4f5a6b7c-8d9e-4fa0-b1c2-3d4e5f6a7b05",
    "5a6b7c8d-9eaf-40b1-c2d3-4e5f6a7b8c06",
)


def ls_node(text: str, parent: str | None, *, unread: bool = False, visited: int | None = None) -> dict:
    """A Node as loomsidian's newNode() makes it (common.ts), plus lastVisited once switched to."""
    node: dict[str, Any] = {
        "text": text,
        "parentId": parent,
        "collapsed": False,
        "unread": unread,
        "bookmarked": False,
        "searchResultState": None,
    }
    if visited is not None:
        node["lastVisited"] = visited
    return node


def lighthouse_state() -> dict:
    """One note: the person's text, five generated children (one read), a reply typed under the read one."""
    nodes = {
        ROOT: ls_node("The lighthouse keeper", None, visited=1_700_000_000_000),
        A: ls_node(" climbed the stairs \\<slowly>", ROOT, visited=1_700_000_100_000),  # read, then chosen
        B: ls_node(" counted the ships.", ROOT, unread=True),
        C: ls_node(" slept \\[until noon].", ROOT, unread=True),
        A1: ls_node(" and lit the lamp.", A, visited=1_700_000_200_000),  # current
        A2: ls_node(" and fell.", A, unread=True),
    }
    nodes[B]["bookmarked"] = True
    return {"current": A1, "hoisted": [], "searchTerm": "", "nodes": nodes, "generating": None}


def data_json() -> dict:
    """.obsidian/plugins/loom/data.json: saveData({settings, state}) (main.ts)."""
    second_roots = {
        "6b7c8d9e-afb0-41c2-d3e4-5f6a7b8c9d07": ls_node("First passage.", None),
        "7c8d9eaf-b0c1-42d3-e4f5-6a7b8c9d0e08": ls_node("Second passage.", None, visited=1_700_000_300_000),
    }
    return {
        "settings": {
            "passageFolder": "",
            "modelPresets": [
                {
                    "name": "davinci",
                    "provider": "openai",
                    "model": "davinci-002",
                    "contextLength": 16384,
                    "apiKey": "sk-secret-never-kept",
                    "organization": "org-x",
                }
            ],
            "modelPreset": 0,
            "maxTokens": 60,
            "temperature": 1,
            "n": 5,
        },
        "state": {
            "Stories/Lighthouse.md": lighthouse_state(),
            "Passages.md": {
                "current": "7c8d9eaf-b0c1-42d3-e4f5-6a7b8c9d0e08",
                "hoisted": [],
                "searchTerm": "",
                "nodes": second_roots,
                "generating": None,
            },
        },
    }


@pytest.fixture
def store(tmp_path: Path):
    s = TreeStore(tmp_path / "a.sqlite3")
    yield s
    s.close()


def write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=2))
    return path


def by_source(store: TreeStore, tree_id: str) -> dict[str, Any]:
    return {n.meta.get("source_id"): n for n in store.tree_nodes(tree_id)}


def test_loomsidian_data_json_keeps_authorship_path_and_model(store: TreeStore, tmp_path: Path) -> None:
    imported = import_file(store, write(tmp_path, "data.json", data_json()))
    assert imported.format == "loomsidian" and len(imported.trees) == 2
    (tree, counts), (second, second_counts) = imported.trees
    assert tree.title == "Lighthouse" and tree.source == "loomsidian" and tree.scope == "import"
    assert counts == {"nodes": 6, "added": 6, "edited": 0, "unchanged": 0}
    nodes = by_source(store, tree.id)
    assert nodes[ROOT].author.kind == "human" and nodes[ROOT].parent_id is None
    # unread nodes are model text (loomsidian makes generated nodes unread); the read ones are not recorded
    for unread in (B, C, A2):
        assert nodes[unread].author.kind == "model" and nodes[unread].meta["authorship"] == "inferred"
    for read in (A, A1):  # read nodes: nothing says who wrote them (A1 was typed, A generated)
        assert nodes[read].author.kind == "model" and nodes[read].meta["authorship"] == "unknown"
    # the chosen path (current and its ancestors) is picked; model text off it stays offered
    assert [n.id for n in store.ancestry(nodes[A1].id)] == [nodes[x].id for x in (ROOT, A, A1)]
    assert {k for k, n in nodes.items() if n.status == Status.PICKED} == {ROOT, A, A1}
    assert nodes[B].status == Status.OFFERED and nodes[B].bookmarked
    assert nodes[A1].meta["last_visited"] == 1_700_000_200.0
    # generated text is kept as the model saw it (loomsidian escapes < and [ only for Obsidian)
    assert nodes[A].text == " climbed the stairs <slowly>" and nodes[C].text == " slept [until noon]."
    assert (
        store.full_text(nodes[A1].id) == "The lighthouse keeper climbed the stairs <slowly> and lit the lamp."
    )
    assert tree.meta["loomsidian"]["note"] == "Stories/Lighthouse.md"
    assert tree.meta["loomsidian"]["model_preset"] == {
        "name": "davinci",
        "provider": "openai",
        "model": "davinci-002",
        "contextLength": 16384,
    }
    everything = json.dumps([t.as_dict() for t in store.list_trees()]) + json.dumps(
        [n.as_dict() for t in store.list_trees() for n in store.tree_nodes(t.id)]
    )
    assert "sk-secret" not in everything and "org-x" not in everything
    # two roots in one note: one empty root made for them
    assert second_counts["nodes"] == 3
    top = store.get_node(second.root_id)
    assert top.text == "" and top.meta["synthetic_root"] is True
    assert sorted(c.text for c in store.children(top.id)) == ["First passage.", "Second passage."]
    assert imported.not_kept == [
        "who wrote 2 nodes (loomsidian does not record it; kept as model text, meta.authorship = unknown)"
    ]


def test_loomsidian_export_merges_into_the_same_tree(store: TreeStore, tmp_path: Path) -> None:
    first = import_file(store, write(tmp_path, "data.json", data_json()))
    state = lighthouse_state()
    state["nodes"][A1]["text"] = " and lit the great lamp."
    state["nodes"]["8d9eafb0-c1d2-43e4-f5a6-7b8c9d0e1f09"] = ls_node(" It was dark.", A1, unread=True)
    exported = write(tmp_path, "Lighthouse.json", state)  # "export" in the Loom pane: one NoteState
    again = import_file(store, exported)
    assert again.trees[0][0].id == first.trees[0][0].id
    assert again.trees[0][1] == {"nodes": 7, "added": 1, "edited": 1, "unchanged": 5}
    nodes = by_source(store, first.trees[0][0].id)
    assert [r.text for r in store.revisions(nodes[A1].id)] == [" and lit the lamp."]
    assert len(store.list_trees()) == 2


def test_loomsidian_older_shapes(store: TreeStore, tmp_path: Path) -> None:
    """Early loomsidian kept nodes as a list with ids; some files name the author (as Tapestry's migration
    assistant reads them, migration-assistant/src/loomsidian/mod.rs: ``value``, ``author``)."""
    state = {
        "current": "n2",
        "nodes": [
            {"id": "n1", "text": "Once", "parentId": None, "unread": False},
            {"id": "n2", "value": " upon a time", "author": "code-davinci-002", "parentId": "n1"},
            {"id": "n3", "text": " there", "author": "N/A", "parentId": "n1", "unread": False},
        ],
    }
    ((tree, _),) = import_file(store, write(tmp_path, "old.json", state), "loomsidian").trees
    nodes = by_source(store, tree.id)
    assert nodes["n2"].text == " upon a time" and nodes["n2"].author.name == "code-davinci-002"
    assert nodes["n2"].meta["authorship"] == "recorded" and nodes["n2"].status == Status.PICKED
    assert nodes["n3"].meta["authorship"] == "unknown" and nodes["n3"].status == Status.OFFERED


# ----------------------------------------------------------------------------- Tapestry Loom
ROOT_ID, USER_ID, M1, M2, SHARED, LINKED = (
    "9001234567890123456",
    "17000000000000000001",
    "42",
    "18446744073709551000",
    "555",
    "777",
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def contents(content: Any, creator: Any, when: str = "2025-06-03T03:45:48.123456789-04:00[America/New_York]"):
    """NodeContent (content/mod.rs): timestamp, modified, content, metadata, creator."""
    return {"timestamp": when, "modified": False, "content": content, "metadata": {}, "creator": creator}


def t_node(
    node_id: str, parents: list[str], children: list[str], body: dict, *, active: bool = False
) -> dict:
    """IndependentNode (universal-weave src/independent/mod.rs): id, from, to, active, bookmarked, contents"""
    return {
        "id": int(node_id),
        "from": [int(p) for p in parents],
        "to": [int(c) for c in children],
        "active": active,
        "bookmarked": False,
        "contents": body,
    }


def model(label: str, seed: int | None = None) -> dict:
    return {
        "Model": {
            "label": label,
            "color": "#aa3377",
            "identifier": 1234567890123456789012345678,
            "seed": seed,
            "system_fingerprint": None,
            "finish_reason": "length",
            "metadata": {"temperature": "1"},
        }
    }


def token(text: str, logprob: float, alts: list[tuple[str, float]]) -> dict:
    """InnerNodeToken: bytes (base64), logprob, id, entropy, counterfactual, original."""
    return {
        "bytes": b64(text),
        "logprob": logprob,
        "id": 11,
        "entropy": 0.7,
        "counterfactual": [{"bytes": b64(t), "logprob": lp, "id": None} for t, lp in alts],
        "original": "Unmodified",
    }


def weave() -> dict:
    """A weave: the person's prompt, a sampled token node, a model continuation shared by two parents."""
    nodes = {
        ROOT_ID: t_node(
            ROOT_ID,
            [],
            [M1, M2],
            contents({"Snippet": b64("The tide went out")}, {"User": None}),
            active=True,
        ),
        M1: t_node(
            M1,
            [ROOT_ID],
            [SHARED],
            contents(
                {"Tokens": [token(" and", -0.2, [(" and", -0.2), (",", -1.9)]), token(" the", -0.5, [])]},
                model("llama-3.1-405b-base", seed=7),
            ),
            active=True,
        ),
        M2: t_node(
            M2, [ROOT_ID], [SHARED], contents({"Snippet": b64(" while")}, model("llama-3.1-405b-base"))
        ),
        SHARED: t_node(
            SHARED, [M2, M1], [], contents({"Snippet": b64(" boats lay on the mud.")}, "Unknown"), active=True
        ),
        USER_ID: t_node(
            USER_ID,
            [],
            [LINKED],
            contents(
                {"Snippet": b64("Another start.")},
                {"User": {"label": "kat", "color": None, "identifier": None, "metadata": {}}},
            ),
        ),
        LINKED: t_node(LINKED, [USER_ID], [], contents("MetadataOnly", {"Model": None})),
    }
    nodes[M2]["bookmarked"] = True
    return {
        "nodes": nodes,
        "roots": [int(ROOT_ID), int(USER_ID)],
        "active": [int(ROOT_ID), int(M1), int(SHARED)],
        "bookmarked": [int(M2)],
        "metadata": {
            "title": "Low tide",
            "description": None,
            "created": "2025-06-03T03:40:00-04:00[America/New_York]",
            "converted_from": [],
            "metadata": {},
            "aux_metadata": {},
        },
    }


def test_tapestry_json_keeps_creators_tokens_and_active_path(store: TreeStore, tmp_path: Path) -> None:
    imported = import_file(store, write(tmp_path, "low tide.json", weave()))
    assert imported.format == "tapestry"
    ((tree, counts),) = imported.trees
    assert tree.title == "Low tide" and counts["nodes"] == 7  # six nodes and the root made for two roots
    nodes = by_source(store, tree.id)
    assert nodes[ROOT_ID].author.kind == "human" and nodes[ROOT_ID].meta["authorship"] == "recorded"
    assert nodes[USER_ID].author.name == "kat"
    m1 = nodes[M1]
    assert m1.author.kind == "model" and m1.author.name == "llama-3.1-405b-base"
    assert m1.author.settings == {"seed": 7, "finish_reason": "length", "temperature": "1"}
    assert m1.text == " and the" and m1.tokens is not None
    assert [(t.text, t.logprob) for t in m1.tokens] == [(" and", -0.2), (" the", -0.5)]
    assert [(a.text, a.logprob) for a in m1.tokens[0].top] == [(" and", -0.2), (",", -1.9)]
    assert m1.tokens[0].extra == {"entropy": 0.7}
    assert m1.meta["tapestry"]["creator"]["Model"]["color"] == "#aa3377"
    # a node with two parents: kept under the active one, the other remembered
    assert nodes[SHARED].parent_id == m1.id and nodes[SHARED].meta["also_from"] == [M2]
    assert nodes[SHARED].meta["authorship"] == "unknown" and nodes[SHARED].author.kind == "model"
    assert store.full_text(nodes[SHARED].id) == "The tide went out and the boats lay on the mud."
    assert {k for k, n in nodes.items() if n.status == Status.PICKED} >= {ROOT_ID, M1, SHARED}
    assert nodes[M2].status == Status.OFFERED and nodes[M2].bookmarked
    assert nodes[LINKED].text == "" and nodes[LINKED].author.kind == "model"
    assert nodes[ROOT_ID].created_at == pytest.approx(1748936748.123456)
    assert any("extra parent" in line for line in imported.not_kept)
    # importing it again changes nothing
    assert import_file(store, tmp_path / "low tide.json").trees[0][1]["unchanged"] == 7


def test_binary_tapestry_is_refused_with_the_way_to_convert_it(store: TreeStore, tmp_path: Path) -> None:
    binary = tmp_path / "welcome.tapestry"
    binary.write_bytes(b"VersionedTapestryWeave__" + (1).to_bytes(8, "little") + b"\x00\x01rkyv")
    with pytest.raises(
        InvalidInput, match=r"binary form \(version 1\).*migration assistant.*--output-debug-json"
    ):
        import_file(store, binary)
    legacy = tmp_path / "note.md"
    legacy.write_text("---\nTapestryLoomWeaveCompressed: eJx...\n---\nThe text")
    with pytest.raises(InvalidInput, match="old Tapestry Loom Obsidian plugin"):
        import_file(store, legacy)
    assert store.list_trees() == []


# ----------------------------------------------------------------------------- bad inputs
def _missing_parent(data: dict) -> dict:
    data["state"]["Passages.md"]["nodes"]["7c8d9eaf-b0c1-42d3-e4f5-6a7b8c9d0e08"]["parentId"] = "gone"
    return data


def _cycle(data: dict) -> dict:
    nodes = data["state"]["Stories/Lighthouse.md"]["nodes"]
    nodes[A]["parentId"] = A1  # A1's parent is A
    return data


def _t_missing(data: dict) -> dict:
    data["nodes"][SHARED]["from"].append(999)
    return data


def _t_cycle(data: dict) -> dict:
    data["nodes"][M2]["from"].append(int(SHARED))  # SHARED already has M2 as a parent
    return data


def _t_bad_bytes(data: dict) -> dict:
    data["nodes"][M2]["contents"]["content"] = {"Snippet": "not base64!"}
    return data


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: _missing_parent(data_json()), "parent gone of node .* is missing"),
        (lambda: _cycle(data_json()), "each other's ancestors"),
        (lambda: {"state": {"a.md": {"current": "x", "nodes": {"x": "text"}}}}, "not an object with an id"),
        (lambda: {"state": {"a.md": {"current": "x", "nodes": {"x": {"text": 3}}}}}, "not a string"),
        (lambda: _t_missing(weave()), "parent 999 of node 555 is missing"),
        (lambda: _t_cycle(weave()), "each other's ancestors"),
        (lambda: _t_bad_bytes(weave()), "not base64"),
        (
            lambda: {
                "nodes": {"1": {"id": 1, "from": [], "contents": {"content": {"Image": 1}}}},
                "roots": [1],
            },
            "none of Snippet",
        ),
        (lambda: {"nodes": {}, "roots": []}, "has no nodes: there is nothing to import"),
        (lambda: {"state": {"a.md": {"current": None, "nodes": {}}}}, "has no notes with nodes"),
        (lambda: {"foreign": True}, "not a Loom tree .* nor a loomsidian file .* nor a Tapestry Loom weave"),
        (lambda: [1, 2], "not a Loom tree"),
    ],
)
def test_bad_files_are_refused_whole(store: TreeStore, tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        import_file(store, write(tmp_path, "bad.json", make()))
    assert store.list_trees() == [] and store.node_count() == 0


def test_wrong_json_and_wrong_format(store: TreeStore, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"state": {"a.md": ')
    with pytest.raises(InvalidInput, match=r"not valid JSON \(.*line 1\)"):
        import_file(store, bad)
    forced = write(tmp_path, "loomsidian.json", data_json())
    with pytest.raises(InvalidInput, match="not a Tapestry Loom weave"):
        import_file(store, forced, "tapestry")
    with pytest.raises(InvalidInput, match="not a Loom tree"):
        import_file(store, forced, "loom")
    with pytest.raises(InvalidInput, match="--format 'obsidian' is not known"):
        import_file(store, forced, "obsidian")
    assert store.list_trees() == []


def test_a_failure_while_writing_forgets_the_trees_already_made(
    store: TreeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store.import_nodes
    calls: list[str] = []

    def second_fails(tree: Any, nodes: Any) -> None:
        calls.append(tree.id)
        if len(calls) == 2:
            raise OSError("disk full")
        real(tree, nodes)

    monkeypatch.setattr(store, "import_nodes", second_fails)
    with pytest.raises(OSError, match="disk full"):
        import_file(store, write(tmp_path, "data.json", data_json()))
    assert store.list_trees() == [] and store.node_count() == 0


# ----------------------------------------------------------------------------- the command
@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AMBIENT_MEMORY_ENABLED", "false")
    return tmp_path / "home"


def test_import_command_detects_and_reports(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "data.json", data_json())
    assert main(["import", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["format"] == "loomsidian" and result["nodes"] == 9 and len(result["trees"]) == 2
    assert result["tree_id"] == result["trees"][0]["tree_id"] and result["not_kept"]
    assert main(["import", str(write(tmp_path, "w.json", weave())), "--format", "tapestry"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("imported ") and "(tapestry)" in out[0] and "'Low tide'" in out[0]
    assert out[1].startswith("not kept as the file had it: 1 extra parent")
    binary = tmp_path / "w.tapestry"
    binary.write_bytes(b"VersionedTapestryWeave__" + (2).to_bytes(8, "little"))
    assert main(["import", str(binary)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "migration assistant" in err


def test_loom_files_still_come_through_the_same_door(store: TreeStore) -> None:
    assert LOOM_DEMO.is_file(), f"the Loom fixture is not at {LOOM_DEMO} (../shared beside the repo)"
    imported = import_file(store, LOOM_DEMO)
    assert imported.format == "loom" and imported.trees[0][1]["added"] == 764
    data = json.loads(LOOM_DEMO.read_text())
    assert imported.trees[0][0].root_id == data["root"]["id"]
    again = import_file(store, LOOM_DEMO, "loom")
    assert again.trees[0][1]["unchanged"] == 764 and copy.deepcopy(again.not_kept) == []
