"""The core REST API: trees, nodes, offers, pick, edit, prune, bookmark, search, the pick log, status.

Each route is declared once (:class:`ambient.validation.Route`) with its
request fields; the same declaration validates requests and writes the OpenAPI
document (:mod:`ambient.openapi`), so the two cannot drift apart. Places add
their own routes through :meth:`ambient.sources.Source.routes`, built with the
helpers here. Handlers only translate HTTP: every store call runs in a worker
thread, and domain rules live in the core (:mod:`ambient.editing`). Bad input is
a 4xx with ``{"error": message}``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import HttpVersion11, web

from ambient.app import App
from ambient.daemon import Daemon
from ambient.editing import edit_node
from ambient.offers import Overrides
from ambient.sampling.base import MAX_N
from ambient.tree import Node
from ambient.validation import Field, Route, read_body


@dataclasses.dataclass(frozen=True)
class Site:
    """Where the API listens: the token it requires and its port."""

    token: str
    port: int


DAEMON = web.AppKey("daemon", Daemon)
SITE = web.AppKey("site", Site)

TEXT = Field("text", "string", "the text", required=True, min_length=1, max_length=200_000, plain_text=True)
SAMPLING = (
    Field("n", "integer", "continuations to offer (default: sampling.n)", minimum=1, maximum=MAX_N),
    Field(
        "temperature", "number", "sampling temperature (default: sampling.temperature)", minimum=0, maximum=5
    ),
    Field(
        "max_tokens",
        "integer",
        "tokens per continuation (default: sampling.max_tokens)",
        minimum=1,
        maximum=4096,
    ),
    Field("signals", "boolean", "per-token signals where the backend has them (default: sampling.signals)"),
    Field(
        "oversample",
        "integer",
        "sample this many, offer n cluster representatives (default: sampling.oversample; 0 = off)",
        minimum=0,
        maximum=MAX_N,
    ),
)
EDIT_BODY = (TEXT,)
PRUNE_BODY = (Field("pruned", "boolean", "false to undo (default true)"),)
BOOKMARK_BODY = (Field("on", "boolean", "false to remove (default true)"),)
PERSONAL_BODY = (Field("on", "boolean", "false: the base model writes every branch here", required=True),)


# ------------------------------------------------------------------ helpers
def daemon_of(request: web.Request) -> Daemon:
    return request.app[DAEMON]


def _app(request: web.Request) -> App:
    return request.app[DAEMON].app


async def blocking(request: web.Request, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking work (SQLite, files) for a handler in a worker thread."""
    return await daemon_of(request).run_blocking(functools.partial(fn, *args, **kwargs))


def overrides(body: dict[str, Any], request: web.Request) -> Overrides:
    """A request's sampling overrides, checked now (a 400 rather than a failed offer later)."""
    chosen = Overrides.from_mapping(body)
    chosen.options(daemon_of(request).config.sampling)
    return chosen


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status, dumps=functools.partial(json.dumps, ensure_ascii=False))


def _node_payload(node: Node, tokens: bool = True) -> dict[str, Any]:
    return node.as_dict(tokens=tokens)


