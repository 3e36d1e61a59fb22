"""The REST API: trees, nodes, offers, pick, edit, prune, bookmark, regenerate, accept, search, status.

Each route is declared once in :data:`ROUTES` with its request fields; the
same table validates requests and writes the OpenAPI document
(:mod:`ambient.openapi`), so the two cannot drift apart. Every store call runs
in a worker thread. Bad input is a 4xx with ``{"error": message}``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, cast

from aiohttp import HttpVersion11, web

from ambient.app import App
from ambient.daemon import Daemon
from ambient.errors import AmbientError, InvalidInput
from ambient.offers import options_from
from ambient.picklog import offer_records
from ambient.sampling.base import MAX_N
from ambient.tree import HUMAN, Action, Author, Node, Tree

DAEMON = web.AppKey("daemon", Daemon)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class UnsupportedMediaType(AmbientError):
    http_status = 415


class ServiceUnavailable(AmbientError):
    http_status = 503


@dataclasses.dataclass(frozen=True)
class Field:
    """One request field (JSON body or query), validated here and described in OpenAPI."""

    name: str
    type: str  # "string", "boolean", "integer", "number"
    description: str = ""
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    plain_text: bool = False  # a string with something besides whitespace, and no NUL characters

    @property
    def pattern(self) -> str | None:
        """The JSON Schema ``pattern`` the OpenAPI document gives this field."""
        return PLAIN_TEXT if self.plain_text else None


PLAIN_TEXT = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    response: str  # component schema name of the success body
    status: int = 200
    body: tuple[Field, ...] | None = None  # None: no body
    query: tuple[Field, ...] = ()
    errors: tuple[int, ...] = ()
    tag: str = "trees"


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
OFFER = Field("offer", "boolean", "offer continuations right away (default true)")
TITLE = Field("title", "string", "a title (default: the first line)", max_length=200)
TREE_BODY = (TEXT, TITLE, OFFER, *SAMPLING)
CHILD_BODY = (TEXT, OFFER, *SAMPLING)
EDIT_BODY = (TEXT,)
PRUNE_BODY = (Field("pruned", "boolean", "false to undo (default true)"),)
BOOKMARK_BODY = (Field("on", "boolean", "false to remove (default true)"),)


# ------------------------------------------------------------------ helpers
def _daemon(request: web.Request) -> Daemon:
    return request.app[DAEMON]


def _app(request: web.Request) -> App:
    return request.app[DAEMON].app


async def _blocking(request: web.Request, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await _daemon(request).run_blocking(functools.partial(fn, *args, **kwargs))


def _reject_constant(name: str) -> Any:
    raise InvalidInput(f"the body is not valid JSON: {name} is not a number JSON allows")


async def read_body(request: web.Request, fields: tuple[Field, ...]) -> dict[str, Any]:
    """The JSON object in the body, checked against ``fields`` (an empty body is ``{}``)."""
    raw = await request.read() if request.can_read_body else b""
    if not raw.strip():
        data: Any = {}
    else:
        if request.content_type != "application/json":
            raise UnsupportedMediaType(
                f"the body must be JSON (Content-Type: application/json), got {request.content_type!r}"
            )
        try:
            data = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidInput('the body must be a JSON object, e.g. {"text": "..."}')
    return _check_fields(data, fields, "field")


def read_query(request: web.Request, fields: tuple[Field, ...]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for f in fields:
        if f.name in request.query:
            raw[f.name] = _from_query(f, request.query[f.name])
    return _check_fields(raw, fields, "query parameter", strict=False)


def _from_query(f: Field, value: str) -> Any:
    if f.type == "integer":
        try:
            return int(value)
        except ValueError:
            raise InvalidInput(f"query parameter {f.name!r} must be an integer, got {value!r}") from None
    return value


def _check_fields(
    data: dict[str, Any], fields: tuple[Field, ...], what: str, strict: bool = True
) -> dict[str, Any]:
    known = {f.name: f for f in fields}
    unknown = sorted(set(data) - set(known))
    if unknown and strict:
        expected = ", ".join(known) or "no fields"
        raise InvalidInput(f"unknown {what} {unknown[0]!r}: expected {expected}")
    for f in fields:
        if f.name not in data:
            if f.required:
                raise InvalidInput(f"missing {what} {f.name!r}: {f.description}")
            continue
        data[f.name] = _check_value(f, data[f.name], what)
    return {k: v for k, v in data.items() if k in known}


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


def _check_value(f: Field, value: Any, what: str) -> Any:
    """``value`` if it fits ``f`` (an integral float such as 3.0 is the integer 3, as in JSON Schema)."""
    if f.type == "integer" and isinstance(value, float) and value.is_integer():
        value = int(value)
    ok = isinstance(value, _TYPES[f.type]) and (f.type == "boolean" or not isinstance(value, bool))
    if not ok:
        raise InvalidInput(f"{what} {f.name!r} must be a {f.type}, got {json.dumps(value)[:40]}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{what} {f.name!r} must be a finite number")
    if f.type in ("integer", "number"):
        if f.minimum is not None and value < f.minimum:
            raise InvalidInput(f"{what} {f.name!r} must be at least {f.minimum:g}, got {value}")
        if f.maximum is not None and value > f.maximum:
            raise InvalidInput(f"{what} {f.name!r} must be at most {f.maximum:g}, got {value}")
    if isinstance(value, str):
        if f.min_length is not None and len(value) < f.min_length:
            raise InvalidInput(f"{what} {f.name!r} must not be empty")
        if f.max_length is not None and len(value) > f.max_length:
            raise InvalidInput(f"{what} {f.name!r} is longer than {f.max_length} characters")
        if f.plain_text and "\x00" in value:
            raise InvalidInput(f"{what} {f.name!r} contains NUL characters: send plain text")
        if f.plain_text and not value.strip():
            raise InvalidInput(f"{what} {f.name!r} must not be empty or blank")
    return value


def _sampling(body: dict[str, Any], request: web.Request) -> dict[str, Any]:
    """Per-request sampling overrides, checked now (a 400 rather than a failed offer later)."""
    keys = ("n", "temperature", "max_tokens", "signals", "oversample")
    overrides: dict[str, Any] = {k: body[k] for k in keys if k in body}
    checked = {k: v for k, v in overrides.items() if k != "oversample"}  # oversample is not a sampler option
    options_from(_daemon(request).config.sampling, **checked)
    return overrides


class ManualInput(Protocol):
    """What the API needs from the manual source (integrations/manual)."""

    async def paste(
        self, text: str, *, title: str, offer: bool, sampling: Mapping[str, Any]
    ) -> tuple[Tree, Node]: ...

    async def write(self, parent_id: str, text: str, *, offer: bool, sampling: Mapping[str, Any]) -> Node: ...

    async def regenerate(self, node_id: str, sampling: Mapping[str, Any]) -> None: ...


def _manual(request: web.Request) -> ManualInput:
    source = _daemon(request).sources.get("manual")
    if source is None:
        problem = _daemon(request).sources.problems.get("manual", "it is not running")
        raise ServiceUnavailable(f"the manual source is off ({problem}): check [sources.manual] and restart")
    return cast(ManualInput, source)


class NoteAccepter(Protocol):
    """What the API needs from the notes source (integrations/files)."""

    async def accept(self, node_id: str) -> Any: ...


NOTES_SOURCE_NAMES = ("notes", "files")  # the notes integration lives in integrations/files/


def _notes_source(daemon: Daemon) -> NoteAccepter | None:
    for name in NOTES_SOURCE_NAMES:
        source = daemon.sources.get(name)
        if source is not None:
            return cast(NoteAccepter, source)
    return None


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status, dumps=functools.partial(json.dumps, ensure_ascii=False))


def _node_payload(node: Node, tokens: bool = True) -> dict[str, Any]:
    return node.as_dict(tokens=tokens)


# ------------------------------------------------------------------ handlers
async def get_status(request: web.Request) -> web.Response:
    daemon = _daemon(request)
    counts = await _blocking(request, _counts, daemon.app)
    return _json({**daemon.status(), "counts": counts})


def _counts(app: App) -> dict[str, int]:
    return {"trees": len(app.store.list_trees()), "nodes": app.store.node_count()}


async def list_trees(request: web.Request) -> web.Response:
    trees = await _blocking(request, _app(request).store.list_trees)
    return _json({"trees": [t.as_dict() for t in trees]})


async def create_tree(request: web.Request) -> web.Response:
    body = await read_body(request, TREE_BODY)
    sampling = _sampling(body, request)
    offer = body.get("offer", True)
    tree, root = await _manual(request).paste(
        body["text"], title=body.get("title", ""), offer=offer, sampling=sampling
    )
    return _json({"tree": tree.as_dict(), "root": _node_payload(root), "queued": offer}, status=201)


async def get_tree(request: web.Request) -> web.Response:
    tree_id = request.match_info["tree_id"]
    tree, nodes, offers = await _blocking(request, _tree_view, _app(request), tree_id)
    return _json(
        {
            "tree": tree.as_dict(),
            "nodes": [n.as_dict(tokens=False) for n in nodes],
            "offers": [o.as_dict() for o in offers],
        }
    )


def _tree_view(app: App, tree_id: str) -> tuple[Any, list[Node], list[Any]]:
    store = app.store
    return store.get_tree(tree_id), store.tree_nodes(tree_id), store.tree_offers(tree_id)


async def get_node(request: web.Request) -> web.Response:
    return _json(await _blocking(request, _node_view, _app(request), request.match_info["node_id"]))


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


async def add_child(request: web.Request) -> web.Response:
    body = await read_body(request, CHILD_BODY)
    sampling = _sampling(body, request)
    parent_id = request.match_info["node_id"]
    await _blocking(request, _app(request).store.get_node, parent_id)
    offer = body.get("offer", True)
    node = await _manual(request).write(parent_id, body["text"], offer=offer, sampling=sampling)
    return _json({"node": _node_payload(node), "queued": offer}, status=201)


async def pick(request: web.Request) -> web.Response:
    await read_body(request, ())
    daemon = _daemon(request)
    node_id = request.match_info["node_id"]
    node, path = await _blocking(request, _pick, daemon.app, node_id)
    daemon.publish("picked", {"node": node.as_dict(tokens=False), "path": path})
    daemon.schedule_index()
    return _json({"node": _node_payload(node), "path": path})


def _pick(app: App, node_id: str) -> tuple[Node, list[str]]:
    node = app.store.pick(node_id, {"via": "ui"})
    return node, [n.id for n in app.store.ancestry(node_id)]


async def edit(request: web.Request) -> web.Response:
    body = await read_body(request, EDIT_BODY)
    daemon = _daemon(request)
    node, created, original = await _blocking(
        request, edit_node, daemon.app, request.match_info["node_id"], body["text"]
    )
    if created:
        daemon.publish("picked", {"node": node.as_dict(tokens=False), "path": None})
    daemon.schedule_index()
    return _json({"node": _node_payload(node), "created": created, "original_id": original})


def edit_node(app: App, node_id: str, text: str) -> tuple[Node, bool, str]:
    """A person's edit. Model text is kept: the edit becomes a new human node beside it, and is picked.

    A person's own node is edited in place (its earlier text is kept as a revision).
    """
    store = app.store
    node = store.get_node(node_id)
    if not node.author.is_model or node.parent_id is None:
        return store.edit(node_id, text), False, node_id
    if text == node.text:
        return node, False, node_id
    new = store.add_node(node.parent_id, text, author=Author(HUMAN), meta={"edited_from": node.id})
    store.record(Action.EDIT, node.id, {"new_node_id": new.id, "before": node.text, "after": text})
    return store.pick(new.id, {"edited_from": node.id, "via": "ui"}), True, node_id


async def prune(request: web.Request) -> web.Response:
    body = await read_body(request, PRUNE_BODY)
    node = await _blocking(
        request, _app(request).store.prune, request.match_info["node_id"], body.get("pruned", True)
    )
    _daemon(request).schedule_index()
    return _json({"node": _node_payload(node)})


async def bookmark(request: web.Request) -> web.Response:
    body = await read_body(request, BOOKMARK_BODY)
    node = await _blocking(
        request, _app(request).store.bookmark, request.match_info["node_id"], body.get("on", True)
    )
    _daemon(request).publish("node_updated", {"node": node.as_dict(tokens=False)})
    return _json({"node": _node_payload(node)})


async def regenerate(request: web.Request) -> web.Response:
    body = await read_body(request, SAMPLING)
    sampling = _sampling(body, request)
    node_id = request.match_info["node_id"]
    await _blocking(request, _app(request).store.get_node, node_id)
    await _manual(request).regenerate(node_id, sampling)
    return _json({"queued": True, "parent_id": node_id}, status=202)


async def accept(request: web.Request) -> web.Response:
    """Insert a note continuation into its note, at the point it was offered for."""
    await read_body(request, ())
    daemon = _daemon(request)
    node_id = request.match_info["node_id"]
    node = await _blocking(request, daemon.app.store.get_node, node_id)  # unknown: 404
    source = _notes_source(daemon)
    if source is not None:
        result = await source.accept(node_id)
    else:  # the notes source is not running: accept directly (the note is still on disk)
        from integrations.files.accept import accept_node

        result = await _blocking(
            request, accept_node, daemon.app.store, node_id, max_bytes=_max_bytes(daemon)
        )
        daemon.publish("note_accepted", result.as_dict())
    path = await _blocking(request, lambda: [n.id for n in daemon.app.store.ancestry(node.id)])
    picked = await _blocking(request, daemon.app.store.get_node, node_id)
    daemon.publish("picked", {"node": picked.as_dict(tokens=False), "path": path})
    daemon.schedule_index()
    return _json({"accepted": result.as_dict()})


def _max_bytes(daemon: Daemon) -> int:
    from integrations.files.options import NotesOptions

    for name in NOTES_SOURCE_NAMES:
        table = daemon.config.sources.get(name)
        if table and isinstance(table.get("max_bytes"), int):
            return int(table["max_bytes"])
    return NotesOptions.max_bytes


async def get_offer(request: web.Request) -> web.Response:
    offer_id = request.match_info["offer_id"]
    offer, nodes = await _blocking(request, _offer_view, _app(request), offer_id)
    return _json({"offer": offer.as_dict(), "nodes": [n.as_dict() for n in nodes]})


def _offer_view(app: App, offer_id: str) -> tuple[Any, list[Node]]:
    offer = app.store.get_offer(offer_id)
    return offer, [app.store.get_node(i) for i in offer.node_ids]


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
)


async def search(request: web.Request) -> web.Response:
    query = read_query(request, SEARCH_QUERY)
    if not query["q"].strip():
        raise InvalidInput("query parameter 'q' must not be blank")
    daemon = _daemon(request)
    fragments = await daemon.search(query["q"], query.get("k", 8))
    titles = await _blocking(request, _titles, daemon.app, {f.tree_id for f in fragments})
    results = [{**dataclasses.asdict(f), "tree_title": titles.get(f.tree_id, "")} for f in fragments]
    return _json({"query": query["q"], "results": results})


def _titles(app: App, tree_ids: set[str]) -> dict[str, str]:
    return {t.id: t.title for t in app.store.list_trees() if t.id in tree_ids}


PICKS_QUERY = (Field("tree_id", "string", "only this tree's offers", max_length=200),)


async def picks(request: web.Request) -> web.Response:
    query = read_query(request, PICKS_QUERY)
    records = await _blocking(
        request, lambda: [r.as_dict() for r in offer_records(_app(request).store, query.get("tree_id"))]
    )
    return _json({"offers": records})


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
        "POST",
        "/api/trees",
        create_tree,
        "a new document from typed or pasted text (and an offer at it)",
        "CreatedTree",
        status=201,
        body=TREE_BODY,
        errors=(400, 413, 415, 503),
    ),
    Route(
        "GET",
        "/api/trees/{tree_id}",
        get_tree,
        "a tree: all its nodes (without tokens) and offers",
        "TreeView",
        errors=(404,),
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
        "/api/nodes/{node_id}/children",
        add_child,
        "a continuation written by hand (and an offer at it)",
        "CreatedNode",
        status=201,
        body=CHILD_BODY,
        errors=(*NODE_ERRORS, 503),
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
        "POST",
        "/api/nodes/{node_id}/regenerate",
        regenerate,
        'more continuations at this node ("more like these")',
        "Queued",
        status=202,
        body=SAMPLING,
        errors=(*NODE_ERRORS, 503),
    ),
    Route(
        "POST",
        "/api/nodes/{node_id}/accept",
        accept,
        "insert a note continuation into its note at the point it was offered for (409 when the note "
        "changed around that point; nothing is written then)",
        "AcceptResult",
        body=(),
        errors=(*NODE_ERRORS, 409),
        tag="notes",
    ),
    Route(
        "GET",
        "/api/offers/{offer_id}",
        get_offer,
        "an offer and its continuations",
        "OfferView",
        errors=(404,),
    ),
    Route(
        "GET",
        "/api/search",
        search,
        "past fragments close in meaning to a query",
        "SearchResults",
        query=SEARCH_QUERY,
        errors=(400, 503),
        tag="memory",
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


async def expect_handler(request: web.Request) -> None:
    """``Expect: 100-continue`` is answered as aiohttp does; any other Expect value is ignored
    (RFC 9110 allows either), so the request still meets the guard and gets a JSON answer
    instead of aiohttp's plain-text 417 before any check."""
    if request.version == HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler, expect_handler=expect_handler)
