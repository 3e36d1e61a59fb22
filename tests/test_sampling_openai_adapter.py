"""A personal adapter through the openai backend: a share of each offer's branches asks the server by name.

vLLM serves a LoRA adapter loaded with ``--enable-lora --lora-modules NAME=FOLDER`` as a model of its own,
listed in ``/v1/models``, and a request with ``model = NAME`` is written with it. There is no vLLM on
this CPU machine, so the real tests below use llama-cpp-python's server with a ``--config_file`` that
serves two GGUF models by name: the bundled Gemma as ``gemma-3-270m`` (the base model) and SmolLM2
(another model, another tokenizer) as ``personal-smol``, standing in for the adapter. What they prove for
real: the check against a real ``/v1/models``, that a real server routes each branch by its model name
(each personal branch starts as SmolLM2 alone writes greedily, each base branch as Gemma alone does), the
labels, the refusal when the name is not served (llama-cpp-python would otherwise quietly answer an
unknown name with its default model), the document's switch, the CLI, with llama-cpp-python's own
quirks (it ignores ``n``, ends a running stream when another request arrives, and swaps the one model
it holds in memory per request). What they cannot prove: that vLLM applies a LoRA adapter ambient
trained (its adapter_config.json and adapter_model.safetensors) to the base model: see docs/clients.md.

The fast tests (a small aiohttp server) pin the request bodies: which model and seed each branch was
asked with, a server that honours ``n``, one that answers a missing ``/v1/models``, one that is down at
start, and an adapter that stops being served after the check.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ambient import adapters
from ambient.cli import main
from ambient.config import adapter_backend_problem, load_config
from ambient.daemon import _adapter_status_of
from ambient.errors import ConfigError
from ambient.sampling.base import SamplingOptions
from ambient.sampling.openai import OpenAISampler, personal_rows
from tests.llama_server import MODEL_NAME, LlamaServer, smollm2_gguf, start_models_server

Server = Callable[[web.Application], Awaitable[TestServer]]
PROMPT = "The lighthouse keeper climbed the stairs every evening. One night, he saw"
ADAPTER = "personal-smol"


# ------------------------------------------------------------------ fast: a small server that says who wrote


class Labeller:
    """Serves ``models``; each choice's text says the model, seed and choice index it was asked with."""

    def __init__(self, models: list[str] | None, honours_n: bool = True) -> None:
        self.models = models  # None: no /v1/models (404)
        self.honours_n = honours_n
        self.down = False  # /v1/models answers 503 while down
        self.gone: set[str] = set()  # models that answer 404 (unloaded after the check)
        self.bodies: list[dict[str, Any]] = []

    async def list_models(self, request: web.Request) -> web.Response:
        if self.down:
            return web.json_response({"error": {"message": "starting"}}, status=503)
        if self.models is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        return web.json_response({"object": "list", "data": [{"id": m} for m in self.models]})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        model = body["model"]
        if model in self.gone:
            return web.json_response({"message": f"The model `{model}` does not exist."}, status=404)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for c in range(body["n"] if self.honours_n else 1):
            choice = {"index": c, "text": f" {model}:{body['seed']}:{c}", "finish_reason": "length"}
            await resp.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_post("/v1/completions", self.completions)
        return app


async def start(aiohttp_server: Server, fake: Labeller) -> str:
    server = await aiohttp_server(fake.app())
    return f"http://127.0.0.1:{server.port}"


def opts(**kw: Any) -> SamplingOptions:
    return SamplingOptions(**{"n": 4, "max_tokens": 4, "seed": 7, "top_logprobs": 0, **kw})


def wrote(text: str) -> tuple[str, int]:
    """(model, seed) a Labeller branch was asked with."""
    model, seed, _ = text.strip().split(":")
    return model, int(seed)


