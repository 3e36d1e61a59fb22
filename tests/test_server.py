"""The HTTP API: every route, 4xx for bad input, Host and Origin refusals, the WebSocket, the OpenAPI.

The token (the Bearer header, the socket's first message, public page files) is tested in
``tests/test_web_auth.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from ambient import places
from ambient.app import App
from ambient.config import Config, load_config
from ambient.context import Fragment, Retriever
from ambient.daemon import Daemon
from ambient.openapi import build_openapi
from ambient.server import routes
from ambient.store import TreeStore
from tests.events import next_event
from tests.fakes import FakeSampler
from tests.web_app import bearer, web_app

pytestmark = pytest.mark.strict_loop  # the daemon never blocks its event loop

MAX_BODY = 4096


class FakeMemory:
    """Finds every node whose text shares a word with the query."""

    def __init__(self) -> None:
        self.store: TreeStore | None = None
        self.synced = 0

    def sync(self, store: TreeStore, progress: Any = None) -> int:
        self.store = store
        self.synced += 1
        return 0

    def search(self, query: str, k: int = 5, **_: Any) -> list[Fragment]:
        assert self.store is not None
        words = set(query.lower().split())
        hits = [n for n in self.store.iter_nodes() if words & set(n.text.lower().split())]
        return [Fragment(n.id, n.tree_id, n.text, 0.9, str(n.status), "ui") for n in hits[:k]]

    def retriever(self) -> Retriever:
        return lambda query, k, exclude_tree_id=None, exclude_node_ids=(), view=None: []

    def close(self) -> None:
        pass


def make_config(home: Path, **changes: Any) -> Config:
    config = load_config(env={"AMBIENT_HOME": str(home)})
    defaults = {
        "memory__enabled": False,
        "server__port": 0,
        "server__debounce_ms": 0,
        "server__max_body_bytes": MAX_BODY,
        "sampling__n": 2,
        "sampling__max_tokens": 3,
    }
    return config.replace(**{**defaults, **changes})


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    config = make_config(tmp_path)
    app = App(config, sampler=FakeSampler())
    memory = FakeMemory()
    app.__dict__["memory"] = memory  # the real index is tested in tests/test_memory*.py and test_web.py
    async with Daemon(config, app) as d:
        yield d
    app.close()


@pytest.fixture
def served(daemon: Daemon) -> web.Application:
    return web_app(daemon)


@pytest.fixture
async def client(served: web.Application, aiohttp_client: Any) -> TestClient[Any, Any]:
    c: TestClient[Any, Any] = await aiohttp_client(served, headers=bearer(served))
    return c


# ------------------------------------------------------------------ OpenAPI
def validator(schema_name: str) -> jsonschema.protocols.Validator:
    doc = build_openapi(routes(places.installed()))
    registry: Registry[Any] = Registry().with_resource(
        "urn:ambient", Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"urn:ambient#/components/schemas/{schema_name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def conforms(payload: Any, schema_name: str) -> None:
    validator(schema_name).validate(payload)


def test_openapi_schemas_are_valid_json_schema() -> None:
    doc = build_openapi(routes(places.installed()))
    assert doc["openapi"].startswith("3.1")
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


async def test_openapi_describes_every_route(served: web.Application, client: TestClient[Any, Any]) -> None:
    served_routes = {
        (r.method.lower(), r.resource.canonical)
        for r in served.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served_routes == documented
    # No cookie, no token in the URL: the UI's token, or a client key for the APIs of other apps (/v1).
    assert list(doc["components"]["securitySchemes"]) == ["bearer", "clientKey"]
    schemes = doc["components"]["securitySchemes"].values()
    assert all(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes)
    assert doc["security"] == [{"bearer": []}]
    public = set()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            assert "403" in op["responses"], (method, path)  # Host and Origin are checked everywhere
            if op.get("security") == []:
                public.add(path)
            else:
                assert "401" in op["responses"], (method, path)
    assert public == {"/", "/static/{name}"}  # the page and its files hold no data


# ------------------------------------------------------------------- routes
async def create_tree(
    client: TestClient[Any, Any], daemon: Daemon, text: str = "The river runs"
) -> dict[str, Any]:
    sub = daemon.subscribe()
    resp = await client.post("/api/trees", json={"text": text, "title": "River"})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    conforms(body, "CreatedTree")
    done = await next_event(sub, "offer_done")
    daemon.unsubscribe(sub)
    return {**body, "offer": done["offer"], "nodes": done["nodes"]}


async def test_every_route_answers_to_its_schema(daemon: Daemon, client: TestClient[Any, Any]) -> None:
    made = await create_tree(client, daemon)
    tree_id, root_id = made["tree"]["id"], made["root"]["id"]
    first, second = (n["id"] for n in made["nodes"])

    checks: list[tuple[str, str, Any, int, str]] = [
        ("GET", "/api/status", None, 200, "Status"),
        ("GET", "/api/trees", None, 200, "TreeList"),
        ("GET", f"/api/trees/{tree_id}", None, 200, "TreeView"),
        ("GET", f"/api/nodes/{first}", None, 200, "NodeView"),
        ("GET", f"/api/offers/{made['offer']['id']}", None, 200, "OfferView"),
        ("POST", f"/api/nodes/{first}/pick", None, 200, "Picked"),
        ("POST", f"/api/nodes/{second}/bookmark", {"on": True}, 200, "NodeResult"),
        ("POST", f"/api/nodes/{second}/prune", {}, 200, "NodeResult"),
        ("POST", f"/api/nodes/{first}/edit", {"text": " a better line"}, 200, "Edited"),
        ("POST", f"/api/nodes/{root_id}/children", {"text": " by hand", "offer": False}, 201, "CreatedNode"),
        ("POST", f"/api/nodes/{root_id}/regenerate", {"n": 1}, 202, "Queued"),
        ("GET", "/api/search?q=river&k=3", None, 200, "SearchResults"),
        ("GET", "/api/picks", None, 200, "PickLog"),
        ("GET", f"/api/picks?tree_id={tree_id}", None, 200, "PickLog"),
    ]
    for method, path, body, status, schema in checks:
        resp = await client.request(method, path, json=body)
        assert resp.status == status, (path, await resp.text())
        conforms(await resp.json(), schema)


async def test_pick_marks_the_path_and_is_logged(daemon: Daemon, client: TestClient[Any, Any]) -> None:
    made = await create_tree(client, daemon)
    node_id = made["nodes"][1]["id"]
    resp = await client.post(f"/api/nodes/{node_id}/pick")
    body = await resp.json()
    assert body["node"]["status"] == "picked"
    assert body["path"] == [made["root"]["id"], node_id]
    log = await (await client.get("/api/picks")).json()
    outcomes = {n["node_id"]: n["outcome"] for n in log["offers"][0]["nodes"]}
    assert outcomes == {made["nodes"][0]["id"]: "ignored", node_id: "picked"}


async def test_editing_model_text_keeps_the_original(daemon: Daemon, client: TestClient[Any, Any]) -> None:
    made = await create_tree(client, daemon)
    original = made["nodes"][0]
    resp = await client.post(f"/api/nodes/{original['id']}/edit", json={"text": " my own words"})
    body = await resp.json()
    assert body["created"] is True and body["original_id"] == original["id"]
    new = body["node"]
    assert new["author"]["kind"] == "human" and new["meta"]["edited_from"] == original["id"]
    assert new["parent_id"] == original["parent_id"] and new["status"] == "picked"
    kept = await (await client.get(f"/api/nodes/{original['id']}")).json()
    assert kept["node"]["text"] == original["text"]
    log = await (await client.get("/api/picks")).json()
    outcomes = {n["node_id"]: n for n in log["offers"][0]["nodes"]}
    assert outcomes[original["id"]]["outcome"] == "edited then picked"
    assert outcomes[original["id"]]["edited_text"] == " my own words"


async def test_editing_human_text_keeps_a_revision(daemon: Daemon, client: TestClient[Any, Any]) -> None:
    made = await create_tree(client, daemon)
    root_id = made["root"]["id"]
    body = await (await client.post(f"/api/nodes/{root_id}/edit", json={"text": "The river ran"})).json()
    assert body["created"] is False and body["node"]["text"] == "The river ran"
    view = await (await client.get(f"/api/nodes/{root_id}")).json()
    assert [r["text"] for r in view["revisions"]] == ["The river runs"]


async def test_prune_bookmark_and_undo(daemon: Daemon, client: TestClient[Any, Any]) -> None:
    made = await create_tree(client, daemon)
    node_id = made["nodes"][0]["id"]
    assert (await (await client.post(f"/api/nodes/{node_id}/prune")).json())["node"]["status"] == "pruned"
    resp = await client.post(f"/api/nodes/{node_id}/prune", json={"pruned": False})
    assert (await resp.json())["node"]["status"] == "offered"
    assert (await (await client.post(f"/api/nodes/{node_id}/bookmark")).json())["node"]["bookmarked"] is True
    resp = await client.post(f"/api/nodes/{node_id}/bookmark", json={"on": False})
    assert (await resp.json())["node"]["bookmarked"] is False
    resp = await client.post(f"/api/nodes/{made['root']['id']}/prune")
    assert resp.status == 409 and "root" in (await resp.json())["error"]


async def test_regenerate_offers_more_at_the_same_node(daemon: Daemon, client: TestClient[Any, Any]) -> None:
    made = await create_tree(client, daemon)
    sub = daemon.subscribe()
    resp = await client.post(f"/api/nodes/{made['root']['id']}/regenerate", json={"n": 3, "max_tokens": 2})
    assert resp.status == 202
    done = await next_event(sub, "offer_done")
    assert done["offer"]["parent_id"] == made["root"]["id"] and len(done["nodes"]) == 3
    view = await (await client.get(f"/api/nodes/{made['root']['id']}")).json()
    assert len(view["children"]) == 5 and len(view["offers"]) == 2


async def test_search_finds_fragments_with_their_tree(daemon: Daemon, client: TestClient[Any, Any]) -> None:
    made = await create_tree(client, daemon, "A heron waits by the water")
    body = await (await client.get("/api/search", params={"q": "heron"})).json()
    assert body["results"][0]["node_id"] == made["root"]["id"]
    assert body["results"][0]["tree_title"] == "River"


async def test_search_without_memory_is_503(tmp_path: Path, aiohttp_client: Any) -> None:
    config = make_config(tmp_path)
    async with Daemon(config, App(config, sampler=FakeSampler())) as d:
        app_ = web_app(d)
        c = await aiohttp_client(app_, headers=bearer(app_))
        resp = await c.get("/api/search", params={"q": "anything"})
        assert resp.status == 503 and "memory" in (await resp.json())["error"]


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "JSON object"),
        (b'{"title": "x"}', "application/json", 400, "missing field 'text'"),
        (b'{"text": "x", "colour": 1}', "application/json", 400, "unknown field 'colour'"),
        (b'{"text": 5}', "application/json", 400, "must be a string"),
        (b'{"text": ""}', "application/json", 400, "must not be empty"),
        (b'{"text": "   "}', "application/json", 400, "empty"),
        (b'{"text": "x", "n": 0}', "application/json", 400, "'n' must be at least 1"),
        (b'{"text": "x", "n": true}', "application/json", 400, "must be a integer"),
        (b'{"text": "x", "temperature": NaN}', "application/json", 400, "not valid JSON"),
        (b'{"text": "x", "offer": "yes"}', "application/json", 400, "must be a boolean"),
        (b'{"text": "\\u0000"}', "application/json", 400, "NUL"),
        (b"text=x", "application/x-www-form-urlencoded", 415, "must be JSON"),
        (b"\xff\xfe", "application/json", 400, "not valid JSON"),
    ],
)
async def test_bad_bodies_get_a_4xx_with_a_message(
    client: TestClient[Any, Any], body: bytes, content_type: str, status: int, says: str
) -> None:
    resp = await client.post("/api/trees", data=body, headers={"Content-Type": content_type})
    assert resp.status == status
    assert says in (await resp.json())["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/trees/nope"),
        ("GET", "/api/nodes/nope"),
        ("GET", "/api/offers/nope"),
        ("GET", "/api/picks?tree_id=nope"),
        ("POST", "/api/nodes/nope/pick"),
        ("POST", "/api/nodes/nope/edit"),
        ("POST", "/api/nodes/nope/prune"),
        ("POST", "/api/nodes/nope/bookmark"),
        ("POST", "/api/nodes/nope/regenerate"),
        ("POST", "/api/nodes/nope/children"),
        ("GET", "/api/nothing-here"),
        ("GET", "/static/secret.py"),
    ],
)
async def test_unknown_ids_and_routes_are_404(client: TestClient[Any, Any], method: str, path: str) -> None:
    body = {"text": "x"} if path.endswith(("edit", "children")) else None
    resp = await client.request(method, path, json=body)
    assert resp.status == 404
    assert (await resp.json())["error"]


async def test_wrong_method_is_405_json(client: TestClient[Any, Any]) -> None:
    resp = await client.delete("/api/trees")
    assert resp.status == 405 and "not allowed" in (await resp.json())["error"]


async def test_search_query_is_checked(client: TestClient[Any, Any]) -> None:
    for params, says in [
        ({}, "missing query parameter 'q'"),
        ({"q": "x", "k": "many"}, "integer"),
        ({"q": "x", "k": "0"}, "at least 1"),
        ({"q": "  "}, "blank"),
    ]:
        resp = await client.get("/api/search", params=params)
        assert resp.status == 400 and says in (await resp.json())["error"]


async def test_oversized_body_is_413(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/api/trees", json={"text": "x" * (MAX_BODY + 10)})
    assert resp.status == 413
    assert "max_body_bytes" in (await resp.json())["error"]


async def test_oversized_chunked_body_is_413(client: TestClient[Any, Any]) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b'{"text": "' + b"x" * 1000

    resp = await client.post("/api/trees", data=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status == 413


# -------------------------------------------------------------- security
async def test_foreign_host_is_refused(client: TestClient[Any, Any]) -> None:
    port = client.port
    for host in (f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}", f"attacker.localhost:{port}"):
        resp = await client.get("/api/status", headers={"Host": host})
        assert resp.status == 403, host
        assert "DNS rebinding" in (await resp.json())["error"]
    for host in (f"localhost:{port}", f"[::1]:{port}", f"127.0.0.1:{port}"):
        resp = await client.get("/api/status", headers={"Host": host})
        assert resp.status == 200, host


async def test_foreign_origin_is_refused(client: TestClient[Any, Any]) -> None:
    port = client.port
    for origin in (
        "http://evil.example",
        "null",
        f"http://localhost:{port + 1}",
        f"https://127.0.0.1:{port}",
    ):
        resp = await client.post("/api/trees", json={"text": "x"}, headers={"Origin": origin})
        assert resp.status == 403, origin
        assert "Origin" in (await resp.json())["error"]
    resp = await client.get("/api/status", headers={"Origin": f"http://127.0.0.1:{port}"})
    assert resp.status == 200


# ------------------------------------------------------------- WebSocket
async def test_websocket_streams_offer_events(daemon: Daemon, client: TestClient[Any, Any]) -> None:
    made = await create_tree(client, daemon)
    ws = await client.ws_connect("/api/events")
    hello = await ws.receive_json()
    assert hello["type"] == "hello" and hello["data"]["pid"] == os.getpid()
    await client.post(f"/api/nodes/{made['root']['id']}/regenerate", json={"n": 2, "max_tokens": 2})
    kinds: list[str] = []
    events: list[dict[str, Any]] = []
    while "offer_done" not in kinds:
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type == WSMsgType.TEXT
        event = json.loads(msg.data)
        kinds.append(event["type"])
        events.append(event)
    started = next(e["data"] for e in events if e["type"] == "offer_started")
    assert started["parent_id"] == made["root"]["id"] and started["n"] == 2
    tokens = [e["data"] for e in events if e["type"] == "token"]
    assert [(t["branch"], t["text"]) for t in tokens] == [
        (0, " b0w0"),
        (1, " b1w0"),
        (0, " b0w1"),
        (1, " b1w1"),
    ]
    assert tokens[0]["top"][0] == {"text": " b0w0", "logprob": -0.5}
    assert kinds.index("offer_started") < kinds.index("token") < kinds.index("offer_done")
    done = next(e["data"] for e in events if e["type"] == "offer_done")
    conforms(done["offer"], "Offer")
    for node in done["nodes"]:
        conforms(node, "Node")
    await client.post(f"/api/nodes/{done['nodes'][0]['id']}/pick")
    while True:
        event = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
        if event["type"] == "picked":
            assert event["data"]["node"]["id"] == done["nodes"][0]["id"]
            break
    await ws.close()


async def test_plain_get_on_the_websocket_route_is_400(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/api/events")
    assert resp.status == 400 and (await resp.json())["error"]
