"""Per-token signals from the forward pass that samples: entropy, ease, attention, surprise.

All of it comes from the same forward pass that makes the token; nothing is run twice.

* **entropy** (nats) of the temperature-1 distribution over the whole vocabulary.
* **ease** (logit lens, restricted): the hidden state after every decoder layer, at the
  sampled position, is passed through the model's final norm and scored against the
  output-layer rows of the final distribution's ``LENS_TOP_K`` most likely words only
  (not the whole vocabulary: that would multiply a step's cost). ``ease_layer`` is the
  earliest layer (1-based) from which the chosen word is the top candidate at that layer
  *and every later one*; ``ease`` is ``ease_layer / layers`` (small = easy). Both are None
  when the chosen word is not the final distribution's top word (a sampled long shot).
* **attention**: the attention probabilities of the sampled position in one layer (the
  last full-attention layer), recomputed exactly from the captured query (after q-norm,
  rotary applied here) and the cached keys, averaged over heads; the mass is split into
  the prompt's retrieved ``memory``, its ``source``, and the ``new`` text of this branch,
  over all positions but the leading special tokens (the begin-of-text "sink");
  ``recent`` is the share on the last ``RECENT_TOKENS`` positions.
* **surprise**: the logprob of each token of the person's own text (the prompt's source
  region) under the model, from the same prompt pass that fills the cache. It needs the
  output layer at every position scored, so only the prompt's last ``SURPRISE_MAX_TOKENS``
  tokens are scored in one call: a prompt read in full gets its end scored, a prompt that grew
  gets its new tokens scored, and values from earlier calls are kept (per stored prefix).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

LENS_TOP_K = 32  # candidates the logit lens scores at each layer
RECENT_TOKENS = 16  # "recent" = the last this-many positions
IGNORED_MEMORY_SHARE = 0.02  # a branch whose mean attention on memory is below this ignores it
SURPRISE_BLOCK = 64  # prompt positions per output-layer block when scoring the person's text
SURPRISE_MAX_TOKENS = 64  # only the prompt's last this-many tokens are scored (bounds a cold prompt's cost)
SINK, MEMORY, SOURCE, NEW = 0, 1, 2, 3  # what a position of the sequence is


# --------------------------------------------------------------------------- entropy


def entropy(logits: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)`` per row: ``logsumexp - E[logit]`` (``norm`` = the logsumexp)."""
    logits = logits.float()
    lse = torch.logsumexp(logits, dim=-1, keepdim=True) if norm is None else norm
    return lse.squeeze(-1) - torch.linalg.vecdot(torch.exp(logits - lse), logits)


# --------------------------------------------------------------------------- ease


def lens_candidates(
    logits: torch.Tensor, chosen: torch.Tensor, k: int = LENS_TOP_K
) -> tuple[torch.Tensor, torch.Tensor]:
    """The final top-``k`` word ids per row, and the column of ``chosen`` among them (-1 when absent)."""
    ids = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).indices
    return ids, candidate_column(ids, chosen)


