"""The openai backend against a small aiohttp server, for what a real llama.cpp server never does.

A server that honours ``n`` and sends logprobs, one that answers 503 before it
works, one that ignores ``stream``, one without ``/tokenize``. The same
features are also tested against a real llama-cpp-python server in
``test_sampling_openai.py``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ambient.config import load_config
from ambient.errors import ConfigError, InvalidInput, ModelUnavailable
from ambient.sampling.base import SamplingOptions, Token
from ambient.sampling.http_client import Endpoint
from ambient.sampling.openai import OpenAISampler, estimate_tokens
from ambient.sampling.registry import create_sampler

Server = Callable[[web.Application], Awaitable[TestServer]]
WORDS = [" the", " river", " runs", " on"]


def chunk(index: int, text: str, logprob: float | None, finish: str | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index, "text": text, "finish_reason": finish}
    if logprob is not None:
        choice["logprobs"] = {
            "tokens": [text], "token_logprobs": [logprob], "top_logprobs": [{text: logprob, " x": -5.0}],
        }
    return {"object": "text_completion", "choices": [choice]}


async def sse(request: web.Request, events: list[dict[str, Any]]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for e in events:
        await resp.write(f"data: {json.dumps(e)}\n\n".encode())
    await resp.write(b"data: [DONE]\n\n")
    return resp


class Honest:
    """Honours n, sends logprobs, counts requests; answers 503 ``fail_first`` times."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        self.auth.append(request.headers.get("Authorization"))
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.json_response({"error": {"message": "warming up"}}, status=503)
        events = [
            chunk(i, w, -0.5 if body.get("logprobs") else None)
            for w in WORDS[: body["max_tokens"]]
            for i in range(body["n"])
        ]
        events += [chunk(i, "", None, "length") for i in range(body["n"])]
        return await sse(request, events)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self.completions)
        return app


async def start(aiohttp_server: Server, app: web.Application) -> str:
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


def opts(**kw: Any) -> SamplingOptions:
    return SamplingOptions(**{"n": 3, "max_tokens": 4, "seed": 7, **kw})


async def test_server_that_honours_n_and_sends_logprobs(aiohttp_server: Server) -> None:
    fake = Honest()
    sampler = OpenAISampler(await start(aiohttp_server, fake.app()), "m", context_length=512)
    assert sampler.capabilities.logprobs is False  # nothing seen yet
    seen: list[tuple[int, Token]] = []
    result = await asyncio.to_thread(sampler.generate, "Once", opts(), lambda b, t: seen.append((b, t)))
    assert [c.text for c in result.continuations] == ["".join(WORDS)] * 3
    assert (result.meta["server_n"], result.meta["fanned_out"], result.meta["requests"]) == (3, False, 1)
    assert result.meta["logprobs"] is True and sampler.capabilities.logprobs is True
    tok = result.continuations[0].tokens[0]
    assert tok.logprob == -0.5 and [a.text for a in tok.top] == [" the", " x"]
    assert len(seen) == 12 and {b for b, _ in seen} == {0, 1, 2}
    sent = fake.bodies[0]
    assert (sent["n"], sent["seed"], sent["stream"], sent["logprobs"], sent["model"]) == (3, 7, True, 5, "m")


async def test_503_is_retried_then_succeeds(aiohttp_server: Server) -> None:
    fake = Honest(fail_first=2)
    sampler = OpenAISampler(await start(aiohttp_server, fake.app()), "m", context_length=512, backoff=0.01)
    result = await asyncio.to_thread(sampler.generate, "Once", opts(n=1))
    assert result.continuations[0].text == "".join(WORDS)
    assert len(fake.bodies) == 3


async def test_503_forever_is_a_clear_error(aiohttp_server: Server) -> None:
    fake = Honest(fail_first=99)
    sampler = OpenAISampler(await start(aiohttp_server, fake.app()), "m", context_length=512, backoff=0.01)
    with pytest.raises(ModelUnavailable, match="503: warming up; it kept failing after retries"):
        await asyncio.to_thread(sampler.generate, "Once", opts(n=1))
    assert len(fake.bodies) == 3  # one try and two retries


async def test_a_server_that_ignores_stream_answers_in_one_piece(aiohttp_server: Server) -> None:
    async def whole(request: web.Request) -> web.Response:
        return web.json_response({"choices": [{"index": 0, "text": " whole", "finish_reason": "stop"}]})

    app = web.Application()
    app.router.add_post("/v1/completions", whole)
    sampler = OpenAISampler(await start(aiohttp_server, app), "m", context_length=512)
    result = await asyncio.to_thread(sampler.generate, "Once", opts(n=2))
    assert [c.text for c in result.continuations] == [" whole", " whole"]
    assert result.meta == {**result.meta, "server_n": 1, "fanned_out": True, "requests": 2, "logprobs": False}
    assert sampler.capabilities.logprobs is False


