"""``GET /v1/models`` and ``POST /v1/completions``: the HTTP side of the completions place.

The daemon's guard has already checked the Host, the Origin (``server.client_origins``) and the
client key (:mod:`ambient.clients`); errors take OpenAI's shape (:mod:`.errors`). A streamed
answer follows the offer's tokens on the daemon's live events, then checks what it sent against
the stored offer, so a client always ends up with exactly the choices the tree holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from ambient.api import daemon_of, json_response
from ambient.clients import client_key
from ambient.errors import AmbientError
from ambient.events import Subscriber
from ambient.keys import Key
from ambient.sampling.base import Token
from ambient.validation import Route, ServiceUnavailable
from integrations.completions import params, wire
from integrations.completions.errors import ERROR_SCHEMA, V1, OpenAIError

if TYPE_CHECKING:
    from integrations.completions.source import CompletionsSource, Prepared

_LOGGER = logging.getLogger(__name__)


def _place(request: web.Request) -> CompletionsSource:
    sources = daemon_of(request).sources
    place = sources.get("completions")
    if place is None:
        problem = sources.problems.get("completions", "it is not running")
        raise ServiceUnavailable(f"the completions place is off ({problem}): check [sources.completions]")
    return cast("CompletionsSource", place)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OpenAIError(f"the body is not valid JSON ({exc})") from None
    except RecursionError:
        raise OpenAIError("the body is JSON nested too deeply: send a flat JSON object") from None


def _no_constant(name: str) -> Any:
    raise OpenAIError(f"the body is not valid JSON: {name} is not a number JSON allows")


# ------------------------------------------------------------------ handlers
async def list_models(request: web.Request) -> web.Response:
    place = _place(request)
    return json_response(wire.models(place.model_id(), place.options.aliases, place.started))


async def create_completion(request: web.Request) -> web.StreamResponse:
    place = _place(request)
    key = client_key(request)
    caps = place.hub.app.sampler.capabilities
    asked = params.parse(await _body(request), caps.vocab_size)
    place.check(asked)
    request_id = place.new_request_id()
    if asked.stream:
        return await _stream(request, place, key, asked, request_id)
    choices: list[dict[str, Any]] = []
    prompt_tokens = completion_tokens = 0
    for p, prompt in enumerate(asked.prompts):
        prepared = await place.prepare(key, prompt, asked)
        sampled = await place.offer(key, prepared, asked, request_id, p)
        prompt_tokens += prepared.prompt_tokens
        for i in range(asked.n):
            node = sampled.nodes[i] if i < len(sampled.nodes) else None
            tokens = list(node.tokens or ()) if node is not None else []
            completion_tokens += len(tokens)
            choices.append(_choice(p * asked.n + i, prepared, asked, node, tokens))
    body = wire.completion(
        request_id, int(time.time()), place.model_id(), choices, wire.usage(prompt_tokens, completion_tokens)
    )
    return json_response(body)


def _choice(
    index: int, prepared: Prepared, asked: params.CompletionRequest, node: Any, tokens: list[Token]
) -> dict[str, Any]:
    text = node.text if node is not None else ""
    finish = node.meta.get("finish_reason", "length") if node is not None else "length"
    logprobs = None
    if asked.logprobs is not None:
        logprobs = (
            wire.echo_logprobs(prepared.score, asked.logprobs)
            if asked.echo
            else wire.Logprobs(asked.logprobs)
        )
        logprobs.at = len(prepared.prompt)
        logprobs.extend(tokens)
    return wire.choice(index, prepared.prompt + text if asked.echo else text, finish, logprobs)


# ------------------------------------------------------------------ streaming
class _Stream:
    """The server-sent events of one answer, begun at the first chunk (errors before it are plain)."""

    def __init__(self, request: web.Request, request_id: str, model: str) -> None:
        self.request = request
        self.request_id = request_id
        self.model = model
        self.created = int(time.time())
        self.response: web.StreamResponse | None = None
        self.gone = False  # the client went away: the offers still finish and are kept

    async def send(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> None:
        await self.raw(wire.completion(self.request_id, self.created, self.model, choices, usage))

    async def raw(self, data: dict[str, Any] | str) -> None:
        if self.gone:
            return
        try:
            if self.response is None:
                self.response = web.StreamResponse(
                    headers={
                        "Content-Type": "text/event-stream",
                        "Cache-Control": "no-cache",
                        "X-Accel-Buffering": "no",
                    }
                )
                await self.response.prepare(self.request)
            await self.response.write(wire.event(data))
        except ConnectionError:
            self.gone = True


async def _stream(
    request: web.Request, place: CompletionsSource, key: Key, asked: params.CompletionRequest, request_id: str
) -> web.StreamResponse:
    out = _Stream(request, request_id, place.model_id())
    prompt_tokens = completion_tokens = 0
    try:
        for p, prompt in enumerate(asked.prompts):
            prepared = await place.prepare(key, prompt, asked)
            prompt_tokens += prepared.prompt_tokens
            if asked.echo:
                await out.send([_echo_choice(p * asked.n + i, prepared, asked) for i in range(asked.n)])
            completion_tokens += await _stream_offer(request, place, key, prepared, asked, request_id, p, out)
        if asked.include_usage:
            await out.send([], wire.usage(prompt_tokens, completion_tokens))
    except Exception as exc:
        if out.response is None:
            raise  # nothing sent yet: a plain error answer
        await out.raw(_error_event(exc))
    await out.raw("[DONE]")
    if out.response is not None:
        with contextlib.suppress(ConnectionError):
            await out.response.write_eof()
        return out.response
    return web.Response(status=204)  # the client went away before the first byte: nobody reads this


def _error_event(exc: Exception) -> dict[str, Any]:
    """An error after the answer began: one event in OpenAI's error shape (the SDKs raise it)."""
    if isinstance(exc, AmbientError):
        return V1.error_body(exc.http_status, str(exc), exc)
    _LOGGER.exception("streaming a completion failed")
    return V1.error_body(500, "internal error: the daemon's log has the details", exc)


