"""The OpenAPI 3.1 document of the daemon's API, served at ``/api/openapi.json``.

Paths come from the routes the server serves (the core's, in :mod:`ambient.api` and
:mod:`ambient.api_memory`, and each place's), the same declarations that validate requests; the data
shapes are the component schemas below, kept equal to what ``Node.as_dict()``,
``Tree.as_dict()`` and ``Offer.as_dict()`` return. A place's route brings the
components of its own shapes (:attr:`ambient.validation.Route.schemas`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ambient import __version__
from ambient.validation import ClientAPI, Route

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Schema], required: list[str] | None = None, extra: bool = True) -> Schema:
    schema: Schema = {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
    }
    if not extra:
        schema["additionalProperties"] = False
    return schema


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


STR: Schema = {"type": "string"}
NUM: Schema = {"type": "number"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
OBJ: Schema = {"type": "object"}
NULL_STR: Schema = {"type": ["string", "null"]}

TOKEN_ALT = _obj({"text": STR, "logprob": NUM})
TOKEN = _obj(
    {"text": STR, "logprob": {"type": ["number", "null"]}, "top": _array(TOKEN_ALT)},
    required=["text", "logprob"],
)
NODE_FIELDS: dict[str, Schema] = {
    "id": STR,
    "tree_id": STR,
    "parent_id": NULL_STR,
    "text": STR,
    "author": _obj(
        {"kind": {"type": "string", "enum": ["human", "model"]}, "name": STR, "settings": OBJ},
        ["kind", "name"],
    ),
    "status": {"type": "string", "enum": ["offered", "picked", "pruned"]},
    "offer_id": NULL_STR,
    "branch": {"type": ["integer", "null"]},
    "bookmarked": BOOL,
    "tags": _array(STR),
    "created_at": NUM,
    "updated_at": NUM,
    "meta": OBJ,
}
NODE = _obj(
    {
        **NODE_FIELDS,
        "tokens": {"type": ["array", "null"], "items": _ref("Token")},
        "provenance": {"type": ["object", "null"]},
    },
    required=list(NODE_FIELDS),
)
TREE = _obj(
    {
        "id": STR,
        "root_id": STR,
        "title": STR,
        "source": STR,
        "created_at": NUM,
        "updated_at": NUM,
        "meta": OBJ,
    }
)
OFFER = _obj(
    {
        "id": STR,
        "tree_id": STR,
        "parent_id": STR,
        "state": {"type": "string", "enum": ["streaming", "done", "failed", "cancelled"]},
        "settings": OBJ,
        "created_at": NUM,
        "finished_at": {"type": ["number", "null"]},
        "error": NULL_STR,
        "meta": OBJ,
        "node_ids": _array(STR),
    }
)
NODES = _array(_ref("Node"))
FRAGMENT = _obj(
    {
        "node_id": STR,
        "tree_id": STR,
        "text": STR,
        "score": NUM,
        "status": STR,
        "source": STR,
        "scope": STR,
        "tree_title": STR,
    }
)
OUTCOME = _obj(
    {
        "node_id": STR,
        "branch": {"type": ["integer", "null"]},
        "outcome": {"type": "string", "enum": ["picked", "edited then picked", "pruned", "ignored"]},
        "text": STR,
        "edited_node_id": NULL_STR,
        "edited_text": NULL_STR,
    }
)
PICK_RECORD = _obj(
    {
        "offer_id": STR,
        "tree_id": STR,
        "parent_id": STR,
        "state": STR,
        "created_at": NUM,
        "prompt": STR,
        "nodes": _array(OUTCOME),
    }
)
STATUS = _obj(
    {
        "version": STR,
        "pid": INT,
        "port": INT,
        "started_at": NUM,
        "uptime_s": NUM,
        "model": _obj({"backend": STR, "path": STR, "sampler": STR}),
        "queue": _obj(
            {
                "waiting": INT,
                "debouncing": INT,
                "max": INT,
                "in_flight": NULL_STR,
                "done": INT,
                "dropped": INT,
            }
        ),
        "sources": {"type": "object", "additionalProperties": OBJ},
        "memory": _obj({"enabled": BOOL, "available": BOOL, "warning": NULL_STR}),
        # the personal adapter writing a share of the branches (name null: none), or why it was refused
        "adapter": _obj({"name": NULL_STR, "share": NUM, "problem": NULL_STR}),
        "subscribers": INT,
        "counts": _obj({"trees": INT, "nodes": INT}),
    }
)

SCHEMAS: dict[str, Schema] = {
    "Error": _obj({"error": STR}),
    "Token": TOKEN,
    "Node": NODE,
    "Tree": TREE,
    "Offer": OFFER,
    "Status": STATUS,
    "TreeList": _obj({"trees": _array(_ref("Tree"))}),
    "TreeView": _obj({"tree": _ref("Tree"), "nodes": NODES, "offers": _array(_ref("Offer"))}),
    "NodeView": _obj(
        {
            "node": _ref("Node"),
            "ancestry": _array(STR),
            "children": NODES,
            "revisions": _array(_obj({"node_id": STR, "rev": INT, "text": STR, "edited_at": NUM})),
            "offers": _array(_ref("Offer")),
        }
    ),
    "Picked": _obj({"node": _ref("Node"), "path": _array(STR)}),
    "Edited": _obj({"node": _ref("Node"), "created": BOOL, "original_id": STR}),
    "NodeResult": _obj({"node": _ref("Node")}),
    "TreeResult": _obj({"tree": _ref("Tree")}),
    "OfferView": _obj({"offer": _ref("Offer"), "nodes": NODES}),
    "SearchResults": _obj({"query": STR, "results": _array(FRAGMENT)}),
    "PickLog": _obj({"offers": _array(PICK_RECORD)}),
}

ERROR_TEXT = {
    400: "bad input: invalid JSON, a missing or unknown field, a value out of range",
    401: "no token, or a wrong one",
    403: "a foreign Host or Origin",
    404: "unknown id or route",
    409: "the action no longer fits the current state (e.g. the note changed around the point)",
    413: "the body is larger than server.max_body_bytes",
    415: "the body is not JSON",
    503: "a service is not available (memory, the manual source, the tree store: disk full or "
    "read-only; shutting down)",
}
COMMON_ERRORS = (401, 403, 503)


def _field_schema(field: Any) -> Schema:
    schema: Schema = {"type": field.type}
    if field.description:
        schema["description"] = field.description
    for key, attr in (
        ("minimum", "minimum"),
        ("maximum", "maximum"),
        ("minLength", "min_length"),
        ("maxLength", "max_length"),
        ("pattern", "pattern"),
    ):
        value = getattr(field, attr)
        if value is not None:
            schema[key] = value
    return schema


CLIENT_ERROR_TEXT = {401: "no client key, or one that is not (or no longer) a key: `ambient keys add NAME`"}


def _errors(
    codes: tuple[int, ...], common: tuple[int, ...] = COMMON_ERRORS, client: ClientAPI | None = None
) -> dict[str, Any]:
    error = {"application/json": {"schema": _ref(client.error_schema if client else "Error")}}
    texts = {**ERROR_TEXT, **CLIENT_ERROR_TEXT} if client else ERROR_TEXT
    return {str(c): {"description": texts[c], "content": error} for c in sorted({*codes, *common})}


def _operation(route: Route) -> Schema:
    content: Schema = {"application/json": {"schema": _ref(route.response)}}
    if route.events:
        content["text/event-stream"] = {"schema": {"type": "string", "description": "server-sent events"}}
    op: Schema = {
        "summary": route.summary,
        "operationId": route.handler.__name__,
        "tags": [route.tag],
        "responses": {
            str(route.status): {"description": route.summary, "content": content},
            **_errors(route.errors, client=route.client),
        },
    }
    if route.client is not None:
        op["security"] = [{"clientKey": []}]
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in _path_params(route.path)
    ]
    params += [
        {"name": f.name, "in": "query", "required": f.required, "schema": _field_schema(f)}
        for f in route.query
    ]
    if params:
        op["parameters"] = params
    if route.body_schema is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.body_schema)}},
        }
    elif route.body is not None:
        props = {f.name: _field_schema(f) for f in route.body}
        schema = _obj(props, [f.name for f in route.body if f.required], extra=False)
        op["requestBody"] = {
            "required": any(f.required for f in route.body),
            "content": {"application/json": {"schema": schema}},
        }
    return op


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


EVENT_TYPES = (
    "hello",
    "offer_started",
    "token",
    "offer_done",
    "offer_failed",
    "picked",
    "node_created",
    "node_updated",
    "tree_updated",
    "note_changed",
    "note_accepted",
    "transcript",
    "speech_status",
    "source_status",
    "forgotten",
)
EVENTS_DESCRIPTION = (
    "Signing in: a browser cannot give a WebSocket headers, so the first message is the text "
    '{"type": "auth", "token": TOKEN}; until it comes the socket receives nothing. A missing or wrong '
    "token, or no such message within 10 s, closes the socket with code 4401 and a reason saying why. "
    "A client that can set headers may send Authorization: Bearer TOKEN with the handshake instead "
    "(then no auth message); a token in the URL (?token=) is refused (401). A message over 64 KiB "
    "closes the socket with code 1009 and a reason.\n\n"
    "Server to client: one JSON text per event, {type, data}; types: "
    + ", ".join(EVENT_TYPES)
    + ". note_changed: {path, tree_id, version, point, point_node_id}; note_accepted: an Accepted; "
    "transcript: {session, tree_id, node_id, committed: [{start, end, text}], tentative, time, pause, "
    "pauses}; speech_status: {session, state, message}; source_status: {name, state, restarts, "
    "last_error} (a source crashed, or was restarted after a crash); forgotten: {node_ids, tree_ids, "
    "moved_ids} (nodes or trees removed for good; moved: children that moved up to the parent).\n\n"
    'Client to server: the text "ping" (answered by {type: "pong"}); and speech from the browser: '
    'first the text {"type": "speech_start", "session": ID, "sample_rate": 16000} (ID: 1 to 100 '
    "letters, digits, '_', '.', ':' or '-'; sample_rate defaults to 16000), then binary messages of "
    "16-bit little-endian mono PCM (about 100 ms each, at most 64 KiB), then the text "
    '{"type": "speech_stop", "session": ID}; closing the socket also ends the session. The '
    "transcript comes back as transcript events; the session's tree (source speech:ID) gets offers "
    'at each pause. Problems come back as the text {"type": "error", "message": ..., "data": '
    "{message}} and the socket stays open: a message that is not JSON (or is nested too deeply), an "
    "unknown type, speech is off (sources.speech.enabled = false, or its setup failed), "
    "an odd byte count, a bad sample rate or session id, audio before speech_start."
)


def _extra_paths() -> dict[str, Schema]:
    html = {"text/html": {"schema": STR}}
    return {
        "/api/events": {
            "get": {
                "summary": "WebSocket of live events, and speech from the browser",
                "description": EVENTS_DESCRIPTION,
                "operationId": "events",
                "tags": ["daemon"],
                "security": [{"bearer": []}, {}],  # the header, or the first message
                "responses": {
                    "101": {"description": "switching to the WebSocket protocol"},
                    **_errors((400,)),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "this document",
                "operationId": "openapi",
                "tags": ["daemon"],
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": OBJ}}},
                    **_errors(()),
                },
            }
        },
        "/": {
            "get": {
                "summary": "the web UI (public: it holds no data); a link with ?token= is redirected to "
                "/#token=, the fragment browsers never send, where the page reads the token",
                "operationId": "index",
                "tags": ["ui"],
                "security": [],
                "responses": {
                    "200": {"description": "the page", "content": html},
                    "303": {"description": "go to /#token=TOKEN"},
                    **_errors((401,), common=(403,)),
                },
            }
        },
        "/static/{name}": {
            "get": {
                "summary": "the UI's script, style sheet and icon (public: they hold no data)",
                "operationId": "static",
                "tags": ["ui"],
                "security": [],
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "the file",
                        "content": {
                            "text/javascript": {"schema": STR},
                            "text/css": {"schema": STR},
                            "image/svg+xml": {"schema": STR},
                        },
                    },
                    **_errors((404,), common=(403,)),
                },
            }
        },
    }


def build_openapi(routes: Iterable[Route]) -> Schema:
    """The document for ``routes`` (and the WebSocket)."""
    paths: dict[str, Schema] = {}
    schemas = dict(SCHEMAS)
    for route in routes:
        schemas.update(route.schemas)
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    paths.update(_extra_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ambient daemon",
            "version": __version__,
            "description": "Local API of the ambient daemon. Every /api request needs the token in "
            "$AMBIENT_HOME/token as Authorization: Bearer TOKEN (the WebSocket may take it as its first "
            "message instead); no cookie or URL carries it. The page and its static files are public. "
            "Routes for other apps (/v1) take a client key instead (`ambient keys add NAME`), and a "
            "browser's Origin only when server.client_origins lists it. "
            "The Host must be the loopback address and this port.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token in $AMBIENT_HOME/token (after #token= in the URL `ambient run` "
                    "prints)",
                },
                "clientKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a client app's key (`ambient keys add NAME` prints it once), for the "
                    "routes of APIs for other apps (/v1); never the UI's token",
                },
            },
        },
    }
