"""Forgetting: forgotten text can no longer be found, retrieved or exported (real SQLite, real chromadb).

Each check has its twin before forgetting (the text is found, retrieved and
exported), so a search or an export that finds nothing at all cannot pass.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ambient.app import App
from ambient.cli import main
from ambient.config import Config, load_config
from ambient.editing import edit_node
from ambient.offers import make_offer
from ambient.sampling.base import SamplingOptions
from ambient.tree import Node
from tests.fakes import FakeSampler

SECRET = " The amber violin sleeps beneath the orchard well."
QUERY = "where is the violin hidden, under which well"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("AMBIENT_HOME", str(home))
    return home


@pytest.fixture
def config(home: Path) -> Config:
    return load_config(env={"AMBIENT_HOME": str(home)}).replace(memory__min_score=0.2, sampling__n=2)


@pytest.fixture
def app(config: Config) -> Iterator[App]:
    app = App(config, sampler=FakeSampler())
    yield app
    app.close()


def grow(app: App) -> dict[str, Node]:
    """root > secret (a person's line, edited once) > below (a person's) > an offer of 2 at below."""
    store = app.store
    _, root = store.create_tree("Grandmother's house by the sea.")
    secret = store.add_node(root.id, SECRET)
    below = store.add_node(secret.id, " We never went back there.")
    edit_node(app, secret.id, SECRET + " It still is.")  # an earlier text kept as a revision
    outcome = make_offer(app, below.id, SamplingOptions(n=2, max_tokens=3), use_memory=False)
    store.pick(outcome.nodes[0].id, {"via": "test"})
    app.index_pending()
    return {"root": root, "secret": store.get_node(secret.id), "below": below, "offered": outcome.nodes[0]}


def traces(app: App, capsys: pytest.CaptureFixture[str], tree_id: str) -> dict[str, bool]:
    """Where the secret can still be seen through ambient: search, retrieval, exports, the store file."""
    found = app.require_memory().search(QUERY, k=10)
    in_search = any("amber violin" in f.lead + f.text for f in found)
    _, other = app.store.create_tree("Tell me about the violin and the well in the orchard.")
    prompt = make_offer(app, other.id, SamplingOptions(n=1, max_tokens=2)).context.prompt
    exports = ""
    for argv in (
        ["export", tree_id, "--format", "jsonl"],
        ["export", tree_id],
        ["export-picks", "--format", "log"],
    ):
        assert main(argv) == 0
        exports += capsys.readouterr().out
    store_file = app.config.db_path.read_bytes() + _wal(app.config.db_path)
    return {
        "search": in_search,
        "retrieval": "amber violin" in prompt,
        "export": "amber violin" in exports,
        "store file": b"amber violin" in store_file,
    }


def _wal(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


def test_a_forgotten_node_leaves_no_trace(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = grow(app)
    tree_id = nodes["root"].tree_id
    assert traces(app, capsys, tree_id) == dict.fromkeys(
        ("search", "retrieval", "export", "store file"), True
    )
    app.close()  # the CLI forgets in its own process-like App, as a person would
    assert main(["forget", nodes["secret"].id[:8]]) == 0
    said = capsys.readouterr().out
    assert "forgot 1 node(s); 1 node(s) below moved up to the parent" in said
    assert "earlier text(s)" in said and "memory index: 1 entries removed (updated)" in said
    again = App(app.config, sampler=FakeSampler())
    try:
        assert traces(again, capsys, tree_id) == dict.fromkeys(
            ("search", "retrieval", "export", "store file"), False
        )
        below = again.store.get_node(nodes["below"].id)
        assert below.parent_id == nodes["root"].id  # the rest of the tree stays, one level up
        assert again.store.get_node(nodes["offered"].id).parent_id == below.id
    finally:
        again.close()


def test_a_subtree_a_tree_and_a_place(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = grow(app)
    _, note = app.store.create_tree("A note of mine.", source="note:/n/a.md", scope="notes")
    app.close()
    assert main(["forget", nodes["below"].id, "--subtree", "--json"]) == 0
    gone = json.loads(capsys.readouterr().out)
    assert len(gone["node_ids"]) == 3 and gone["offers"] == 1  # below and the 2 continuations offered at it
    assert main(["forget", "--place", "notes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tree_ids"] == [note.tree_id]
    assert main(["forget", "--tree", nodes["root"].tree_id]) == 0
    assert "in 1 whole tree(s)" in capsys.readouterr().out
    assert main(["trees", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["forget"], "say what to forget"),
        (["forget", "--subtree", "--tree", "x"], "--subtree goes with a node"),
        (["forget", "zzzz"], "no node"),
        (["forget", "--place", "discord:1"], "no trees of the place 'discord:1'"),
    ],
)
def test_bad_requests_say_what_to_do(
    home: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_root_is_forgotten_with_its_tree(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    _, root = app.store.create_tree("Alone.")
    app.close()
    assert main(["forget", root.id]) == 2
    assert (
        "is the root of its tree: forget the tree instead (ambient forget --tree)" in capsys.readouterr().err
    )


@pytest.mark.strict_loop
async def test_the_api_forgets_and_tells_the_ui(app: App, aiohttp_client: Any) -> None:
    from ambient.daemon import Daemon
    from tests.events import next_event
    from tests.web_app import bearer, web_app

    nodes = await asyncio.to_thread(grow, app)  # blocking set-up stays off the loop
    async with Daemon(app.config, app) as daemon:
        served = web_app(daemon)
        client = await aiohttp_client(served, headers=bearer(served))
        sub = daemon.subscribe()
        bad = await client.post(f"/api/nodes/{nodes['secret'].id}/forget", json={"subtree": "yes"})
        assert bad.status == 400 and "subtree" in (await bad.json())["error"]
        nowhere = await client.post("/api/forget", json={"place": "discord:1"})
        assert nowhere.status == 404 and "no trees of the place" in (await nowhere.json())["error"]
        resp = await client.post(f"/api/nodes/{nodes['secret'].id}/forget", json={})
        assert resp.status == 200, await resp.text()
        report = await resp.json()
        assert report["node_ids"] == [nodes["secret"].id] and report["index_entries"] == 1
        event = await next_event(sub, "forgotten")
        assert event["node_ids"] == [nodes["secret"].id] and event["moved_ids"] == [nodes["below"].id]
        found = await client.get("/api/search", params={"q": QUERY})
        assert all("amber violin" not in r["text"] + r["lead"] for r in (await found.json())["results"])


def test_a_forgotten_note_takes_its_sidecar_with_it(
    app: App, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ambient.tree import MODEL, Author, NewBranch
    from integrations.notes import sidecar
    from integrations.notes.history import NoteHistory

    folder = tmp_path / "notes"
    folder.mkdir()
    note = folder / "diary.md"
    note.write_text("Dear diary." + SECRET)
    side = sidecar.sidecar_path(home, folder, note)
    recorded = NoteHistory(app.store).record(str(note), note.read_text(), offer=True, sidecar=str(side))
    assert recorded.point_node is not None
    app.store.add_offer(recorded.point_node.id, [NewBranch(" Under the well.")], author=Author(MODEL))
    sidecar.rewrite(app.store, app.store.get_tree(recorded.tree.id))
    assert side.exists() and "Under the well" in side.read_text()
    app.close()
    assert main(["forget", "--place", f"note:{note}"]) == 0
    assert f"sidecar deleted: {side}" in capsys.readouterr().out
    assert not side.exists() and note.read_text() == "Dear diary." + SECRET  # the note itself is the person's