def _echo_choice(index: int, prepared: Prepared, asked: params.CompletionRequest) -> dict[str, Any]:
    logprobs = wire.echo_logprobs(prepared.score, asked.logprobs) if asked.logprobs is not None else None
    return wire.choice(index, prepared.prompt, None, logprobs)


async def _stream_offer(
    request: web.Request,
    place: CompletionsSource,
    key: Key,
    prepared: Prepared,
    asked: params.CompletionRequest,
    request_id: str,
    p: int,
    out: _Stream,
) -> int:
    """Stream one prompt's offer; the number of tokens its choices hold."""
    n, first = asked.n, p * asked.n
    if not asked.samples:
        await out.send([wire.choice(first + i, "", "length", None) for i in range(n)])
        return 0
    event = place.event(key, prepared, asked, request_id, p)
    sent = [""] * n
    offsets = [len(prepared.prompt)] * n
    daemon = daemon_of(request)
    sub = daemon.subscribe()
    try:
        task = asyncio.ensure_future(place.sample(event))  # kept to its end even if the client leaves
        place.keep(task)
        await _follow(sub, task, event.key, asked, first, sent, offsets, out)
        sampled = task.result()
    finally:
        daemon.unsubscribe(sub)
    count = 0
    for i in range(n):
        node = sampled.nodes[i] if i < len(sampled.nodes) else None
        text = node.text if node is not None else ""
        count += len(node.tokens or ()) if node is not None else 0
        if text.startswith(sent[i]) and len(text) > len(sent[i]):  # what the live events missed
            await out.send([wire.choice(first + i, text[len(sent[i]) :], None, None)])
        finish = node.meta.get("finish_reason", "length") if node is not None else "length"
        await out.send([wire.choice(first + i, "", finish, None)])
    return count


async def _follow(
    sub: Subscriber,
    task: asyncio.Future[Any],
    event_key: str,
    asked: params.CompletionRequest,
    first: int,
    sent: list[str],
    offsets: list[int],
    out: _Stream,
) -> None:
    """Forward the offer's tokens from the live events until it is stored."""
    offer_id: str | None = None
    while True:
        getter = asyncio.ensure_future(sub.queue.get())
        try:
            done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            getter.cancel()  # a no-op once it has its message; else nothing is taken from the queue
        messages: list[str | None] = []
        if getter in done:
            messages.append(getter.result())
        if task.done():
            while not sub.queue.empty():
                messages.append(sub.queue.get_nowait())
        for message in messages:
            if message is None:  # the stream of events ended (shutdown, or it fell behind)
                await asyncio.wait({task})
                return
            offer_id = await _forward(
                json.loads(message), offer_id, event_key, asked, first, sent, offsets, out
            )
        if task.done():
            return


