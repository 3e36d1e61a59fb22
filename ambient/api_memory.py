"""The memory routes of the API: search by meaning (within a place's walls), the pick log, forgetting."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from ambient import places
from ambient.api import blocking, daemon_of, json_response
from ambient.app import App
from ambient.errors import InvalidInput
from ambient.forgetting import Target
from ambient.picklog import offer_records
from ambient.scopes import view_for
from ambient.validation import Field, Route, read_body, read_query

SEARCH_QUERY = (
    # 500 characters keep the request line under aiohttp's 8190 bytes even when every one is
    # percent-encoded 4-byte UTF-8; the embedder reads only the first 256 tokens anyway.
    Field(
        "q",
        "string",
        "what to look for, in your own words",
        required=True,
        min_length=1,
        max_length=500,
        plain_text=True,
    ),
    Field("k", "integer", "how many results (default 8)", minimum=1, maximum=50),
    Field(
        "scope",
        "string",
        "only what an offer made in this place could retrieve, written as trees name their source "
        "(note:PATH, discord:SERVER/CHANNEL, speech:SESSION, ui, cli)",
        max_length=1000,
    ),
)


async def search(request: web.Request) -> web.Response:
    query = read_query(request, SEARCH_QUERY)
    if not query["q"].strip():
        raise InvalidInput("query parameter 'q' must not be blank")
    daemon = daemon_of(request)
    view = None
    if "scope" in query:
        memory = daemon.config.memory
        # may import places, and read the home's key store
        scope = await blocking(request, places.scope_of, query["scope"], daemon.config.home)
        view = view_for(scope, memory.share, memory.include_pruned)
    fragments = await daemon.search(query["q"], query.get("k", 8), view)
    titles = await blocking(request, _titles, daemon.app, {f.tree_id for f in fragments})
    results = [{**dataclasses.asdict(f), "tree_title": titles.get(f.tree_id, "")} for f in fragments]
    return json_response({"query": query["q"], "results": results})


def _titles(app: App, tree_ids: set[str]) -> dict[str, str]:
    return {t.id: t.title for t in app.store.list_trees() if t.id in tree_ids}


SUBTREE_BODY = (Field("subtree", "boolean", "everything below the node too (default: the node alone)"),)
PLACE_BODY = (
    Field(
        "place",
        "string",
        "every tree of a place: as trees name their source (note:PATH, discord:SERVER/CHANNEL) or a scope",
        required=True,
        min_length=1,
        max_length=1000,
    ),
)
FORGET_REPORT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "node_ids": {"type": "array", "items": {"type": "string"}},
        "tree_ids": {"type": "array", "items": {"type": "string"}},
        "moved_ids": {"type": "array", "items": {"type": "string"}},
        "offers": {"type": "integer"},
        "revisions": {"type": "integer"},
        "actions": {"type": "integer"},
        "index_entries": {"type": "integer"},
        "lines": {"type": "array", "items": {"type": "string"}},
    },
    "required": [
        *("node_ids", "tree_ids", "moved_ids", "offers", "revisions", "actions", "index_entries", "lines")
    ],
}


async def forget_node(request: web.Request) -> web.Response:
    """Forget a node (spliced out) or its whole subtree."""
    body = await read_body(request, SUBTREE_BODY)
    target = Target(node_id=request.match_info["node_id"], subtree=body.get("subtree", False))
    return await _forget(request, target)


async def forget_tree(request: web.Request) -> web.Response:
    await read_body(request, ())
    return await _forget(request, Target(tree_ids=(request.match_info["tree_id"],)))


async def forget_place(request: web.Request) -> web.Response:
    body = await read_body(request, PLACE_BODY)
    return await _forget(request, Target(place=body["place"]))


async def _forget(request: web.Request, target: Target) -> web.Response:
    """Forget ``target`` everywhere: the store, memory and the places' own files."""
    installed = await blocking(request, places.installed)
    report = await daemon_of(request).forget(target, [cls.forgotten for cls in installed.values()])
    return json_response(report.as_dict())


PICKS_QUERY = (Field("tree_id", "string", "only this tree's offers", max_length=200),)


async def picks(request: web.Request) -> web.Response:
    query = read_query(request, PICKS_QUERY)
    store = daemon_of(request).app.store
    tree_id = query.get("tree_id")
    records = await blocking(request, lambda: [r.as_dict() for r in offer_records(store, tree_id)])
    return json_response({"offers": records})


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/search",
        search,
        "past fragments close in meaning to a query",
        "SearchResults",
        query=SEARCH_QUERY,
        errors=(400, 404, 503),
        tag="memory",
    ),
    Route(
        "POST",
        "/api/nodes/{node_id}/forget",
        forget_node,
        "forget a node (what was below it moves up to its parent) or, with subtree, all below it too: "
        "from the store, memory and the places' files",
        "ForgetReport",
        body=SUBTREE_BODY,
        errors=(400, 404, 409, 413, 415),
        tag="memory",
        schemas={"ForgetReport": FORGET_REPORT},
    ),
    Route(
        "POST",
        "/api/trees/{tree_id}/forget",
        forget_tree,
        "forget a whole tree: from the store, memory and the places' files",
        "ForgetReport",
        body=(),
        errors=(400, 404, 413, 415),
        tag="memory",
        schemas={"ForgetReport": FORGET_REPORT},
    ),
    Route(
        "POST",
        "/api/forget",
        forget_place,
        "forget every tree of a place: from the store, memory and the places' files",
        "ForgetReport",
        body=PLACE_BODY,
        errors=(400, 404, 413, 415),
        tag="memory",
        schemas={"ForgetReport": FORGET_REPORT},
    ),
    Route(
        "GET",
        "/api/picks",
        picks,
        "the pick log: each offer and what was done with each continuation",
        "PickLog",
        query=PICKS_QUERY,
        errors=(400, 404),
        tag="memory",
    ),
)
