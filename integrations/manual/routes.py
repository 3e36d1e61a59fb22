"""The manual place's HTTP routes: a new document, a continuation written by hand, "more like these"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from ambient.api import NODE_ERRORS, SAMPLING, TEXT, blocking, daemon_of, json_response, overrides
from ambient.validation import Field, Route, ServiceUnavailable, read_body

if TYPE_CHECKING:
    from integrations.manual.source import ManualSource

OFFER = Field("offer", "boolean", "offer continuations right away (default true)")
TITLE = Field("title", "string", "a title (default: the first line)", max_length=200)
TREE_BODY = (TEXT, TITLE, OFFER, *SAMPLING)
CHILD_BODY = (TEXT, OFFER, *SAMPLING)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


CREATED_TREE = _object({"tree": _ref("Tree"), "root": _ref("Node"), "queued": {"type": "boolean"}})
CREATED_NODE = _object({"node": _ref("Node"), "queued": {"type": "boolean"}})
QUEUED = _object({"queued": {"type": "boolean"}, "parent_id": {"type": "string"}})


def _manual(request: web.Request) -> ManualSource:
    sources = daemon_of(request).sources
    source = sources.get("manual")
    if source is None:
        problem = sources.problems.get("manual", "it is not running")
        raise ServiceUnavailable(f"the manual source is off ({problem}): check [sources.manual] and restart")
    return cast("ManualSource", source)


async def create_tree(request: web.Request) -> web.Response:
    body = await read_body(request, TREE_BODY)
    chosen = overrides(body, request)
    offer = body.get("offer", True)
    tree, root = await _manual(request).paste(
        body["text"], title=body.get("title", ""), offer=offer, overrides=chosen
    )
    payload = {"tree": tree.as_dict(), "root": root.as_dict(), "queued": offer}
    return json_response(payload, status=201)


async def add_child(request: web.Request) -> web.Response:
    body = await read_body(request, CHILD_BODY)
    chosen = overrides(body, request)
    parent_id = request.match_info["node_id"]
    await blocking(request, daemon_of(request).app.store.get_node, parent_id)
    offer = body.get("offer", True)
    node = await _manual(request).write(parent_id, body["text"], offer=offer, overrides=chosen)
    return json_response({"node": node.as_dict(), "queued": offer}, status=201)


async def regenerate(request: web.Request) -> web.Response:
    body = await read_body(request, SAMPLING)
    chosen = overrides(body, request)
    node_id = request.match_info["node_id"]
    await blocking(request, daemon_of(request).app.store.get_node, node_id)
    await _manual(request).regenerate(node_id, chosen)
    return json_response({"queued": True, "parent_id": node_id}, status=202)


ROUTES = (
    Route(
        "POST",
        "/api/trees",
        create_tree,
        "a new document from typed or pasted text (and an offer at it)",
        "CreatedTree",
        status=201,
        body=TREE_BODY,
        errors=(400, 413, 415, 503),
        schemas={"CreatedTree": CREATED_TREE},
    ),
    Route(
        "POST",
        "/api/nodes/{node_id}/children",
        add_child,
        "a continuation written by hand (and an offer at it)",
        "CreatedNode",
        status=201,
        body=CHILD_BODY,
        errors=(*NODE_ERRORS, 503),
        schemas={"CreatedNode": CREATED_NODE},
    ),
    Route(
        "POST",
        "/api/nodes/{node_id}/regenerate",
        regenerate,
        'more continuations at this node ("more like these")',
        "Queued",
        status=202,
        body=SAMPLING,
        errors=(*NODE_ERRORS, 503),
        schemas={"Queued": QUEUED},
    ),
)