async def _forward(
    message: dict[str, Any],
    offer_id: str | None,
    event_key: str,
    asked: params.CompletionRequest,
    first: int,
    sent: list[str],
    offsets: list[int],
    out: _Stream,
) -> str | None:
    kind, data = message.get("type"), message.get("data") or {}
    if kind == "offer_started" and offer_id is None:
        source = (data.get("provenance") or {}).get("source") or {}
        return str(data["offer_id"]) if source.get("key") == event_key else None
    if kind != "token" or offer_id is None or data.get("offer_id") != offer_id:
        return offer_id
    branch = int(data.get("branch", 0))
    if not 0 <= branch < len(sent):
        return offer_id
    token = Token.from_dict(
        {"text": data.get("text", ""), "logprob": data.get("logprob"), "top": data.get("top", [])}
    )
    logprobs = None
    if asked.logprobs is not None:
        logprobs = wire.Logprobs(asked.logprobs, offsets[branch])
        logprobs.add(token)
    sent[branch] += token.text
    offsets[branch] += len(token.text)
    if token.text or logprobs is not None:
        await out.send([wire.choice(first + branch, token.text, None, logprobs)])
    return offer_id


# ------------------------------------------------------------------ the routes
COMPLETION_SCHEMAS: dict[str, dict[str, Any]] = {
    "OpenAIError": ERROR_SCHEMA,
    "CompletionRequest": {
        "type": "object",
        "description": "OpenAI's legacy completions request (see docs/clients.md for what is honoured)",
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "prompt": {
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1},
                        "minItems": 1,
                        "maxItems": params.MAX_PROMPTS,
                    },
                ]
            },
            "n": {"type": "integer", "minimum": 1, "maximum": 64},
            "max_tokens": {"type": "integer", "minimum": 0, "maximum": 4096},
            "temperature": {"type": "number", "minimum": 0, "maximum": 5},
            "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "seed": {"type": ["integer", "null"]},
            "stop": {
                "oneOf": [
                    {"type": "null"},
                    {"type": "string", "minLength": 1},
                    {"type": "array", "items": {"type": "string", "minLength": 1}},
                ]
            },
            "logprobs": {"type": ["integer", "null"], "minimum": 0, "maximum": 20},
            "echo": {"type": "boolean"},
            "logit_bias": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
            },
            "stream": {"type": "boolean"},
            "stream_options": {
                "type": ["object", "null"],
                "properties": {"include_usage": {"type": "boolean"}},
            },
            "user": {"type": "string"},
            "best_of": {"type": ["integer", "null"]},
            "frequency_penalty": {"type": ["number", "null"]},
            "presence_penalty": {"type": ["number", "null"]},
            "suffix": {"type": ["string", "null"]},
        },
        "required": ["model", "prompt"],
    },
    "Completion": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["text_completion"]},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "text": {"type": "string"},
                        "logprobs": {"type": ["object", "null"]},
                        "finish_reason": {"type": ["string", "null"]},
                    },
                    "required": ["index", "text", "logprobs", "finish_reason"],
                },
            },
            "usage": {
                "type": "object",
                "properties": {
                    "prompt_tokens": {"type": "integer"},
                    "completion_tokens": {"type": "integer"},
                    "total_tokens": {"type": "integer"},
                },
            },
        },
        "required": ["id", "object", "created", "model", "choices"],
    },
    "ModelList": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "object": {"type": "string"},
                        "created": {"type": "integer"},
                        "owned_by": {"type": "string"},
                    },
                    "required": ["id", "object", "created", "owned_by"],
                },
            },
        },
        "required": ["object", "data"],
    },
}

ROUTES = (
    Route(
        "GET",
        "/v1/models",
        list_models,
        "the model that answers (OpenAI-compatible; a client key, not the UI's token)",
        "ModelList",
        errors=(404,),
        tag="openai",
        schemas=COMPLETION_SCHEMAS,
        client=V1,
    ),
    Route(
        "POST",
        "/v1/completions",
        create_completion,
        "N continuations of a prompt, kept as an offer in the client key's trees (OpenAI's legacy "
        "completions; streamed as server-sent events with stream: true)",
        "Completion",
        errors=(400, 404, 413),
        tag="openai",
        schemas=COMPLETION_SCHEMAS,
        client=V1,
        body_schema="CompletionRequest",
        events=True,
    ),
)
