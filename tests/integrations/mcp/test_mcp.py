"""`ambient mcp` through the official MCP SDK's own client over stdio, against a real daemon.

The daemon runs in its own thread and loop on 127.0.0.1 with the tiny real model, the real store,
real embedded chromadb with the real embedder, and the notes place watching a folder with a private
note. The SDK's ``stdio_client`` spawns ``ambient mcp`` exactly as a chat app does, with the key's
secret in ``AMBIENT_KEY``. What a key may see: its own place, never the private note unless
``[memory.share]`` grants it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import CallToolResult, TextContent

from ambient.keys import KeyStore
from ambient.sampling.base import MAX_N
from ambient.sampling.local import LocalSampler
from ambient.tree import Status
from tests.reliability.helpers import ThreadedDaemon, child_env, make_config

AMBIENT = Path(sys.executable).with_name("ambient")
DIARY = "Dear diary, the combination of the blue safe is heron forty-seven, tell nobody."
DIARY_QUERY = "combination of the blue safe heron"
HARBOUR = "The fishing boats came back into the harbour at dawn, gulls circling the nets."
HARBOUR_QUERY = "fishing boats returning to harbour with gulls"
N = 3


class Rig:
    def __init__(self, daemon: ThreadedDaemon, notes: Path, secrets: dict[str, str]) -> None:
        self.daemon = daemon
        self.home = daemon.config.home
        self.notes = notes
        self.secrets = secrets

    def api(self, path: str) -> Any:
        """The UI's view (its token): everything, to check what the keys are not shown."""
        request = urllib.request.Request(self.daemon.base + path, headers=self.daemon.auth)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait_searchable(self, query: str, tree_id: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            results = self.api("/api/search?" + urllib.parse.urlencode({"q": query, "k": 20}))["results"]
            if any(r["tree_id"] == tree_id for r in results):
                return
            assert time.monotonic() < deadline, f"{query!r} not indexed within {timeout} s: {results}"
            time.sleep(0.3)

    def diary_tree(self) -> dict[str, Any]:
        trees = [t for t in self.api("/api/trees")["trees"] if t["source"].startswith("note:")]
        assert len(trees) == 1, trees
        return trees[0]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[Rig]:
    base = tmp_path_factory.mktemp("mcp")
    notes = base / "notes"
    notes.mkdir()
    config = make_config(
        base / "home",
        memory__enabled=True,
        memory__share={"key:granted": ("notes",)},  # the person opened their notes to one key only
        sampling__n=2,
        sampling__max_tokens=6,
        sources={"notes": {"folders": [str(notes)], "quiet_ms": 100}},
    )
    store = KeyStore(config.home)
    secrets = {name: store.add(name)[1] for name in ("chat", "granted")}
    with ThreadedDaemon(config, LocalSampler(tiny_model_path, device="cpu")) as daemon:
        assert daemon.daemon.memory_ready, daemon.app.memory_warning
        rig = Rig(daemon, notes, secrets)
        deadline = time.monotonic() + 30
        while not daemon.daemon.sources.get("notes") or not daemon.daemon.sources.get("notes").status().get(
            "watching"
        ):
            assert time.monotonic() < deadline, daemon.daemon.sources.status()
            time.sleep(0.05)
        (notes / "diary.md").write_text(DIARY + "\n")
        deadline = time.monotonic() + 60
        while not [t for t in rig.api("/api/trees")["trees"] if t["source"].startswith("note:")]:
            assert time.monotonic() < deadline, "the note never became a tree"
            time.sleep(0.1)
        rig.wait_searchable(DIARY_QUERY, rig.diary_tree()["id"])  # indexed: its absence below is the wall
        yield rig


@contextlib.asynccontextmanager
async def mcp(rig: Rig, key: str = "chat") -> AsyncIterator[ClientSession]:
    """A session with `ambient mcp` spawned by the SDK's stdio client, as a chat app's config does."""
    env = child_env(rig.home, AMBIENT_KEY=rig.secrets[key])
    params = StdioServerParameters(command=str(AMBIENT), args=["mcp"], env=env)
    with open(os.devnull, "w") as errlog:  # the SDK takes a text file
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> CallToolResult:
    result = await session.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult)
    return result


