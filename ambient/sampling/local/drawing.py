"""Token drawing for the local sampler: temperature, top-k and top-p, then one seeded draw per branch."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ambient.sampling.base import SamplingOptions

NUCLEUS_PROBE = 1024  # top-p first looks for the nucleus among this many most likely words
SAMPLE_BLOCK = 1024  # words per block in two-level inverse-CDF sampling


def sampling_weights(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Unnormalised sampling weights per row, after temperature, top-k and top-p.

    Returns ``(weights, ids)``: with a filter, ``weights`` covers only the
    candidate words and ``ids`` maps its columns to word ids; without one,
    ``weights`` spans the whole vocabulary and ``ids`` is None.
    """
    logits = logits.float()  # a no-op for float32
    probs = torch.softmax(logits if temperature == 1.0 else logits / temperature, dim=-1)
    vocab = probs.shape[-1]
    if top_k <= 0 and top_p >= 1.0:
        return probs, None
    k = min(top_k if top_k > 0 else NUCLEUS_PROBE, vocab)
    values, ids = torch.topk(probs, k, dim=-1)  # sorted, most likely first
    if top_k <= 0 and k < vocab and bool((values.sum(-1) < top_p).any()):
        values, ids = torch.sort(probs, dim=-1, descending=True)  # nucleus wider than the probe
    if top_p < 1.0:
        total = values.sum(-1, keepdim=True) if top_k > 0 else 1.0  # top-p applies after top-k renormalises
        before = (values.cumsum(-1) - values) / total
        values = values.masked_fill(before >= top_p, 0.0)
    return values, ids


def draw(weights: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One column per row, drawn in proportion to ``weights`` with one uniform from that row's generator.

    Inverse-CDF sampling in two levels (blocks, then words within the chosen
    block) so a 262k vocabulary needs no full-length cumulative sum.
    """
    rows, width = weights.shape
    uniforms = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
    block = SAMPLE_BLOCK if width > SAMPLE_BLOCK else width
    padded = torch.nn.functional.pad(weights, (0, -width % block)) if width % block else weights
    blocks = padded.view(rows, -1, block)
    sums = blocks.sum(-1, dtype=torch.float64)
    cdf = sums.cumsum(-1)
    target = uniforms.to(cdf.device) * cdf[:, -1]
    chosen = torch.searchsorted(cdf, target.unsqueeze(1), right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)
    row_ids = torch.arange(rows, device=weights.device)
    inner = blocks[row_ids, chosen].double()
    rest = target - (cdf[row_ids, chosen] - sums[row_ids, chosen])
    within = torch.searchsorted(inner.cumsum(-1), rest.unsqueeze(1), right=True).squeeze(1)
    last_positive = block - 1 - (inner > 0).flip(-1).int().argmax(-1)  # never land on a masked word
    return chosen * block + torch.minimum(within, last_positive)


def choose_tokens(
    logits: torch.Tensor, options: SamplingOptions, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """One token id per row: greedy at temperature 0, else drawn with that row's own generator."""
    if options.temperature == 0:
        return logits.argmax(dim=-1)
    weights, ids = sampling_weights(logits, options.temperature, options.top_k, options.top_p)
    picked = draw(weights, generators)
    if ids is None:
        return picked
    return ids.gather(1, picked.unsqueeze(1)).squeeze(1)
