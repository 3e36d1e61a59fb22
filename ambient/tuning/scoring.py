"""Log-likelihoods of continuations given a prompt, as tuning needs them: cheap, and differentiable.

One offer's prompt is read once (batch 1, by the base model, without gradients); its key/value
cache is repeated to one row per continuation, and the continuations run together. The output
layer (262k words x 640 for the default model: most of its weights) is applied only at the
positions that predict a continuation token, never at prompt positions. With gradients on, the
same code gives the policy's log-likelihoods for the preference loss; without, the reference's
(the adapter off) and the evaluation's.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from ambient.tuning.data import Choice


@dataclasses.dataclass(frozen=True)
class Encoded:
    """One choice as token ids: the prompt's last tokens (begin-of-text first), then each continuation.

    ``continuations[0]`` is the chosen one; the others are the rejected ones it beat.
    """

    prompt: list[int]
    continuations: list[list[int]]

    @property
    def pairs(self) -> int:
        return len(self.continuations) - 1


def encode(tokenizer: Any, choice: Choice, context_tokens: int) -> Encoded | None:
    """``choice`` as ids (the prompt cut to its last ``context_tokens`` tokens); None if nothing is left.

    A rejected continuation that has no tokens is dropped.
    """
    ids: list[int] = list(tokenizer(choice.prompt, split_special_tokens=True)["input_ids"])
    lead = ids[:1] if ids and ids[0] == tokenizer.bos_token_id else []
    body = ids[len(lead) :]
    prompt = lead + body[-max(1, context_tokens - len(lead)) :]
    conts = [_ids(tokenizer, t) for t in (choice.chosen, *choice.rejected)]
    kept = [conts[0], *[c for c in conts[1:] if c]]
    if not body or not kept[0] or len(kept) < 2:
        return None
    return Encoded(prompt, kept)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


@dataclasses.dataclass(frozen=True)
class Scores:
    """Per continuation: the sum of its tokens' log-probabilities, and how many tokens it has."""

    sums: torch.Tensor  # [k], differentiable when computed with gradients
    counts: torch.Tensor  # [k]

    @property
    def means(self) -> torch.Tensor:
        return self.sums / self.counts


@dataclasses.dataclass
class PromptState:
    """A prompt as the base model read it: its key/value cache (one row) and its last hidden state."""

    cache: Any
    last: torch.Tensor  # [1, 1, width]: predicts each continuation's first token


def read_prompt(model: Any, enc: Encoded, device: torch.device | str = "cpu") -> PromptState:
    """Read ``enc``'s prompt with the base model (an adapter, if any, is off), without gradients.

    A personal adapter changes only how continuations are written: the prompt is always read
    by the base model, in training as in sampling (see :mod:`ambient.sampling.local.adapter`).
    """
    from transformers import DynamicCache

    lm = plain(model)
    cache = DynamicCache(config=lm.config)
    with torch.no_grad(), adapter_off(model):  # no_grad, not inference_mode: training reads the cache
        out = lm.base_model(input_ids=torch.tensor([enc.prompt], device=device), cache=cache, use_cache=True)
    return PromptState(cache, out.last_hidden_state[:, -1:, :].clone())


def adapter_off(model: Any) -> Any:
    """A context in which a peft model's adapter is off (nothing for a plain model)."""
    return model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()


def continuation_logprobs(
    model: Any, enc: Encoded, prompt: PromptState, device: torch.device | str = "cpu"
) -> Scores:
    """Each continuation's log-likelihood after ``prompt``, under ``model`` (a causal LM, peft or not).

    Differentiable when called with gradients on. ``prompt`` is not changed (its cache is copied).
    """
    lm = plain(model)
    body, head = lm.base_model, lm.get_output_embeddings()
    k = len(enc.continuations)
    cache = copy.deepcopy(prompt.cache)
    cache.batch_repeat_interleave(k)
    length = max(len(c) for c in enc.continuations)
    pad = _pad_id(lm)
    ids = torch.tensor([c + [pad] * (length - len(c)) for c in enc.continuations], device=device)
    hidden = body(input_ids=ids, cache=cache, use_cache=True).last_hidden_state
    counts = torch.tensor([len(c) for c in enc.continuations], device=device)
    # The first token follows the prompt's last position: the base model's, as in sampling.
    with adapter_off(model):
        first = _capped(_apply_head(head, prompt.last[0]).float(), lm)  # [1, vocab]
    sums = (first[0, ids[:, 0]] - torch.logsumexp(first[0], dim=-1)).detach()
    # Each later token follows a continuation position. Padding sits after each continuation's
    # last token and attention is causal, so it changes no real one; its positions are left out.
    valid = torch.arange(1, length, device=device)[None, :] < counts[:, None]
    rows = hidden[:, :-1, :][valid]  # only the positions that predict a continuation token
    logits = _capped(_apply_head(head, rows).float(), lm)
    picked = logits.gather(1, ids[:, 1:][valid].unsqueeze(1)).squeeze(1) - torch.logsumexp(logits, dim=-1)
    owner = torch.arange(k, device=device)[:, None].expand(k, length - 1)[valid]
    sums = sums.to(picked.dtype).index_add(0, owner, picked)
    return Scores(sums, counts.to(picked.dtype))


def plain(model: Any) -> Any:
    """The transformers model itself, under a peft wrapper or not (peft's layers stay in it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _apply_head(head: Any, rows: torch.Tensor) -> torch.Tensor:
    """The output layer on ``rows``; a plain one as ``W @ rows^T`` (the weights as the big operand: on
    the CPU about twice as fast as ``rows @ W^T`` for a 262k-word layer, gradients included)."""
    if isinstance(head, torch.nn.Linear) and head.bias is None:
        return torch.mm(head.weight, rows.t()).t()
    out: torch.Tensor = head(rows)
    return out


def _capped(logits: torch.Tensor, model: Any) -> torch.Tensor:
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def _pad_id(model: Any) -> int:
    pad = getattr(model.config, "pad_token_id", None)
    return int(pad) if isinstance(pad, int) else 0


def score(model: Any, enc: Encoded, prompt: PromptState, *, adapter: bool = True) -> Scores:
    """One choice's scores without gradients (reference, base and evaluation numbers).

    ``adapter=False`` scores with a peft model's adapter off: the base model's numbers.
    """
    with torch.no_grad(), contextlib.nullcontext() if adapter else adapter_off(model):
        return continuation_logprobs(model, enc, prompt)


def pair_accuracy(scores: Sequence[Scores]) -> float:
    """The share of pairs whose chosen continuation has a higher log-likelihood per token than the other."""
    wins = total = 0
    for s in scores:
        means = s.means
        wins += int((means[0] > means[1:]).sum())
        total += len(means) - 1
    return wins / total if total else 0.0
