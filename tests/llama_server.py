"""A real OpenAI-compatible completions server for tests: llama-cpp-python's, serving the bundled Gemma GGUF.

Started once per session on a free loopback port with an API key (so a wrong
key is a real 401). ``make test`` installs llama-cpp-python (see the Makefile);
where it is missing the tests that need it fail with that reason.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, stop, wait_serving

MODEL_NAME = "gemma-3-270m"
API_KEY = "test-key-not-secret"
N_CTX = 2048


@dataclasses.dataclass(frozen=True)
class LlamaServer:
    url: str
    model: str
    api_key: str
    n_ctx: int
    log: Path


def start_llama_server(gguf: Path, folder: Path) -> Iterator[LlamaServer]:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.fail("llama-cpp-python[server] is not installed: run `make setup-server` (make test does)")
    port = free_port()
    log = folder / "llama-server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL_NAME,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX), "--n_threads", "2",
        "--api_key", API_KEY,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
        url = f"http://127.0.0.1:{port}"
        try:
            auth = {"Authorization": f"Bearer {API_KEY}"}
            request = urllib.request.Request(url + "/v1/models", headers=auth)
            wait_serving(request, proc, "the llama.cpp server", timeout=120.0, log=log)
            yield LlamaServer(url, MODEL_NAME, API_KEY, N_CTX, log)
        finally:
            stop(proc)
