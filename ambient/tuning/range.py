"""Whether a personal adapter kept the model's range: its offers against the base model's, same prompts.

For each prompt, N branches are sampled twice with the sampler as ambient runs it (the same
seeds): every branch by the base model, then every branch by the adapter. Two figures per side:

* **entropy**: the mean per-token entropy of the next-word distribution (nats), as the signals
  report it: how open the model keeps each step;
* **diversity**: the mean pairwise cosine distance of the N branches' embeddings (ambient's
  embedder), averaged over prompts: how different the offered continuations are in meaning.

An adapter that narrows the model (a lower diversity than base's by more than
``tune.max_diversity_drop``) is not activated by default (:func:`ambient.adapters.verdict`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from ambient.sampling.base import SamplingOptions
from ambient.sampling.diverse import mean_pairwise_distance

Embed = Callable[[Sequence[str]], Any]  # texts -> unit vectors (rows)


@dataclasses.dataclass
class Side:
    """One model's offers on the prompts: their texts, and the figures."""

    texts: list[list[str]] = dataclasses.field(default_factory=list)
    entropies: list[float] = dataclasses.field(default_factory=list)
    diversities: list[float] = dataclasses.field(default_factory=list)
    decode_s: float = 0.0
    decode_steps: int = 0

    @property
    def entropy(self) -> float | None:
        return round(sum(self.entropies) / len(self.entropies), 4) if self.entropies else None

    @property
    def ms_per_step(self) -> float | None:
        return round(1000 * self.decode_s / self.decode_steps, 2) if self.decode_steps else None

    @property
    def diversity(self) -> float | None:
        return round(sum(self.diversities) / len(self.diversities), 4) if self.diversities else None


def sample_side(
    sampler: Any, prompts: Sequence[str], options: SamplingOptions, share: float, embed: Embed
) -> Side:
    """Offers on ``prompts`` with ``share`` of the branches written by the sampler's adapter (0 or 1)."""
    side = Side()
    previous = sampler.adapter_share
    sampler.adapter_share = share
    try:
        for i, prompt in enumerate(prompts):
            seeded = dataclasses.replace(options, seed=(options.seed or 0) + 1000 * i)
            result = sampler.generate(prompt, seeded)
            texts = [c.text for c in result.continuations]
            side.texts.append(texts)
            side.decode_s += float(result.meta.get("decode_s", 0.0))
            side.decode_steps += int(result.meta.get("decode_steps", 0))
            values = [
                float(t.extra["entropy"])
                for c in result.continuations
                for t in c.tokens
                if t.extra and isinstance(t.extra.get("entropy"), int | float)
            ]
            if values:
                side.entropies.append(sum(values) / len(values))
            if len([t for t in texts if t.strip()]) >= 2:
                side.diversities.append(mean_pairwise_distance(embed([t or " " for t in texts])))
    finally:
        sampler.adapter_share = previous
    return side


def measure(
    sampler: Any,
    prompts: Sequence[str],
    embed: Embed,
    *,
    n: int = 4,
    max_tokens: int = 32,
    temperature: float = 0.9,
    seed: int = 0,
) -> dict[str, Any]:
    """Entropy and diversity of base and personal offers on ``prompts`` (the sampler holds the adapter)."""
    options = SamplingOptions(
        n=n, max_tokens=max_tokens, temperature=temperature, seed=seed, top_logprobs=0, signals=True
    )
    base = sample_side(sampler, prompts, options, 0.0, embed)
    personal = sample_side(sampler, prompts, options, 1.0, embed)
    return {
        "range_prompts": len(prompts),
        "range_n": n,
        "entropy_base": base.entropy,
        "entropy_personal": personal.entropy,
        "diversity_base": base.diversity,
        "diversity_personal": personal.diversity,
        "decode_ms_per_step_base": base.ms_per_step,  # N rows a step, with signals on
        "decode_ms_per_step_personal": personal.ms_per_step,
        "texts_base": base.texts,
        "texts_personal": personal.texts,
    }
