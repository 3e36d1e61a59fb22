"""Loading the local sampler's model: which device, the transformers load, the end-of-text ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ambient.errors import ModelUnavailable


def pick_device(device: str) -> torch.device:
    """The torch device for ``model.device`` ("auto": CUDA when a GPU is visible, else CPU)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailable(f"model.device = {device!r} but no CUDA GPU is visible: use 'auto' or 'cpu'")
    if device != "cpu" and not device.startswith("cuda"):
        raise ModelUnavailable(f"model.device = {device!r} is not known: use 'auto', 'cpu' or 'cuda'")
    return torch.device(device)


def load(path: Path, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """The tokenizer and the model (on ``device``, in eval mode) from a local transformers folder."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"cannot load the model in {path} ({exc}): check the folder, or use model.path = \"default\""
        ) from exc
    model.to(device)
    model.eval()
    return tokenizer, model


def eos_ids(tokenizer: Any, model: Any) -> frozenset[int]:
    """Every id that ends a text: the tokenizer's end-of-text id and the model's generation config's."""
    found: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, list | tuple):
            found.update(int(v) for v in value)
    return frozenset(found)