def candidate_column(ids: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """The column of ``chosen`` in each row of candidate ids ``[rows, k]`` (-1 when absent)."""
    hit = ids == chosen.unsqueeze(1)
    return torch.where(hit.any(-1), hit.int().argmax(-1), torch.full_like(chosen, -1))


def ease_layers(lens_logits: torch.Tensor, col: torch.Tensor) -> list[int | None]:
    """Earliest layer (1-based) from which column ``col`` is the argmax in every later layer.

    ``lens_logits`` is ``[layers, rows, k]``; None for a row whose ``col`` is -1 or not top at the end.
    """
    layers = lens_logits.shape[0]
    top = lens_logits.argmax(-1) == col.unsqueeze(0)  # [layers, rows]
    trailing = top.flip(0).int().cumprod(0).sum(0)  # how many last layers in a row have it on top
    return [
        None if c < 0 or t == 0 else layers - int(t) + 1
        for c, t in zip(col.tolist(), trailing.tolist(), strict=True)
    ]


def lens_logits(
    hidden: torch.Tensor, norm: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor
) -> torch.Tensor:
    """Lens scores ``[layers, rows, k]``: hidden ``[layers, rows, d]`` normed, times rows ``[rows, k, d]``."""
    normed = norm(hidden).float()
    return torch.einsum("lrd,rkd->lrk", normed, rows.float())


# --------------------------------------------------------------------------- attention


def rotate(q: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding (Llama/Gemma convention) of ``q`` ``[rows, heads, d]``; cos/sin ``[rows, d]``."""
    half = q.shape[-1] // 2
    rotated = torch.cat((-q[..., half:], q[..., :half]), dim=-1)
    return q * cos.unsqueeze(1) + rotated * sin.unsqueeze(1)


def attention_probs(
    query: torch.Tensor, keys: torch.Tensor, scaling: float, softcap: float | None = None
) -> torch.Tensor:
    """Attention probabilities ``[rows, heads, T]`` of one query per row; ``keys`` ``[rows, kv_heads, T, d]``.

    ``query`` is ``[rows, heads, d]`` with rotary already applied; grouped-query keys are shared.
    """
    rows, heads, width = query.shape
    kv_heads = keys.shape[1]
    grouped = query.float().view(rows, kv_heads, heads // kv_heads, width)  # heads sharing a key head
    scores = torch.einsum("rkgd,rktd->rkgt", grouped, keys.float()).reshape(rows, heads, -1) * scaling
    if softcap:
        scores = torch.tanh(scores / softcap) * softcap
    return torch.softmax(scores, dim=-1)


def position_kinds(
    offsets: Sequence[tuple[int, int]], special: Sequence[bool], regions: Sequence[Any]
) -> list[int]:
    """SINK, MEMORY or SOURCE per prompt token, from its character span and the prompt's regions.

    A token is MEMORY when it starts inside a memory region; with no regions every text token is SOURCE.
    """
    spans = [(r.start, r.end) for r in regions if r.kind == "memory"]
    kinds = []
    for (start, _end), is_special in zip(offsets, special, strict=True):
        if is_special:
            kinds.append(SINK)
        elif any(a <= start < b for a, b in spans):
            kinds.append(MEMORY)
        else:
            kinds.append(SOURCE)
    return kinds


def attention_shares(
    probs: torch.Tensor, kinds: torch.Tensor, recent: int = RECENT_TOKENS
) -> list[dict[str, float]]:
    """Per row, the head-averaged mass on memory / source / new positions and on the last ``recent`` ones.

    ``probs`` is ``[rows, heads, T]``; ``kinds`` ``[T]`` (positions past the prompt are NEW). Shares are
    of the mass off the sink, so they sum to 1 over memory + source + new.
    """
    mass = probs.mean(1)  # [rows, T]
    text = mass.masked_fill(kinds == SINK, 0.0)
    total = text.sum(-1).clamp_min(1e-12)
    out = []
    by_kind = {
        name: (text * (kinds == kind)).sum(-1) / total
        for name, kind in (("memory", MEMORY), ("source", SOURCE), ("new", NEW))
    }
    recent_share = text[:, -recent:].sum(-1) / total
    for r in range(mass.shape[0]):
        row = {name: round(float(v[r]), 4) for name, v in by_kind.items()}
        row["recent"] = round(float(recent_share[r]), 4)
        out.append(row)
    return out


def ignores_memory(memory_shares: Sequence[float]) -> bool:
    """Whether a branch's tokens put (almost) no attention on the retrieved memory."""
    return bool(memory_shares) and sum(memory_shares) / len(memory_shares) < IGNORED_MEMORY_SHARE


# --------------------------------------------------------------------------- surprise


def token_logprobs(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    block: int = SURPRISE_BLOCK,
) -> torch.Tensor:
    """``log p(targets[i] | hidden[i])`` for hidden ``[P, d]`` (final-norm output), in blocks of positions."""
    out = []
    for at in range(0, hidden.shape[0], block):
        logits = head(hidden[at : at + block]).float()
        picked = logits.gather(1, targets[at : at + block].unsqueeze(1)).squeeze(1)
        out.append(picked - torch.logsumexp(logits, dim=-1))
    return torch.cat(out) if out else hidden.new_empty(0)


# --------------------------------------------------------------------------- capture


@dataclasses.dataclass
class Capture:
    """What forward hooks saw during the last forward pass, at each row's last position."""

    hidden: list[torch.Tensor] = dataclasses.field(default_factory=list)  # per decoder layer, [b, d]
    query: torch.Tensor | None = None  # [b, heads, d], after q-norm, before rotary
    cos: torch.Tensor | None = None  # [b, d]
    sin: torch.Tensor | None = None

    def clear(self) -> None:
        self.hidden, self.query, self.cos, self.sin = [], None, None, None


def _last(t: Any) -> torch.Tensor:
    out: torch.Tensor = t[0] if isinstance(t, tuple) else t
    return out[:, -1]


def attach(model: Any, attention_layer: int | None, capture: Capture) -> list[Any]:
    """Hooks that fill ``capture`` on every forward; returns the handles (``remove()`` each when done)."""
    handles = []
    for layer in model.base_model.layers:
        handles.append(layer.register_forward_hook(lambda _m, _a, out: capture.hidden.append(_last(out))))
    if attention_layer is None:
        return handles
    attn = model.base_model.layers[attention_layer].self_attn
    heads = int(model.config.num_attention_heads)

    def on_attn(_m: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        cos, sin = kwargs["position_embeddings"]
        capture.cos, capture.sin = cos[:, -1], sin[:, -1]

    handles.append(attn.register_forward_pre_hook(on_attn, with_kwargs=True))
    q_norm = getattr(attn, "q_norm", None)
    if isinstance(q_norm, torch.nn.Module):  # Gemma: [b, heads, len, d] after the norm

        def on_q_norm(_m: Any, _a: Any, out: torch.Tensor) -> None:
            capture.query = out[:, :, -1]

        handles.append(q_norm.register_forward_hook(on_q_norm))
    else:  # Llama-like: the projection, [b, len, heads * d]

        def on_q_proj(_m: Any, _a: Any, out: torch.Tensor) -> None:
            last = out[:, -1]
            capture.query = last.view(last.shape[0], heads, -1)

        handles.append(attn.q_proj.register_forward_hook(on_q_proj))
    return handles


def attention_layer_index(config: Any) -> int | None:
    """The last full-attention layer (Gemma 3 mixes sliding-window and full layers); None if all slide."""
    types = getattr(config, "layer_types", None)
    n = int(config.num_hidden_layers)
    if not types:  # one kind of layer: usable unless every layer slides
        return None if getattr(config, "sliding_window", None) else n - 1
    full = [i for i, t in enumerate(types) if t == "full_attention"]
    return full[-1] if full else None