def data(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def text_of(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


def refused(result: CallToolResult, *needles: str) -> str:
    message = text_of(result)
    assert result.is_error, message
    assert "\n" not in message and all(n in message for n in needles), message
    return message


def every_text(rig: Rig) -> set[str]:
    store = rig.daemon.app.store
    return {n.text for n in rig.daemon.blocking(lambda: list(store.iter_nodes()))}


# ------------------------------------------------------------------ the tools
async def test_the_tools_are_listed_with_their_limits(rig: Rig) -> None:
    async with mcp(rig) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == {"search_multiverse", "get_node", "list_trees", "offer_continuations"}
    k = tools["search_multiverse"].input_schema["properties"]["k"]
    assert (k["minimum"], k["maximum"]) == (1, 50)
    assert tools["offer_continuations"].input_schema["properties"]["n"]["maximum"] == MAX_N
    assert (
        tools["search_multiverse"].annotations is not None
        and tools["search_multiverse"].annotations.read_only_hint
    )


async def test_offer_continuations_returns_n_texts_kept_in_the_key_s_place_and_writes_no_note(
    rig: Rig,
) -> None:
    note = rig.notes / "diary.md"
    before = note.read_bytes(), os.stat(note).st_mtime_ns, sorted(p.name for p in rig.notes.iterdir())
    async with mcp(rig) as session:
        offer = data(await call(session, "offer_continuations", text=HARBOUR, n=N))
    assert len(offer["continuations"]) == N and all(
        isinstance(c["text"], str) for c in offer["continuations"]
    )
    store = rig.daemon.app.store
    tree = rig.daemon.blocking(store.get_tree, offer["tree_id"])
    assert (tree.source, tree.scope) == ("key:chat", "key:chat")  # the key's own place
    nodes = [rig.daemon.blocking(store.get_node, c["node_id"]) for c in offer["continuations"]]
    assert [n.text for n in nodes] == [c["text"] for c in offer["continuations"]]
    assert all(n.status == Status.OFFERED for n in nodes)  # offered to read; nothing picked
    assert nodes[0].provenance is not None and nodes[0].provenance["memory"] == "off"  # no --retrieve
    assert (
        note.read_bytes(),
        os.stat(note).st_mtime_ns,
        sorted(p.name for p in rig.notes.iterdir()),
    ) == before


async def test_search_finds_the_key_s_own_fragments_and_never_a_private_note(rig: Rig) -> None:
    async with mcp(rig) as session:
        offer = data(await call(session, "offer_continuations", text=HARBOUR + " Again.", n=1))
        rig.wait_searchable(HARBOUR_QUERY, offer["tree_id"])
        found = data(await call(session, "search_multiverse", query=HARBOUR_QUERY, k=10))["results"]
        assert any(r["tree_id"] == offer["tree_id"] for r in found)
        assert {r["source"] for r in found} == {"key:chat"}
        hidden = data(await call(session, "search_multiverse", query=DIARY_QUERY, k=50))["results"]
    assert all("heron" not in r["text"] and not r["source"].startswith("note:") for r in hidden), hidden

    async with mcp(rig, "granted") as session:  # [memory.share] "key:granted" = ["notes"]
        granted = data(await call(session, "search_multiverse", query=DIARY_QUERY, k=10))["results"]
    assert any("heron forty-seven" in r["text"] for r in granted)


async def test_get_node_gives_ancestry_and_provenance_within_the_key_s_view(rig: Rig) -> None:
    diary = rig.diary_tree()
    async with mcp(rig) as session:
        offer = data(await call(session, "offer_continuations", text=HARBOUR + " Then?", n=2))
        first = offer["continuations"][0]["node_id"]
        got = data(await call(session, "get_node", id=first))
        assert got["node"]["id"] == first and got["node"]["author"]["kind"] == "model"
        assert [a["text"] for a in got["ancestry"]] == [HARBOUR + " Then?"]
        assert got["ancestry"][0]["id"] == offer["parent_id"] and got["tree"]["id"] == offer["tree_id"]
        provenance = got["node"]["provenance"]
        assert provenance["source"]["kind"] == "mcp" and provenance["source"]["client"] == "chat"
        root = data(await call(session, "get_node", id=offer["parent_id"]))
        assert {c["id"] for c in root["children"]} >= {c["node_id"] for c in offer["continuations"]}
        private = await call(session, "get_node", id=diary["root_id"])
        message = refused(private, diary["root_id"], "may see")
        missing = refused(await call(session, "get_node", id="0" * 32), "may see")
    assert (
        "heron" not in message and message.replace(diary["root_id"], "0" * 32) == missing
    )  # the same answer

    async with mcp(rig, "granted") as session:  # [memory.share] opened the notes to this key
        hits = data(await call(session, "search_multiverse", query=DIARY_QUERY, k=10))["results"]
        [hit] = [h for h in hits if h["tree_id"] == diary["id"] and "heron" in h["text"]][:1]
        shown = data(await call(session, "get_node", id=hit["node_id"]))
    assert shown["tree"]["id"] == diary["id"] and shown["ancestry"][0]["id"] == diary["root_id"]
    assert DIARY in "".join(a["text"] for a in shown["ancestry"]) + shown["node"]["text"]


async def test_list_trees_lists_only_what_the_key_may_see(rig: Rig) -> None:
    async with mcp(rig) as session:
        data(await call(session, "offer_continuations", text=HARBOUR + " Listed.", n=1))
        listed = data(await call(session, "list_trees"))
    assert listed["trees"] and {t["source"] for t in listed["trees"]} == {"key:chat"}
    assert listed["total"] == len([t for t in rig.api("/api/trees")["trees"] if t["source"] == "key:chat"])
    async with mcp(rig, "granted") as session:
        granted = data(await call(session, "list_trees", limit=1000))
    assert rig.diary_tree()["id"] in {t["id"] for t in granted["trees"]}
    assert not any(t["source"] == "key:chat" for t in granted["trees"])  # another key's place: a wall


async def test_bad_arguments_are_one_line_tool_errors_and_the_server_keeps_running(rig: Rig) -> None:
    texts_before = every_text(rig)
    async with mcp(rig) as session:
        refused(
            await call(session, "search_multiverse", query="boats", k=0), "'k'", "greater than or equal to 1"
        )
        refused(await call(session, "search_multiverse", query="boats", k="many"), "'k'", "integer")
        refused(await call(session, "search_multiverse", k=3), "'query'", "required")
        refused(await call(session, "search_multiverse", query="   "), "blank")
        refused(await call(session, "get_node", id="0" * 32), "no node", "may see")
        refused(await call(session, "get_node", id="../../api/trees"), "not a node id")
        refused(await call(session, "get_node", id=7), "'id'", "string")
        refused(
            await call(session, "offer_continuations", text=HARBOUR, n=1000),
            "'n'",
            f"less than or equal to {MAX_N}",
        )
        refused(await call(session, "offer_continuations", text=HARBOUR, n="three"), "'n'", "integer")
        refused(await call(session, "offer_continuations", text="", n=2), "'text'")
        refused(await call(session, "list_trees", limit=0), "'limit'")
        refused(await call(session, "no_such_tool"), "no_such_tool")
        assert every_text(rig) == texts_before  # nothing was stored for a refused call
        assert data(await call(session, "list_trees", limit=1))["trees"]  # still serving


# ------------------------------------------------------------------ refusals at start
def run_mcp(home: Path, secret: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AMBIENT), "mcp"],
        env=child_env(home, AMBIENT_KEY=secret),
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_wrong_key_or_the_ui_token_is_one_clear_line(rig: Rig) -> None:
    for secret in ("amb_" + "x" * 43, rig.daemon.server.token):
        done = run_mcp(rig.home, secret)
        assert done.returncode != 0 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and "not a client key" in done.stderr, done.stderr
        assert "ambient keys add NAME" in done.stderr and "AMBIENT_KEY" in done.stderr
        assert secret not in done.stderr


def test_without_a_daemon_it_says_so_in_one_line(tmp_path: Path, rig: Rig) -> None:
    home = tmp_path / "home"
    home.mkdir()
    done = run_mcp(home, rig.secrets["chat"])
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "not running" in done.stderr and "ambient run" in done.stderr
    (home / "daemon.json").write_text('{"port": 1}')  # stale: nothing listens there
    stale = run_mcp(home, rig.secrets["chat"])
    assert stale.returncode != 0 and stale.stderr == done.stderr


def test_without_a_key_it_says_where_to_set_one(tmp_path: Path) -> None:
    done = run_mcp(tmp_path, "")
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and "AMBIENT_KEY is not set" in done.stderr


def test_the_ui_token_is_refused_on_the_mcp_routes_and_a_key_on_the_ui_s(rig: Rig) -> None:
    for path, secret in (("/mcp/trees", rig.daemon.server.token), ("/api/trees", rig.secrets["granted"])):
        request = urllib.request.Request(
            rig.daemon.base + path, headers={"Authorization": f"Bearer {secret}"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused_:
            urllib.request.urlopen(request, timeout=10)
        assert refused_.value.code == 401
