"""Adapters for tests: peft's own LoRA on a real model folder, saved as ``ambient tune`` saves one."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ambient import adapters
from ambient.sampling.local.loading import load_plain
from ambient.tuning.trainer import quiet_peft

TARGETS = ("q_proj", "v_proj", "o_proj", "down_proj")


def lora_model(
    model_path: Path, *, rank: int = 4, seed: int = 0, targets: Sequence[str] = TARGETS
) -> Any:
    """The plain model with peft's LoRA, both halves random (so that the adapter changes the logits)."""
    from peft import LoraConfig, get_peft_model

    _, model = load_plain(model_path)
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets), init_lora_weights=False)
    with quiet_peft():
        peft_model = get_peft_model(model, config)
    with torch.no_grad():  # peft's random B is large for a real model: keep the change visible, not wild
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.05)
    return peft_model


def save_adapter(peft_model: Any, model_path: Path, folder: Path, **manifest: Any) -> Path:
    """``peft_model``'s adapter in ``folder``, with a manifest naming ``model_path`` as its base."""
    peft_model.save_pretrained(str(folder))
    fields = {
        "format": adapters.FORMAT,
        "name": folder.name,
        "created_at": time.time(),
        "base_model": {"name": model_path.name, "fingerprint": adapters.model_fingerprint(model_path)},
        **manifest,
    }
    adapters.write_manifest(folder, fields)
    return folder


def random_adapter(model_path: Path, folder: Path, *, rank: int = 4, seed: int = 0) -> Path:
    return save_adapter(lora_model(model_path, rank=rank, seed=seed), model_path, folder)
