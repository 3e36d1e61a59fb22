"""/v1 in-process (aiohttp's test client) with the event loop watched (strict loop): the guard for other
apps, retrieval only for a key that turns it on, errors in OpenAI's shape, streaming, a client that
leaves mid-stream. The official SDK and the real model are in test_sdk.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from ambient import places
from ambient.app import App
from ambient.daemon import Daemon
from ambient.errors import ModelUnavailable
from ambient.keys import KeyStore
from ambient.openapi import build_openapi
from ambient.sampling.base import OnToken, SampleResult, SamplingOptions
from ambient.server import routes
from tests.events import next_event
from tests.fakes import FakeSampler
from tests.test_server import FakeMemory, make_config
from tests.web_app import bearer, web_app

pytestmark = pytest.mark.strict_loop

OBSIDIAN = "app://obsidian.md"
BODY = {"model": "davinci", "prompt": "The river runs", "max_tokens": 3, "n": 2}


class Unavailable(FakeSampler):
    def generate(
        self,
        prompt: str,
        options: SamplingOptions,
        on_token: OnToken | None = None,
        cancel: threading.Event | None = None,
    ) -> SampleResult:
        raise ModelUnavailable("the model went away: restart ambient")


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    config = make_config(tmp_path, server__client_origins=(OBSIDIAN,), server__max_body_bytes=100_000)
    app = App(config, sampler=FakeSampler(delay=0.01))
    app.__dict__["memory"] = FakeMemory()
    async with Daemon(config, app) as d:
        yield d
    app.close()


@pytest.fixture
def served(daemon: Daemon) -> web.Application:
    return web_app(daemon)


@pytest.fixture
async def keys(daemon: Daemon) -> dict[str, str]:
    store = KeyStore(daemon.config.home)
    _, loom = await asyncio.to_thread(store.add, "loom")
    _, remembering = await asyncio.to_thread(store.add, "remembering", scope="remembering", retrieve=True)
    return {"loom": loom, "remembering": remembering}


@pytest.fixture
async def client(served: web.Application, aiohttp_client: Any) -> TestClient[Any, Any]:
    c: TestClient[Any, Any] = await aiohttp_client(served)
    return c


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_a_completion_and_its_offer(
    client: TestClient[Any, Any], daemon: Daemon, keys: dict[str, str]
) -> None:
    resp = await client.post("/v1/completions", json=BODY, headers=auth(keys["loom"]))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert [c["text"] for c in body["choices"]] == [" b0w0 b0w1 b0w2", " b1w0 b1w1 b1w2"]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    status = daemon.sources.status()["completions"]
    assert status["state"] == "running" and status["detail"] == {"requests": 1, "offers": 1}


async def test_a_list_of_prompts_is_one_offer_each(
    client: TestClient[Any, Any], daemon: Daemon, keys: dict[str, str]
) -> None:
    body = {**BODY, "prompt": ["First story", "Second story"], "user": "ada", "stream": True}
    streamed = await client.post("/v1/completions", json=body, headers=auth(keys["loom"]))
    texts = ["", "", "", ""]
    for line in (await streamed.read()).decode().split("\n\n"):
        if line.startswith("data: {"):
            for c in json.loads(line[6:])["choices"]:
                texts[c["index"]] += c["text"]
    resp = await client.post("/v1/completions", json={**body, "stream": False}, headers=auth(keys["loom"]))
    choices = (await resp.json())["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2, 3]  # prompt index x n + branch
    assert [c["text"] for c in choices] == texts
    trees = await asyncio.to_thread(daemon.app.store.list_trees, "key:loom")
    assert sorted(t.title for t in trees) == ["First story", "Second story"]
    for tree in trees:
        offers = await asyncio.to_thread(daemon.app.store.tree_offers, tree.id)
        assert len(offers) == 2 and offers[0].parent_id == offers[1].parent_id == tree.root_id
        node = await asyncio.to_thread(daemon.app.store.get_node, offers[0].node_ids[0])
        assert node.provenance is not None and node.provenance["source"]["user"] == "ada"


async def test_retrieval_only_for_a_key_that_turns_it_on(
    client: TestClient[Any, Any], daemon: Daemon, keys: dict[str, str]
) -> None:
    store = daemon.app.store
    for name, expected in (("loom", "off"), ("remembering", "on")):
        resp = await client.post(
            "/v1/completions", json={**BODY, "prompt": f"A tale of {name}"}, headers=auth(keys[name])
        )
        assert resp.status == 200, await resp.text()
        (tree,) = await asyncio.to_thread(store.list_trees, f"key:{name}")
        (offer,) = await asyncio.to_thread(store.tree_offers, tree.id)
        node = await asyncio.to_thread(store.get_node, offer.node_ids[0])
        assert node.provenance is not None and node.provenance["memory"] == expected
        assert tree.scope == ("key:loom" if name == "loom" else "remembering")
        assert node.provenance["walls"]["scope"] == tree.scope


async def test_the_guard_of_v1(
    client: TestClient[Any, Any], served: web.Application, keys: dict[str, str]
) -> None:
    ui = bearer(served)
    assert (await client.get("/v1/models", headers=ui)).status == 401  # the UI's token is not a key
    assert (await client.get("/api/status", headers=auth(keys["loom"]))).status == 401  # nor a key the UI's
    assert (await client.get("/v1/models")).status == 401
    resp = await client.get("/v1/models", headers={**auth(keys["loom"]), "Host": "attacker.example:80"})
    assert resp.status == 403 and (await resp.json())["error"]["type"] == "invalid_request_error"
    preflight = {"Origin": OBSIDIAN, "Access-Control-Request-Method": "POST"}
    resp = await client.options("/v1/anything", headers=preflight)
    assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == OBSIDIAN
    resp = await client.options("/v1/completions", headers={**preflight, "Origin": "http://localhost:3000"})
    assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    resp = await client.options("/api/trees", headers=preflight)
    assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    resp = await client.get("/v1/models", headers={**auth(keys["loom"]), "Origin": OBSIDIAN})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == OBSIDIAN


async def test_bad_bodies_and_unavailable_models_answer_in_openai_s_shape(
    client: TestClient[Any, Any], daemon: Daemon, keys: dict[str, str]
) -> None:
    key = auth(keys["loom"])
    for data, param in (
        (b"{not json", None),
        (b"[" * 50_000, None),
        (b'{"model": "m", "prompt": "x", "n": NaN}', None),
        (b'{"model": "m", "prompt": "x", "echo": true, "logprobs": 1}', "echo"),  # the fake cannot score
        (b'{"model": "m", "prompt": "x", "stop": [""]}', "stop"),
    ):
        resp = await client.post(
            "/v1/completions", data=data, headers={**key, "Content-Type": "application/json"}
        )
        assert resp.status == 400, data[:40]
        error = (await resp.json())["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    resp = await client.post("/v1/completions", data=b"x" * 200_000, headers=key)
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "request_too_large"
    resp = await client.get("/v1/completions", headers=key)
    assert resp.status == 405 and "error" in await resp.json()
    daemon.app._sampler = Unavailable()
    resp = await client.post("/v1/completions", json=BODY, headers=key)
    error = (await resp.json())["error"]
    assert resp.status == 503 and error["type"] == "server_error" and error["code"] == "model_unavailable"
    assert "restart ambient" in error["message"]


async def test_a_stream_follows_the_offer_and_a_client_that_leaves_loses_nothing(
    client: TestClient[Any, Any], daemon: Daemon, keys: dict[str, str]
) -> None:
    key = auth(keys["loom"])
    resp = await client.post("/v1/completions", json={**BODY, "stream": True, "max_tokens": 4}, headers=key)
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    raw = (await resp.read()).decode()
    assert raw.endswith("data: [DONE]\n\n")
    events = [line[6:] for line in raw.split("\n\n") if line.startswith("data: {")]
    texts = ["", ""]
    for e in events:
        for c in json.loads(e)["choices"]:
            texts[c["index"]] += c["text"]
    assert texts == [" b0w0 b0w1 b0w2 b0w3", " b1w0 b1w1 b1w2 b1w3"]

    sub = daemon.subscribe()
    resp = await client.post(
        "/v1/completions",
        json={**BODY, "prompt": "Left early", "stream": True, "max_tokens": 20},
        headers=key,
    )
    await resp.content.readline()  # the first event, then the client goes away
    resp.close()
    done = await next_event(sub, "offer_done", timeout=20)
    daemon.unsubscribe(sub)
    assert done["offer"]["state"] == "done"  # kept whole all the same
    assert [n["text"].count("w") for n in done["nodes"]] == [20, 20]


class Counted(FakeSampler):
    """A begin-of-text marker in every count, as real tokenizers add."""

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 1


async def test_a_prompt_is_answered_whole_or_refused_never_cut(
    client: TestClient[Any, Any], daemon: Daemon, keys: dict[str, str]
) -> None:
    sampler = Counted(context=40)
    daemon.app._sampler = sampler
    fits = " ".join(f"w{i}" for i in range(35))  # 36 tokens with its marker: 40 less max_tokens 3, less 1
    resp = await client.post("/v1/completions", json={**BODY, "prompt": fits}, headers=auth(keys["loom"]))
    assert resp.status == 200, await resp.text()
    assert sampler.prompts[-1] == fits
    resp = await client.post(
        "/v1/completions", json={**BODY, "prompt": fits + " w35"}, headers=auth(keys["loom"])
    )
    error = (await resp.json())["error"]
    assert resp.status == 400 and error["code"] == "context_length_exceeded" and error["param"] == "prompt"
    assert sampler.prompts[-1] == fits  # nothing was sampled for it


def test_v1_is_in_the_openapi_document_with_its_own_key_and_errors() -> None:
    doc = build_openapi(routes(places.installed()))
    op = doc["paths"]["/v1/completions"]["post"]
    assert op["security"] == [{"clientKey": []}]
    assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OpenAIError"
    }
    assert "text/event-stream" in op["responses"]["200"]["content"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CompletionRequest"
    }
    assert doc["paths"]["/v1/models"]["get"]["security"] == [{"clientKey": []}]