async def test_no_tokenize_endpoint_means_an_estimate(aiohttp_server: Server) -> None:
    sampler = OpenAISampler(await start(aiohttp_server, web.Application()), "m")
    assert await asyncio.to_thread(sampler.count_tokens, "abcdefghij") == estimate_tokens("abcdefghij") == 5
    assert await asyncio.to_thread(lambda: sampler.context_length) == 2048  # nothing to ask: the fallback


async def test_api_key_is_sent_but_never_shown(aiohttp_server: Server) -> None:
    fake = Honest()
    url = await start(aiohttp_server, fake.app())
    config = load_config(env={"AMBIENT_HOME": "/nonexistent", "OPENAI_API_KEY": "sk-secret-1"})
    config = config.replace(model__backend="openai", model__base_url=url, model__name="m")
    sampler = OpenAISampler.from_config(config, env={"OPENAI_API_KEY": "sk-secret-1"})
    await asyncio.to_thread(sampler.generate, "Once", opts(n=1))
    assert fake.auth == ["Bearer sk-secret-1"]
    keyed = config.replace(model__api_key="sk-secret-2")
    for shown in (repr(sampler), repr(keyed), repr(keyed.model), repr(sampler._client)):
        assert "sk-secret" not in shown


def test_cancel_closes_a_stalled_stream() -> None:
    """A server that sends one token then stalls: cancel returns at once with what exists."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
        conn.sendall(b"data: " + json.dumps(chunk(0, " one", None)).encode() + b"\n\n")
        conn.recv(1)  # until the client hangs up
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    sampler = OpenAISampler(f"http://127.0.0.1:{port}", "m", context_length=512, timeout=30)
    cancel = threading.Event()
    result = sampler.generate("Once", opts(n=1), lambda b, t: cancel.set(), cancel)
    listener.close()
    assert result.continuations[0].text == " one"
    assert result.continuations[0].finish_reason == "cancelled"
    assert result.meta["wall_s"] < 5


def test_config_errors_name_the_fix() -> None:
    config = load_config(env={"AMBIENT_HOME": "/nonexistent"}).replace(model__backend="openai")
    with pytest.raises(ConfigError, match="model.base_url is empty"):
        create_sampler(config)
    with pytest.raises(ConfigError, match="model.name is empty"):
        create_sampler(config.replace(model__base_url="http://127.0.0.1:9"))
    with pytest.raises(ConfigError, match="not a server address"):
        OpenAISampler("ftp://x", "m")
    assert str(Endpoint.parse("http://127.0.0.1:8080/v1/")) == "http://127.0.0.1:8080"
    assert str(Endpoint.parse("localhost:8000")) == "http://localhost:8000"


async def test_wrong_model_names_what_the_server_serves(aiohttp_server: Server) -> None:
    """vLLM answers 404 for a model it does not serve (llama-cpp-python quietly uses its own instead)."""

    async def completions(request: web.Request) -> web.Response:
        model = (await request.json())["model"]
        message = f"The model `{model}` does not exist."
        return web.json_response({"object": "error", "message": message, "code": 404}, status=404)

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "gemma-3-270m", "max_model_len": 8192}]})

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    url = await start(aiohttp_server, app)
    sampler = OpenAISampler(url, "gemma", context_length=0)
    with pytest.raises(ConfigError, match=r"404: The model `gemma` does not exist.*it serves: gemma-3-270m"):
        await asyncio.to_thread(sampler.generate, "Once", opts(n=1))
    right = OpenAISampler(url, "gemma-3-270m")
    assert await asyncio.to_thread(lambda: right.context_length) == 8192  # vLLM's max_model_len


async def test_a_rejected_setting_is_invalid_input(aiohttp_server: Server) -> None:
    async def completions(request: web.Request) -> web.Response:
        return web.json_response({"detail": "logprobs must be at most 5"}, status=422)

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    sampler = OpenAISampler(await start(aiohttp_server, app), "m", context_length=512)
    with pytest.raises(InvalidInput, match="said 422: logprobs must be at most 5; change the sampling"):
        await asyncio.to_thread(sampler.generate, "Once", opts(n=1, top_logprobs=10))
