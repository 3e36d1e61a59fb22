"""Loading the local sampler's model: which device, the transformers load, the end-of-text ids."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ambient.errors import ModelUnavailable
from ambient.packing import fbgemm_ready, return_freed_memory, slim_for_cpu, widen_unpacked
from ambient.residency import release_file_pages

T = TypeVar("T")


def pick_device(device: str) -> torch.device:
    """The torch device for ``model.device`` ("auto": CUDA when a GPU is visible, else CPU)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailable(f"model.device = {device!r} but no CUDA GPU is visible: use 'auto' or 'cpu'")
    if device != "cpu" and not device.startswith("cuda"):
        raise ModelUnavailable(f"model.device = {device!r} is not known: use 'auto', 'cpu' or 'cuda'")
    return torch.device(device)


def load(path: Path, device: torch.device, dtype: torch.dtype, pack: bool = True) -> tuple[Any, Any, int]:
    """The tokenizer, the model (on ``device``, in eval mode) and how many layers were packed for the CPU.

    On CPU (unless ``pack`` is false) the weights are packed
    (:func:`ambient.packing.slim_for_cpu`) in a worker while this thread loads
    the tokenizer: packing runs without the GIL and the tokenizer holds it, so
    the two overlap on two cores.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    packs = device.type == "cpu" and pack and fbgemm_ready()
    stored = stored_half_dtype(path) if packs and dtype == torch.float32 else None
    model = _guarded(path, lambda: _model(path, stored or dtype))
    if stored is not None:
        _copy_out_of_file(model)
    model.to(device)
    model.eval()
    if not packs:
        return _guarded(path, lambda: _tokenizer(path)), model, 0
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ambient-pack") as pool:
        packing = pool.submit(_slim, model, stored)
        tokenizer = _guarded(path, lambda: _tokenizer(path))
        # parsing tokenizer.json leaves ~290 MB of freed heap behind: gone now, not after packing
        return_freed_memory(collect=False)
        packed = packing.result()
    return_freed_memory(collect=False)
    return tokenizer, model, packed


def stored_half_dtype(path: Path) -> torch.dtype | None:
    """The checkpoint's own 16-bit dtype (``config.json``), or None if it is stored otherwise or unknown.

    A 16-bit checkpoint is loaded as it is stored and packed from there, so the
    float32 copy of its weights (twice their size) is never made: the results
    are the same, since float32 holds every 16-bit value exactly.
    """
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = config.get("dtype") or config.get("torch_dtype") if isinstance(config, dict) else None
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(str(name))


def _copy_out_of_file(model: Any) -> None:
    """Give every weight but the input embeddings its own memory instead of a view of the mapped checkpoint.

    Weights loaded as stored are views of one mapping of the file, and every
    page of it that was read stays resident while any view lasts: packing would
    then hold the whole file beside the packs (measured: a peak of 2.07 GB
    instead of 1.63 GB). The input embeddings stay a view, read row by row
    (:class:`ambient.packing.CompactEmbedding`), so the pages the copies read
    are handed back here.
    """
    keep = getattr(model.get_input_embeddings(), "weight", None)
    for param in model.parameters():
        if param is not keep:
            param.data = param.data.clone()
    if keep is not None:
        release_file_pages(keep)


def _slim(model: Any, stored: torch.dtype | None) -> int:
    """Pack the model for the CPU; what stays unpacked is computed in float32, whatever it was stored in."""
    packed = slim_for_cpu(model)
    if stored is not None:
        widen_unpacked(model, stored)
    return packed


def load_plain(path: Path) -> tuple[Any, Any]:
    """The tokenizer and the model as transformers loads it (float32, CPU, eval mode, nothing packed).

    For training (``ambient tune`` puts LoRA layers on it) and for checks against the sampler.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = _guarded(path, lambda: _model(path, torch.float32))
    model.eval()
    return _guarded(path, lambda: _tokenizer(path)), model


def _model(path: Path, dtype: torch.dtype) -> Any:
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)


def _tokenizer(path: Path) -> Any:
    """The model's tokenizer: straight from ``tokenizer.json`` where that is all there is to it.

    ``AutoTokenizer`` reads Gemma's 33 MB ``tokenizer.json`` twice (once in
    Python) and takes about 2.7 s; the tokenizers library alone takes about
    1.3 s and encodes the same (tests/test_tokenizer_loading.py). Other
    tokenizer classes may add behaviour of their own, so they go through
    ``AutoTokenizer``.
    """
    direct = _direct_tokenizer_settings(path)
    if direct is None:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    return TokenizersBackend(tokenizer_file=str(path / "tokenizer.json"), **direct)


# Tokenizer classes that add nothing to their tokenizer.json (checked per class against AutoTokenizer).
PLAIN_TOKENIZER_CLASSES = frozenset({"GemmaTokenizer", "GemmaTokenizerFast", "PreTrainedTokenizerFast"})
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token", "mask_token")
# tokenizer_config.json keys that change nothing when the tokenizer is built from tokenizer.json.
NEUTRAL_KEYS = frozenset({"backend", "is_local", "local_files_only", "tokenizer_class", "model_max_length"})


def _direct_tokenizer_settings(path: Path) -> dict[str, Any] | None:
    """The settings to build the tokenizer from ``tokenizer.json`` directly, or None to use AutoTokenizer."""
    try:
        config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (path / "tokenizer.json").is_file() or not isinstance(config, dict):
        return None
    if config.get("tokenizer_class") not in PLAIN_TOKENIZER_CLASSES:
        return None
    if set(config) - NEUTRAL_KEYS - set(SPECIAL_TOKEN_KEYS):
        return None  # e.g. add_bos_token or a chat template: let AutoTokenizer apply it
    settings = {k: config[k] for k in SPECIAL_TOKEN_KEYS if k in config}
    if not all(isinstance(v, str) for v in settings.values()):
        return None
    if isinstance(config.get("model_max_length"), int):
        settings["model_max_length"] = config["model_max_length"]
    return settings


def _guarded(path: Path, load_one: Callable[[], T]) -> T:
    """``load_one()``, its errors turned into one that says what to do."""
    try:
        return load_one()
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"cannot load the model in {path} ({exc}): check the folder, or use model.path = \"default\""
        ) from exc


def eos_ids(tokenizer: Any, model: Any) -> frozenset[int]:
    """Every id that ends a text: the tokenizer's end-of-text id and the model's generation config's."""
    found: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, list | tuple):
            found.update(int(v) for v in value)
    return frozenset(found)
