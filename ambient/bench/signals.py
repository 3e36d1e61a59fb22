"""What per-token signals cost, and what oversampling buys: ``ambient bench sampling --signals``.

Cost: the same LocalSampler, prompt (about ``prompt_tokens`` tokens of the shipped prose), seed
and settings (temperature 1.0, end-of-text off so every branch makes ``new_tokens`` tokens),
N = ``n``, with signals off and on, alternating, best of ``repeats``:

* *warm*: the prompt was read before, so the prefix cache leaves only its last few tokens to
  read (a note that changed at its end: the usual case in the daemon);
* *cold*: the prefix cache is emptied before each call, so the whole prompt is read (and, with
  signals on, every source token of it is scored for surprise through the output layer).

Diversity (when the embedder is installed): ``pool`` samples of a short prompt, embedded with
the memory embedder; plain N-sampling (the first N samples) against N cluster representatives
of the pool, by mean pairwise cosine distance.
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import Any

from ambient.sampling.base import SamplingOptions

DIVERSITY_PROMPT = "The old lighthouse keeper opened the door and saw"


def run(
    config: Any,
    *,
    model_path: Path | None = None,
    prompt_tokens: int = 1000,
    new_tokens: int = 32,
    n: int = 8,
    seed: int = 0,
    repeats: int = 3,
    pool: int = 16,
    quick: bool = False,
) -> dict[str, Any]:
    """Run the benchmark; returns plain data for :func:`to_markdown` (``section`` = "signals")."""
    from ambient import models
    from ambient.bench.measure import build_prompt, peak_rss_mb
    from ambient.sampling.local import LocalSampler

    if quick:
        prompt_tokens, new_tokens, repeats = 200, 8, 1
    model_path = model_path or models.resolve_model_path(config)
    sampler = LocalSampler(model_path, device=config.model.device, threads=config.model.threads)
    prompt = build_prompt(sampler.tokenizer, prompt_tokens)
    result: dict[str, Any] = {
        "section": "signals",
        "model": sampler.name,
        "device": str(sampler.device),
        "threads": _threads(),
        "prompt_tokens": sampler.count_tokens(prompt),
        "new_tokens": new_tokens,
        "n": n,
        "repeats": repeats,
        "load_before": os.getloadavg(),
    }
    eos, sampler.eos_token_ids = sampler.eos_token_ids, frozenset()
    try:
        result["warm"] = _compare(sampler, prompt, n, new_tokens, seed, repeats, cold=False)
        result["cold"] = _compare(sampler, prompt, n, new_tokens, seed, repeats, cold=True)
        result["diversity"] = _diversity(config, sampler, n, pool, seed, new_tokens)
    finally:
        sampler.eos_token_ids = eos
    result["load_after"] = os.getloadavg()
    result["peak_rss_mb"] = peak_rss_mb()
    sampler.close()
    gc.collect()
    return result


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _options(n: int, new_tokens: int, seed: int, signals: bool) -> SamplingOptions:
    return SamplingOptions(
        n=n, max_tokens=new_tokens, temperature=1.0, top_p=1.0, top_k=0, seed=seed, signals=signals
    )


def _compare(
    sampler: Any, prompt: str, n: int, new_tokens: int, seed: int, repeats: int, *, cold: bool
) -> dict[str, Any]:
    """Best wall time with signals off and on, alternating so both see the same machine load."""
    sampler.generate(prompt, _options(2, 2, seed, True))  # warm-up; fills the prefix cache
    best = {False: float("inf"), True: float("inf")}
    meta: dict[bool, dict[str, Any]] = {}
    for _ in range(max(1, repeats)):
        for signals in (False, True):
            if cold:
                sampler.prefixes.clear()
            t0 = time.perf_counter()
            res = sampler.generate(prompt, _options(n, new_tokens, seed, signals))
            wall = time.perf_counter() - t0
            if wall < best[signals]:
                best[signals], meta[signals] = wall, res.meta
    return {
        "off_s": best[False],
        "on_s": best[True],
        "extra": best[True] / best[False] - 1,
        "off_prefill_s": meta[False]["prefill_s"],
        "on_prefill_s": meta[True]["prefill_s"],
        "off_decode_s": meta[False]["decode_s"],
        "on_decode_s": meta[True]["decode_s"],
        "reused_tokens": meta[True]["prefill_reused_tokens"],
    }


def _diversity(config: Any, sampler: Any, n: int, pool: int, seed: int, new_tokens: int) -> dict[str, Any]:
    """Plain N-sampling against N representatives of a clustered pool (mean pairwise cosine distance)."""
    from ambient.errors import AmbientError
    from ambient.memory import get_embedder
    from ambient.sampling import diverse

    try:
        embedder = get_embedder(config)
    except AmbientError as exc:
        return {"skipped": str(exc)}
    plain, clustered, shares = [], [], []
    for trial in range(3):
        opts = SamplingOptions(n=pool, max_tokens=new_tokens, temperature=0.9, seed=seed + 100 * trial)
        texts = [c.text for c in sampler.generate(DIVERSITY_PROMPT, opts).continuations]
        vectors = embedder.embed(texts)
        picks = diverse.choose(vectors, n)
        plain.append(diverse.mean_pairwise_distance(vectors[:n]))
        clustered.append(diverse.mean_pairwise_distance(vectors[[p.index for p in picks]]))
        shares.append([round(p.share, 3) for p in picks])
    return {
        "pool": pool,
        "n": n,
        "trials": len(plain),
        "plain": sum(plain) / len(plain),
        "clustered": sum(clustered) / len(clustered),
        "shares_first_trial": shares[0],
    }


def to_markdown(result: dict[str, Any]) -> str:
    """Cost table (warm and cold), the load average, and the diversity comparison."""
    load_b = ", ".join(f"{x:.2f}" for x in result["load_before"])
    load_a = ", ".join(f"{x:.2f}" for x in result["load_after"])
    lines = [
        "## Signals: the cost of entropy, ease, attention and surprise",
        "",
        f"Signals benchmark: {result['model']} on {result['device']} ({result['threads']} threads), "
        f"prompt {result['prompt_tokens']} tokens, N={result['n']}, {result['new_tokens']} new tokens per "
        f"branch, temperature 1.0, end-of-text off, best of {result['repeats']} (off and on alternating).",
        "",
        "| prompt | signals off | signals on | extra | prefill off / on | decode off / on |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("warm", "read before (prefix cache)"), ("cold", "read in full (cache emptied)")):
        r = result[name]
        lines.append(
            f"| {label} | {r['off_s']:.2f} s | {r['on_s']:.2f} s | {100 * r['extra']:+.0f}% "
            f"| {r['off_prefill_s']:.2f} / {r['on_prefill_s']:.2f} s "
            f"| {r['off_decode_s']:.2f} / {r['on_decode_s']:.2f} s |"
        )
    lines += [
        "",
        "Signals off attaches no hooks and computes nothing extra (a few `is None` checks per step): "
        "its tokens and logprobs are those of the sampler without signals (checked by the tests).",
        f"Load average (1, 5, 15 min) before: {load_b}; after: {load_a} "
        "(2 shared cores: other work ran too).",
    ]
    div = result.get("diversity", {})
    if "skipped" in div:
        lines.append(f"Diversity: skipped ({div['skipped']}).")
    elif div:
        lines.append(
            f"Diversity (mean pairwise cosine distance of the offered texts, MiniLM embeddings, mean over "
            f"{div['trials']} pools of one prompt, different seeds): "
            f"plain N={div['n']} sampling {div['plain']:.3f}; "
            f"{div['n']} cluster representatives of {div['pool']} samples {div['clustered']:.3f} "
            f"(cluster shares, first pool: {div['shares_first_trial']})."
        )
    lines.append(f"Peak RSS: {result['peak_rss_mb']:.0f} MB.")
    return "\n".join(lines) + "\n"