def test_the_share_is_spread_as_the_local_sampler_spreads_it() -> None:
    assert personal_rows(4, 0.5) == [False, True, False, True]
    assert personal_rows(5, 0.4) == [False, False, True, False, True]
    assert personal_rows(3, 1.0) == [True] * 3 and personal_rows(3, 0.0) == [False] * 3


async def test_a_served_adapter_writes_its_share_by_name(aiohttp_server: Server) -> None:
    """A server that honours n: one request per model, n = its share, seed = seed + its first branch."""
    fake = Labeller(["base", "mine"])
    sampler = OpenAISampler(await start(aiohttp_server, fake), "base", adapter="mine", context_length=512)
    result = await asyncio.to_thread(sampler.generate, "Once", opts())
    assert [c.text for c in result.continuations] == [" base:7:0", " mine:8:0", " base:7:1", " mine:8:1"]
    assert [c.meta["adapter"] for c in result.continuations] == ["none", "mine", "none", "mine"]
    assert result.meta["adapter"] == {"name": "mine", "branches": [1, 3]}
    assert sorted((b["model"], b["n"], b["seed"]) for b in fake.bodies) == [("base", 2, 7), ("mine", 2, 8)]
    assert (result.meta["requests"], result.meta["server_n"], result.model) == (2, 2, "base")
    assert _adapter_status_of(sampler) == {"name": "mine", "share": 0.5, "problem": None}


async def test_fanned_out_branches_keep_their_positions_and_seeds(aiohttp_server: Server) -> None:
    """A server that ignores n: each branch i is its own request, with its model and seed + i."""
    fake = Labeller(["base", "mine"], honours_n=False)
    url = await start(aiohttp_server, fake)
    sampler = OpenAISampler(url, "base", adapter="mine", adapter_share=0.4, context_length=512)
    for _ in range(2):  # the first call finds out that n is ignored; the second fans out at once
        fake.bodies.clear()
        result = await asyncio.to_thread(sampler.generate, "Once", opts(n=5))
        expected = [("base", 7), ("base", 8), ("mine", 9), ("base", 10), ("mine", 11)]
        assert [wrote(c.text) for c in result.continuations] == expected
        assert [c.meta["adapter"] for c in result.continuations] == ["none", "none", "mine", "none", "mine"]
        assert result.meta["adapter"] == {"name": "mine", "branches": [2, 4]}
    assert {(b["model"], b["n"], b["seed"]) for b in fake.bodies} == {(m, 1, s) for m, s in expected}


async def test_the_documents_switch_keeps_the_adapter_out(aiohttp_server: Server) -> None:
    fake = Labeller(["base", "mine"])
    sampler = OpenAISampler(await start(aiohttp_server, fake), "base", adapter="mine", context_length=512)
    result = await asyncio.to_thread(sampler.generate, "Once", opts(personal=False))
    assert [wrote(c.text)[0] for c in result.continuations] == ["base"] * 4
    assert [c.meta["adapter"] for c in result.continuations] == ["none"] * 4
    assert result.meta["adapter"] == {"name": "mine", "branches": []}
    assert [(b["model"], b["n"]) for b in fake.bodies] == [("base", 4)]


