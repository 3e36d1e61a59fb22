"""The daemon's ``/mcp`` routes: what `ambient mcp` asks for, answered within one client key's view.

Every route here is under an API for other apps (:class:`~ambient.validation.ClientAPI`): the
daemon's guard (:mod:`ambient.clients`) has checked the Host and the client key before a handler
runs, and the UI's token is refused. Each handler sees only what the key may see
(:mod:`.views`): searching, reading a node and listing trees never reach past the key's walls,
and continuations are offered in the key's own place and only returned (nothing is picked,
written into a note or sent anywhere).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from aiohttp import web

from ambient.api import SAMPLING, TEXT, blocking, daemon_of, json_response, overrides
from ambient.api_memory import SEARCH_QUERY
from ambient.clients import client_key
from ambient.errors import InvalidInput
from ambient.keys import Key
from ambient.scopes import View
from ambient.sources import SourceEvent
from ambient.validation import ClientAPI, Field, Route, read_body, read_query
from integrations.mcp import views

PREFIX = "/mcp"
PLACE = "mcp"  # the source of the offers it asks for (SourceEvent.source)
MAX_TREES = 1000


def error_body(status: int, message: str, exc: BaseException | None) -> dict[str, Any]:
    """Errors under ``/mcp`` have the daemon's own shape: ``{"error": "one line naming the fix"}``."""
    return {"error": message}


MCP = ClientAPI(prefix=PREFIX, error_body=error_body, error_schema="Error")

SEARCH = tuple(f for f in SEARCH_QUERY if f.name != "scope")  # the key's own walls, never another's
TREES_QUERY = (
    Field(
        "limit", "integer", f"how many trees (default 100, at most {MAX_TREES})", minimum=1, maximum=MAX_TREES
    ),
)
CONTINUE_BODY = (TEXT, *(f for f in SAMPLING if f.name in ("n", "temperature", "max_tokens")))


def _view(request: web.Request) -> tuple[Key, View]:
    key = client_key(request)
    return key, views.view_of(key, daemon_of(request).config.memory)


# ------------------------------------------------------------------ handlers
async def search(request: web.Request) -> web.Response:
    query = read_query(request, SEARCH)
    if not query["q"].strip():
        raise InvalidInput("query parameter 'q' must not be blank")
    _, view = _view(request)
    daemon = daemon_of(request)
    fragments = await daemon.search(query["q"], query.get("k", 8), view)
    fragments = [f for f in fragments if views.sees(view, f.scope)]  # the index's filter, checked again
    titles = await blocking(request, _titles, daemon.app.store, {f.tree_id for f in fragments})
    results = [{**dataclasses.asdict(f), "tree_title": titles.get(f.tree_id, "")} for f in fragments]
    return json_response({"query": query["q"], "results": results})


def _titles(store: Any, tree_ids: set[str]) -> dict[str, str]:
    return {t.id: t.title for t in store.list_trees() if t.id in tree_ids}


async def get_node(request: web.Request) -> web.Response:
    _, view = _view(request)
    store = daemon_of(request).app.store
    return json_response(await blocking(request, views.node_view, store, view, request.match_info["node_id"]))


async def list_trees(request: web.Request) -> web.Response:
    query = read_query(request, TREES_QUERY)
    key, view = _view(request)
    store = daemon_of(request).app.store
    listed = await blocking(request, views.visible_trees, store, view, query.get("limit", 100))
    return json_response({**listed, "key": key.name, "scope": key.scope})


async def continuations(request: web.Request) -> web.Response:
    body = await read_body(request, CONTINUE_BODY)
    chosen = overrides(body, request)
    key = client_key(request)
    daemon = daemon_of(request)
    tree, root = await blocking(request, views.tree_for, daemon.app.store, key, body["text"])
    event = SourceEvent(
        source=PLACE,
        key=f"{key.tree_source}:{uuid.uuid4().hex}",  # one request never supersedes another
        parent_id=root.id,
        meta={"client": key.name},
        overrides=chosen,
        debounce=False,
        memory=key.retrieve,  # memory only when the key was added with --retrieve, within its walls
    )
    offer = await daemon.offer_now(event)
    return json_response(await blocking(request, views.offered, daemon.app.store, tree, offer))


# ------------------------------------------------------------------ declarations
_STR = {"type": "string"}
_NUM = {"type": "number"}
_TREE = {
    "type": "object",
    "properties": {
        "id": _STR,
        "title": _STR,
        "root_id": _STR,
        "source": _STR,
        "scope": _STR,
        "created_at": _NUM,
        "updated_at": _NUM,
    },
    "required": ["id", "title", "root_id", "source", "scope"],
}
_BRIEF = {
    "type": "object",
    "properties": {
        "id": _STR,
        "parent_id": {"type": ["string", "null"]},
        "text": _STR,
        "author": _STR,
        "status": _STR,
    },
    "required": ["id", "parent_id", "text", "author", "status"],
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "McpTrees": {
        "type": "object",
        "properties": {
            "trees": {"type": "array", "items": _TREE},
            "total": {"type": "integer"},
            "key": _STR,
            "scope": _STR,
        },
        "required": ["trees", "total", "key", "scope"],
    },
    "McpNode": {
        "type": "object",
        "properties": {
            "tree": _TREE,
            "node": {"type": "object", "properties": {"id": _STR, "text": _STR}, "required": ["id", "text"]},
            "ancestry": {"type": "array", "items": _BRIEF},
            "children": {"type": "array", "items": _BRIEF},
        },
        "required": ["tree", "node", "ancestry", "children"],
    },
    "McpOffer": {
        "type": "object",
        "properties": {
            "tree_id": _STR,
            "parent_id": _STR,
            "offer_id": _STR,
            "continuations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"node_id": _STR, "branch": {"type": ["integer", "null"]}, "text": _STR},
                    "required": ["node_id", "text"],
                },
            },
        },
        "required": ["tree_id", "parent_id", "offer_id", "continuations"],
    },
}

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        f"{PREFIX}/search",
        search,
        "past fragments close in meaning to a query, within the client key's walls only",
        "SearchResults",
        query=SEARCH,
        errors=(400, 401, 403, 503),
        tag="mcp",
        client=MCP,
    ),
    Route(
        "GET",
        f"{PREFIX}/nodes/{{node_id}}",
        get_node,
        "a node the client key may see: its text, provenance, the path to it and its children",
        "McpNode",
        errors=(401, 403, 404),
        tag="mcp",
        schemas=SCHEMAS,
        client=MCP,
    ),
    Route(
        "GET",
        f"{PREFIX}/trees",
        list_trees,
        "the trees the client key may see, most recently changed first",
        "McpTrees",
        query=TREES_QUERY,
        errors=(400, 401, 403),
        tag="mcp",
        schemas=SCHEMAS,
        client=MCP,
    ),
    Route(
        "POST",
        f"{PREFIX}/continuations",
        continuations,
        "n continuations of a text, offered (kept as a tree of the client key's place) and returned; "
        "nothing is picked, written into a note or sent anywhere",
        "McpOffer",
        body=CONTINUE_BODY,
        errors=(400, 401, 403, 413, 415, 503),
        tag="mcp",
        schemas=SCHEMAS,
        client=MCP,
    ),
)
