"""The notes place's HTTP route: accept an offered continuation into its note (a person's click)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ambient.api import NODE_ERRORS, blocking, daemon_of, json_response
from ambient.store import TreeStore
from ambient.validation import Route, read_body
from integrations.notes.accept import Accepted, accept_node
from integrations.notes.walls import Walls

ACCEPTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "node_id": {"type": "string"},
        "path": {"type": "string"},
        "point": {"type": "integer"},
        "inserted": {"type": "string"},
        "relocated": {"type": "boolean"},
        "line": {"type": "integer"},
        "column": {"type": "integer"},
        "sha256": {"type": "string"},
    },
    "required": ["node_id", "path", "point", "inserted", "relocated", "line", "column", "sha256"],
}
ACCEPT_RESULT: dict[str, Any] = {
    "type": "object",
    "properties": {"accepted": {"$ref": "#/components/schemas/Accepted"}},
    "required": ["accepted"],
}


async def accept(request: web.Request) -> web.Response:
    """Insert a note continuation into its note, at the point it was offered for."""
    await read_body(request, ())
    daemon = daemon_of(request)
    node_id = request.match_info["node_id"]
    await blocking(request, daemon.app.store.get_node, node_id)  # unknown: 404
    source = daemon.sources.get("notes")
    if source is not None:
        result: Accepted = await source.accept(node_id)  # type: ignore[attr-defined]
    else:  # the notes place is not running: accept directly, within the configured folders
        walls = await blocking(request, Walls.from_config, daemon.config)
        result = await blocking(request, accept_node, daemon.app.store, node_id, walls)
        daemon.publish("note_accepted", result.as_dict())
    node, path = await blocking(request, _picked, daemon.app.store, node_id)
    daemon.publish("picked", {"node": node.as_dict(tokens=False), "path": path})
    daemon.schedule_index()
    return json_response({"accepted": result.as_dict()})


def _picked(store: TreeStore, node_id: str) -> tuple[Any, list[str]]:
    return store.get_node(node_id), [n.id for n in store.ancestry(node_id)]


ROUTES = (
    Route(
        "POST",
        "/api/nodes/{node_id}/accept",
        accept,
        "insert a note continuation into its note at the point it was offered for (409 when the note "
        "changed around that point or while accepting, or is not in a watched folder; nothing is written "
        "then)",
        "AcceptResult",
        body=(),
        errors=(*NODE_ERRORS, 409),
        tag="notes",
        schemas={"Accepted": ACCEPTED, "AcceptResult": ACCEPT_RESULT},
    ),
)