async def test_a_name_the_server_does_not_serve_is_refused_once(
    aiohttp_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    fake = Labeller(["base", "other"])
    url = await start(aiohttp_server, fake)
    with caplog.at_level(logging.WARNING, "ambient.sampling.openai"):
        sampler = OpenAISampler(url, "base", adapter="mine", context_length=512)
        first = await asyncio.to_thread(sampler.generate, "Once", opts())
        second = await asyncio.to_thread(sampler.generate, "Once", opts())
    problem = sampler.adapter_problem
    assert problem is not None and "\n" not in problem
    assert problem == (
        f"the completions server at {url} does not serve the adapter 'mine' (it serves base, other): load it "
        'there (vLLM: --enable-lora --lora-modules mine=FOLDER) or set model.adapter = "none" (sampling '
        "with the base model only)"
    )
    assert sampler.adapter is None and [r.message for r in caplog.records] == [problem]
    for result in (first, second):
        assert [wrote(c.text)[0] for c in result.continuations] == ["base"] * 4
        assert "adapter" not in result.meta and all("adapter" not in c.meta for c in result.continuations)
    assert _adapter_status_of(sampler) == {"name": None, "share": 0.0, "problem": problem}


async def test_a_server_without_a_model_list_cannot_serve_an_adapter(aiohttp_server: Server) -> None:
    sampler = OpenAISampler(await start(aiohttp_server, Labeller(None)), "base", adapter="mine")
    assert await asyncio.to_thread(sampler.check_adapter) is None
    said = "does not serve the adapter 'mine' (it lists no models at /v1/models)"
    assert said in str(sampler.adapter_problem)


async def test_the_server_is_asked_at_start_and_again_while_it_is_down(aiohttp_server: Server) -> None:
    fake = Labeller(["base", "mine"])
    url = await start(aiohttp_server, fake)
    sampler = OpenAISampler(url, "base", adapter="mine", context_length=512)
    deadline = time.monotonic() + 10
    while sampler.adapter is None and time.monotonic() < deadline:  # no offer needed: asked on a thread
        await asyncio.sleep(0.02)
    assert sampler.adapter is not None and sampler.adapter.name == "mine"
    fake.down = True
    later = OpenAISampler(url, "base", adapter="mine", context_length=512, backoff=0.01)
    assert await asyncio.to_thread(later.check_adapter) is None  # 503: not known yet, not refused
    assert later.adapter_problem is None
    fake.down = False
    served = await asyncio.to_thread(later.check_adapter)
    assert served is not None and served.name == "mine" and later.adapter_problem is None


async def test_an_adapter_unloaded_after_the_check_leaves_its_branches_errors(aiohttp_server: Server) -> None:
    fake = Labeller(["base", "mine"])
    sampler = OpenAISampler(await start(aiohttp_server, fake), "base", adapter="mine", context_length=512)
    await asyncio.to_thread(sampler.check_adapter)
    fake.gone.add("mine")
    result = await asyncio.to_thread(sampler.generate, "Once", opts())
    assert [c.finish_reason for c in result.continuations] == ["length", "error", "length", "error"]
    assert [c.text for c in result.continuations] == [" base:7:0", "", " base:7:1", ""]
    assert "does not exist.; set model.adapter to a model it serves" in result.meta["errors"][0]


async def test_personal_with_an_active_adapter_is_refused(aiohttp_server: Server, tmp_path: Path) -> None:
    """ambient's adapter files cannot reach a server: the message says how to serve the adapter there."""
    home = tmp_path / "home"
    fake = Labeller(["base"])
    url = await start(aiohttp_server, fake)
    config = load_config(env={"AMBIENT_HOME": str(home)}).replace(
        model__backend="openai", model__base_url=url, model__name="base", model__context_length=512
    )
    assert config.model.adapter == "personal"
    sampler = OpenAISampler.from_config(config, env={})
    assert sampler.adapter is None and sampler.adapter_problem is None  # no adapter tuned yet
    adapters.write(home, "personal-001", lambda tmp: {"active": True})
    result = await asyncio.to_thread(sampler.generate, "Once", opts(n=2))
    folder = adapters.folder(home) / "personal-001"
    assert sampler.adapter_problem == (
        f'model.adapter = "personal" names your adapter personal-001, but the completions server at {url} '
        f"cannot read ambient's adapter files: copy its folder {folder} to the server, load it there by name "
        '(vLLM: --enable-lora --lora-modules personal-001=FOLDER) and set model.adapter = "personal-001", '
        'or set model.adapter = "none" (sampling with the base model only)'
    )
    assert [wrote(c.text)[0] for c in result.continuations] == ["base", "base"]
    assert "adapter" not in result.meta and sampler.adapter is None
    none = OpenAISampler.from_config(config.replace(model__adapter="none"), env={})
    assert none.check_adapter() is None and none.adapter_problem is None


def test_config_takes_a_name_and_refuses_a_folder(tmp_path: Path) -> None:
    env = {"AMBIENT_HOME": str(tmp_path), "AMBIENT_MODEL_BACKEND": "openai"}
    assert load_config(env={**env, "AMBIENT_MODEL_ADAPTER": "my-lora"}).model.adapter == "my-lora"
    with pytest.raises(ConfigError, match=r"model.adapter = '/srv/lora' is a folder, but model.backend is "
                       r"'openai'.*--lora-modules NAME=/srv/lora\) and set model.adapter = NAME, or set"):
        load_config(env={**env, "AMBIENT_MODEL_ADAPTER": "/srv/lora"})
    (tmp_path / "adapters" / "x").mkdir(parents=True)
    assert adapter_backend_problem(str(tmp_path / "adapters" / "x"), "openai") is not None
    assert adapter_backend_problem("~/lora", "openai") is not None
    assert adapter_backend_problem("org/lora", "openai") is None  # no such folder: a server's name
    assert "needs the local model" in str(adapter_backend_problem("x", "elsewhere"))
    assert adapter_backend_problem("personal", "openai") is None  # the default: the sampler says more
    cli = str(adapter_backend_problem("personal", "openai", "--adapter"))  # asked for on the command line
    assert cli.startswith("--adapter personal needs the local model, but the backend is 'openai'")
    assert cli.endswith("--lora-modules NAME=FOLDER) and pass --adapter NAME, or drop --adapter")
    with pytest.raises(ConfigError, match="is a folder"):
        OpenAISampler("http://127.0.0.1:9", "base", adapter="./lora")


# ------------------------------------------------------------------ real: llama-cpp-python serving two models


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """Gemma as the base model and SmolLM2 under the adapter's name, from one real server."""
    from ambient.models import default_gguf_path
    from tests.conftest import models_cache_dir

    models = {MODEL_NAME: default_gguf_path(models_cache_dir()), ADAPTER: smollm2_gguf()}
    yield from start_models_server(models, tmp_path_factory.mktemp("two-models"))


def greedy(server: LlamaServer, model: str, max_tokens: int = 8) -> str:
    """What ``model`` alone writes greedily (temperature 0: every branch the same)."""
    alone = OpenAISampler(server.url, model, api_key=server.api_key, timeout=120)
    return alone.generate(PROMPT, real_opts(n=1, max_tokens=max_tokens)).continuations[0].text


def personal_sampler(server: LlamaServer) -> OpenAISampler:
    return OpenAISampler(server.url, MODEL_NAME, api_key=server.api_key, adapter=ADAPTER, timeout=120)


def real_opts(**kw: Any) -> SamplingOptions:
    base = {"n": 4, "max_tokens": 8, "seed": 5, "temperature": 0.0, "top_logprobs": 0}
    return SamplingOptions(**{**base, **kw})


def head(text: str) -> str:
    """A greedy continuation's first words. Only these are compared: llama.cpp's numbers differ slightly
    with how much of a prompt it reuses from the request before, and a later near-tie can go either way."""
    return " ".join(text.split()[:3])


@pytest.fixture(scope="module")
def references(two_models: LlamaServer) -> dict[str, str]:
    """The first words each model writes alone (Gemma: "a man in", SmolLM2: "a ghostly figure")."""
    found = {m: head(greedy(two_models, m)) for m in (MODEL_NAME, ADAPTER)}
    assert found[MODEL_NAME] != found[ADAPTER] and all(found.values())  # two models, visibly
    return found


@pytest.mark.timeout(600)
def test_personal_branches_are_written_by_the_model_served_under_that_name(
    two_models: LlamaServer, references: dict[str, str]
) -> None:
    sampler = personal_sampler(two_models)
    assert sampler.check_adapter() is not None
    assert _adapter_status_of(sampler) == {"name": ADAPTER, "share": 0.5, "problem": None}
    # first offer: both models at once, the server cuts streams and swaps models; the cut ones are resumed
    first = sampler.generate(PROMPT, real_opts())
    labels = ["none", ADAPTER, "none", ADAPTER]
    assert [c.meta["adapter"] for c in first.continuations] == labels
    assert first.meta["adapter"] == {"name": ADAPTER, "branches": [1, 3]}
    assert first.meta["requests"] == 4 + first.meta["resumed"] and first.meta["server_n"] == 1
    assert [c.finish_reason for c in first.continuations] == ["length"] * 4
    assert all(c.text for c in first.continuations)
    # once known, one request at a time: each branch begins as its model alone writes
    again = sampler.generate(PROMPT, real_opts())
    assert (again.meta["requests"], again.meta["resumed"]) == (4, 0)
    assert [c.meta["adapter"] for c in again.continuations] == labels
    expected = [references[MODEL_NAME if label == "none" else ADAPTER] for label in labels]
    assert [head(c.text) for c in again.continuations] == expected


def test_a_name_the_real_server_does_not_serve_is_refused(
    two_models: LlamaServer, references: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """llama-cpp-python answers a name it does not serve with its default model: only the check tells."""
    with caplog.at_level(logging.WARNING, "ambient.sampling.openai"):
        sampler = OpenAISampler(
            two_models.url, MODEL_NAME, api_key=two_models.api_key, adapter="not-loaded", timeout=120
        )
        results = [sampler.generate(PROMPT, real_opts(n=2)) for _ in range(2)]
    problem = sampler.adapter_problem
    assert problem is not None and "\n" not in problem and sampler.adapter is None
    assert f"the completions server at {two_models.url} does not serve the adapter 'not-loaded' " in problem
    assert f"(it serves {MODEL_NAME}, {ADAPTER})" in problem and "--lora-modules not-loaded=FOLDER" in problem
    assert [r.message for r in caplog.records] == [problem]  # warned once
    for result in results:
        assert [head(c.text) for c in result.continuations] == [references[MODEL_NAME]] * 2
        assert "adapter" not in result.meta


def test_the_switch_off_means_the_base_model_writes_every_branch(
    two_models: LlamaServer, references: dict[str, str]
) -> None:
    sampler = personal_sampler(two_models)
    result = sampler.generate(PROMPT, real_opts(n=3, personal=False))
    assert [head(c.text) for c in result.continuations] == [references[MODEL_NAME]] * 3
    assert [c.meta["adapter"] for c in result.continuations] == ["none"] * 3
    assert result.meta["adapter"] == {"name": ADAPTER, "branches": []}


def test_cli_continue_with_an_adapter_the_server_serves(
    two_models: LlamaServer, references: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AMBIENT_MEMORY_ENABLED", "false")
    monkeypatch.setenv("AMBIENT_MODEL_API_KEY", two_models.api_key)
    monkeypatch.setenv("AMBIENT_SAMPLING_TOP_LOGPROBS", "0")
    note = tmp_path / "note.md"
    note.write_text(PROMPT)
    argv = ["continue", str(note), "-n", "2", "--max-tokens", "8", "--temperature", "0", "--json",
            "--backend", "openai", "--base-url", two_models.url, "--model", MODEL_NAME]
    assert main([*argv, "--adapter", ADAPTER]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["adapter"] for c in out["continuations"]] == ["none", ADAPTER]
    assert [head(c["text"]) for c in out["continuations"]] == [references[MODEL_NAME], references[ADAPTER]]
    assert main([*argv, "--adapter", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--adapter {tmp_path} is a folder, but the backend is 'openai'" in err
    assert f"--lora-modules NAME={tmp_path}) and pass --adapter NAME, or drop --adapter" in err
