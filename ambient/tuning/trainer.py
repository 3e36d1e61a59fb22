"""Training a LoRA adapter on a person's choices with a preference objective (DPO), on the CPU.

The model is the plain float32 transformers model (not the sampler's packed one) with peft's LoRA
layers on its linear layers. Per choice (one offer's chosen continuation against the ones it
beat), one optimiser step on the DPO loss::

    loss = mean over rejected r of  -log sigmoid(beta * ((pi(c) - ref(c)) - (pi(r) - ref(r))))

where ``pi`` and ``ref`` are the tuned and the base model's log-likelihoods of a continuation
(``objective = "dpo"``: summed over its tokens; ``"dpo-mean"``: per token, which does not
favour short continuations). ``"rpo"`` adds to the DPO loss the chosen continuation's negative
log-likelihood per token, weighted by ``nll_weight`` (as trl's ``rpo_alpha``, after Pang et al.
2024, "Iterative Reasoning Preference Optimization"): DPO alone can raise the margin by making
both continuations less likely, which on a small model ends in fragments; the likelihood term
keeps the chosen text likely, so the adapter learns to write it, not only to prefer it.
Each choice's prompt is read once by the base model
(an adapter only changes how continuations are written); the reference log-likelihoods are
computed from it once, with the adapter off, before the step's policy pass. One pass over the
choices (one epoch), in a fixed shuffled order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ambient.errors import InvalidInput
from ambient.tuning.data import Choice
from ambient.tuning.scoring import (
    Encoded,
    Scores,
    continuation_logprobs,
    encode,
    pair_accuracy,
    read_prompt,
    score,
)

OBJECTIVES = ("dpo", "dpo-mean", "rpo")
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# (step, total, what) as training goes: "reference", "training", "evaluation"
Progress = Callable[[int, int, str], None]


class Interrupted(Exception):
    """Training was stopped before it finished (nothing was written)."""


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How an adapter is trained (recorded in its manifest)."""

    rank: int = 8
    alpha: int = 16
    learning_rate: float = 1e-3
    beta: float = 0.1
    objective: str = "dpo"
    nll_weight: float = 1.0  # "rpo": the weight of the chosen continuation's likelihood term
    context_tokens: int = 256  # the prompt's last tokens read with each continuation
    epochs: int = 1  # passes over the choices
    min_steps: int = 16  # more passes while there are fewer optimiser steps (one per choice) than this
    targets: tuple[str, ...] = TARGETS
    layers: tuple[int, ...] = ()  # only these decoder layers (none: all)
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["targets"] = list(self.targets)
        d["layers"] = list(self.layers)
        return d


