"""Request validation: the fields of a route's body and query, checked in one place.

A :class:`Route` declares its method, path, handler and :class:`Field` s once;
the same declaration checks requests (:func:`read_body`, :func:`read_query`) and
writes the OpenAPI document (:mod:`ambient.openapi`). Bad input raises
:class:`~ambient.errors.InvalidInput` (a 400) naming the field and what it
accepts.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ambient.errors import AmbientError, InvalidInput

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# An API's error body from the status, the one-line message and the exception (None: an HTTP error).
ErrorBody = Callable[[int, str, BaseException | None], dict[str, Any]]


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
class ClientAPI:
    """An API for other apps under its own path prefix (e.g. an OpenAI-compatible ``/v1``).

    Every request under ``prefix`` (an unknown route's too) is guarded by :mod:`ambient.clients`
    instead of the UI's rules: the Host check as everywhere, then a client key
    (:mod:`ambient.keys`) in ``Authorization: Bearer`` (never the UI's token), an ``Origin`` only
    when ``server.client_origins`` lists it (CORS preflight answered, under the prefix only), and
    errors in the shape that API's clients read: ``error_body``, described in the OpenAPI document
    by the component schema ``error_schema``.
    """

    prefix: str
    error_body: ErrorBody
    error_schema: str

    def covers(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    response: str  # the success body: the name of a component schema
    status: int = 200
    body: tuple[Field, ...] | None = None  # None: no body
    query: tuple[Field, ...] = ()
    errors: tuple[int, ...] = ()
    tag: str = "trees"
    # Component schemas this route brings to the OpenAPI document (a place's own shapes), by name.
    schemas: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    client: ClientAPI | None = None  # a route of an API for other apps (its path under client.prefix)
    body_schema: str | None = None  # the body's component schema, when it is more than flat fields
    events: bool = False  # the success answer may be server-sent events (text/event-stream) instead


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
        except RecursionError:  # e.g. "[" x 100,000: within the size limit, too deep for the parser
            raise InvalidInput("the body is JSON nested too deeply: send a flat JSON object") from None
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