# ------------------------------------------------------------------ handlers
async def get_status(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    counts = await blocking(request, _counts, daemon.app)
    return json_response({**daemon.status(), "port": request.app[SITE].port, "counts": counts})


def _counts(app: App) -> dict[str, int]:
    return {"trees": len(app.store.list_trees()), "nodes": app.store.node_count()}


async def list_trees(request: web.Request) -> web.Response:
    trees = await blocking(request, _app(request).store.list_trees)
    return json_response({"trees": [t.as_dict() for t in trees]})


async def get_tree(request: web.Request) -> web.Response:
    tree_id = request.match_info["tree_id"]
    tree, nodes, offers = await blocking(request, _tree_view, _app(request), tree_id)
    return json_response(
        {
            "tree": tree.as_dict(),
            "nodes": [n.as_dict(tokens=False) for n in nodes],
            "offers": [o.as_dict() for o in offers],
        }
    )


def _tree_view(app: App, tree_id: str) -> tuple[Any, list[Node], list[Any]]:
    store = app.store
    return store.get_tree(tree_id), store.tree_nodes(tree_id), store.tree_offers(tree_id)


async def set_personal(request: web.Request) -> web.Response:
    """The document's personal switch: whether the personal adapter writes a share of its offers."""
    body = await read_body(request, PERSONAL_BODY)
    tree_id = request.match_info["tree_id"]
    # stored only when off (the default is on), so the switch is data in the tree's meta
    tree = await blocking(
        request, _app(request).store.update_tree_meta, tree_id, {"personal": None if body["on"] else False}
    )
    daemon_of(request).publish("tree_updated", {"tree": tree.as_dict()})
    return json_response({"tree": tree.as_dict()})


async def get_node(request: web.Request) -> web.Response:
    return json_response(await blocking(request, _node_view, _app(request), request.match_info["node_id"]))


def _node_view(app: App, node_id: str) -> dict[str, Any]:
    store = app.store
    node = store.get_node(node_id)
    return {
        "node": node.as_dict(),
        "ancestry": [n.id for n in store.ancestry(node_id)],
        "children": [c.as_dict() for c in store.children(node_id)],
        "revisions": [dataclasses.asdict(r) for r in store.revisions(node_id)],
        "offers": [o.as_dict() for o in store.offers_at(node_id)],
    }


async def pick(request: web.Request) -> web.Response:
    await read_body(request, ())
    daemon = daemon_of(request)
    node_id = request.match_info["node_id"]
    node, path = await blocking(request, _pick, daemon.app, node_id)
    daemon.publish("picked", {"node": node.as_dict(tokens=False), "path": path})
    daemon.schedule_index()
    return json_response({"node": _node_payload(node), "path": path})


def _pick(app: App, node_id: str) -> tuple[Node, list[str]]:
    node = app.store.pick(node_id, {"via": "ui"})
    return node, [n.id for n in app.store.ancestry(node_id)]


async def edit(request: web.Request) -> web.Response:
    body = await read_body(request, EDIT_BODY)
    daemon = daemon_of(request)
    node, created, original = await blocking(
        request, edit_node, daemon.app, request.match_info["node_id"], body["text"]
    )
    if created:
        daemon.publish("picked", {"node": node.as_dict(tokens=False), "path": None})
    daemon.schedule_index()
    return json_response({"node": _node_payload(node), "created": created, "original_id": original})


async def prune(request: web.Request) -> web.Response:
    body = await read_body(request, PRUNE_BODY)
    node = await blocking(
        request, _app(request).store.prune, request.match_info["node_id"], body.get("pruned", True)
    )
    daemon_of(request).schedule_index()
    return json_response({"node": _node_payload(node)})


async def bookmark(request: web.Request) -> web.Response:
    body = await read_body(request, BOOKMARK_BODY)
    node = await blocking(
        request, _app(request).store.bookmark, request.match_info["node_id"], body.get("on", True)
    )
    daemon_of(request).publish("node_updated", {"node": node.as_dict(tokens=False)})
    return json_response({"node": _node_payload(node)})


async def get_offer(request: web.Request) -> web.Response:
    offer_id = request.match_info["offer_id"]
    offer, nodes = await blocking(request, _offer_view, _app(request), offer_id)
    return json_response({"offer": offer.as_dict(), "nodes": [n.as_dict() for n in nodes]})


def _offer_view(app: App, offer_id: str) -> tuple[Any, list[Node]]:
    offer = app.store.get_offer(offer_id)
    return offer, [app.store.get_node(i) for i in offer.node_ids]


NODE_ERRORS = (400, 404, 413, 415)
ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/status",
        get_status,
        "the daemon's state: model, queue, sources, memory",
        "Status",
        tag="daemon",
    ),
    Route("GET", "/api/trees", list_trees, "every tree, most recently changed first", "TreeList"),
    Route(
        "GET",
        "/api/trees/{tree_id}",
        get_tree,
        "a tree: all its nodes (without tokens) and offers",
        "TreeView",
        errors=(404,),
    ),
    Route(
        "POST",
        "/api/trees/{tree_id}/personal",
        set_personal,
        "the document's personal switch: off, its offers are written by the base model only",
        "TreeResult",
        body=PERSONAL_BODY,
        errors=(400, 404, 413, 415),
    ),
    Route(
        "GET",
        "/api/nodes/{node_id}",
        get_node,
        "a node with its tokens, provenance, path, children and revisions",
        "NodeView",
        errors=(404,),
    ),
    Route(
        "POST",
        "/api/nodes/{node_id}/pick",
        pick,
        "choose this node (and the path to it)",
        "Picked",
        body=(),
        errors=NODE_ERRORS,
    ),
    Route(
        "POST",
        "/api/nodes/{node_id}/edit",
        edit,
        "edit a node: model text gets a new human sibling (the original is kept), a person's text is revised",
        "Edited",
        body=EDIT_BODY,
        errors=NODE_ERRORS,
    ),
    Route(
        "POST",
        "/api/nodes/{node_id}/prune",
        prune,
        "set a node aside (or back); the root of a tree cannot be pruned (409)",
        "NodeResult",
        body=PRUNE_BODY,
        errors=(*NODE_ERRORS, 409),
    ),
    Route(
        "POST",
        "/api/nodes/{node_id}/bookmark",
        bookmark,
        "bookmark a node (or remove the bookmark)",
        "NodeResult",
        body=BOOKMARK_BODY,
        errors=NODE_ERRORS,
    ),
    Route(
        "GET",
        "/api/offers/{offer_id}",
        get_offer,
        "an offer and its continuations",
        "OfferView",
        errors=(404,),
    ),
)


async def expect_handler(request: web.Request) -> None:
    """``Expect: 100-continue`` is answered as aiohttp does; any other Expect value is ignored
    (RFC 9110 allows either), so the request still meets the guard and gets a JSON answer
    instead of aiohttp's plain-text 417 before any check."""
    if request.version == HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler, expect_handler=expect_handler)