@dataclasses.dataclass
class Trained:
    """A trained adapter (a peft model, to be saved) and what it measured."""

    model: Any  # the peft model
    metrics: dict[str, Any]


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """peft 0.21.2 reads a property transformers 5.24 deprecated (a FutureWarning, harmless): not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _note(progress: Progress | None, step: int, total: int, what: str) -> None:
    if progress is not None:
        progress(step, total, what)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Interrupted("tuning was interrupted")


def encode_all(tokenizer: Any, choices: Sequence[Choice], context_tokens: int) -> list[Encoded]:
    """The choices as ids, those with nothing to compare left out."""
    out = [encode(tokenizer, c, context_tokens) for c in choices]
    return [e for e in out if e is not None]


def passes(settings: TrainSettings, choices: int) -> int:
    """Passes over ``choices`` choices: ``epochs``, or more to make at least ``min_steps`` steps."""
    return max(1, settings.epochs, -(-settings.min_steps // max(1, choices)))


def dpo_loss(
    policy: Scores, reference: Scores, beta: float, objective: str, nll_weight: float = 1.0
) -> torch.Tensor:
    """The loss of one choice (chosen first): DPO averaged over the continuations it beat (plus, for
    ``"rpo"``, ``nll_weight`` times the chosen continuation's negative log-likelihood per token)."""
    if objective == "dpo-mean":
        pi, ref = policy.means, reference.means
    else:
        pi, ref = policy.sums, reference.sums
    margin = (pi - ref.to(pi.dtype)) * beta
    loss = -torch.nn.functional.logsigmoid(margin[0] - margin[1:]).mean()
    if objective == "rpo":
        loss = loss - nll_weight * policy.means[0]
    return loss


def train(
    tokenizer: Any,
    model: Any,
    train_choices: Sequence[Choice],
    held_out: Sequence[Choice],
    settings: TrainSettings,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Trained:
    """Train a LoRA adapter on ``model`` (float32, CPU; changed in place) and evaluate it on ``held_out``.

    Raises :class:`Interrupted` as soon as ``cancel`` is set.
    """
    from peft import LoraConfig, get_peft_model

    if settings.objective not in OBJECTIVES:
        allowed = ", ".join(OBJECTIVES)
        raise InvalidInput(f"tune objective must be one of {allowed}, got {settings.objective!r}")
    train_enc = encode_all(tokenizer, train_choices, settings.context_tokens)
    held_enc = encode_all(tokenizer, held_out, settings.context_tokens)
    if not train_enc:
        raise InvalidInput("no pick has a prompt and two different continuations to compare: pick more")
    torch.manual_seed(settings.seed)
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        target_modules=list(settings.targets),
        layers_to_transform=list(settings.layers) or None,
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with quiet_peft():
        peft_model = get_peft_model(model, config)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    shuffle = random.Random(settings.seed)
    order: list[int] = []
    for _ in range(passes(settings, len(train_enc))):
        one = list(range(len(train_enc)))
        shuffle.shuffle(one)
        order += one
    losses: list[float] = []
    t0 = time.perf_counter()
    peft_model.train()
    for step, i in enumerate(order):
        _check(cancel)
        _note(progress, step, len(order), "training")
        losses.append(_step(peft_model, optimiser, train_enc[i], settings))
    _note(progress, len(order), len(order), "training")
    peft_model.eval()
    t_train = time.perf_counter() - t0
    base_held, tuned_held = _held_out(peft_model, held_enc, progress, cancel)
    pairs = sum(e.pairs for e in train_enc)
    metrics = {
        "train_choices": len(train_enc),
        "train_pairs": pairs,
        "held_out_choices": len(held_enc),
        "held_out_pairs": sum(e.pairs for e in held_enc),
        "train_s": round(t_train, 2),
        "eval_s": round(time.perf_counter() - t0 - t_train, 2),
        "passes": passes(settings, len(train_enc)),
        "pairs_per_s": round(pairs * passes(settings, len(train_enc)) / t_train, 3) if t_train > 0 else None,
        "loss_first": round(sum(losses[:4]) / max(1, len(losses[:4])), 4),
        "loss_last": round(sum(losses[-4:]) / max(1, len(losses[-4:])), 4),
        **evaluation(base_held, tuned_held),
    }
    return Trained(peft_model, metrics)


def _step(model: Any, optimiser: torch.optim.Optimizer, enc: Encoded, settings: TrainSettings) -> float:
    """One optimiser step on one choice: the prompt read once (base), reference then policy scores."""
    prompt = read_prompt(model, enc)
    reference = score(model, enc, prompt, adapter=False)
    policy = continuation_logprobs(model, enc, prompt)
    loss = dpo_loss(policy, reference, settings.beta, settings.objective, settings.nll_weight)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return float(loss.detach())


def _held_out(
    model: Any, encoded: Sequence[Encoded], progress: Progress | None, cancel: threading.Event | None
) -> tuple[list[Scores], list[Scores]]:
    """Base and tuned scores of the held-out choices (each prompt read once for both)."""
    base: list[Scores] = []
    tuned: list[Scores] = []
    for i, enc in enumerate(encoded):
        _check(cancel)
        _note(progress, i, len(encoded), "evaluation")
        prompt = read_prompt(model, enc)
        base.append(score(model, enc, prompt, adapter=False))
        tuned.append(score(model, enc, prompt))
    _note(progress, len(encoded), len(encoded), "evaluation")
    return base, tuned


def evaluation(base: Sequence[Scores], tuned: Sequence[Scores]) -> dict[str, Any]:
    """Held-out figures: pairwise accuracy base vs tuned, and the per-token log-likelihood gain on chosen."""
    if not base:
        return {"accuracy_base": None, "accuracy_personal": None, "chosen_gain_per_token": None}
    gains = [float(t.means[0] - b.means[0]) for b, t in zip(base, tuned, strict=True)]
    return {
        "accuracy_base": round(pair_accuracy(base), 4),
        "accuracy_personal": round(pair_accuracy(tuned), 4),
        "chosen_gain_per_token": round(sum(gains) / len(gains), 4),
    }


def save(trained: Trained, folder: Path) -> None:
    """The adapter's weights and its peft config (``adapter_model.safetensors``, ``adapter_config.json``)."""
    trained.model.save_pretrained(str(folder))
