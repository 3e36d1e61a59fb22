"""``ambient bench sampling --backend openai --url URL``: the sampling workload on a server, beside local.

The same prompt (about ``prompt_tokens`` tokens of the shipped prose, cut with
the default model's tokenizer), the same settings (temperature 1.0, no
top-k/top-p, a fixed seed) and the same N as the local sampling benchmark, run
one after the other in one process, without logprob alternatives (llama-cpp-python
computes them in Python over Gemma's 262k-word vocabulary, seconds per token),
then once more with 5 alternatives for N=1 and a few tokens, to show that cost:

- **local**: :class:`LocalSampler` on this machine (end-of-text off, so every
  branch makes exactly ``new_tokens`` tokens);
- **openai**: :class:`OpenAISampler` against the server at ``url`` (the
  server's end-of-text stays on: the API has no portable switch for it, so the
  tokens actually made are counted and reported).

The server and this process share the machine's cores, so nothing else should
run; the load average is recorded before and after. The result goes into its
own ``sampling-openai`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ambient.bench.measure import best_time, build_prompt
from ambient.sampling.base import SamplingOptions

SECTION = "sampling-openai"


def run(
    config: Any,
    *,
    url: str,
    model_path: Path,
    prompt_tokens: int = 1000,
    new_tokens: int = 32,
    ns: Sequence[int] = (1, 4, 8),
    seed: int = 0,
    repeats: int = 1,
    logprob_tokens: int = 8,
) -> dict[str, Any]:
    """Both backends on the same workload; plain data for :func:`to_markdown`."""
    from ambient.sampling.local import LocalSampler
    from ambient.sampling.openai import OpenAISampler

    load_before = os.getloadavg()
    local = LocalSampler(model_path, device=config.model.device, threads=config.model.threads)
    prompt = build_prompt(local.tokenizer, prompt_tokens)
    name = config.model.name or _served_name(url)
    remote = OpenAISampler(url, name, api_key=config.model.api_key, timeout=max(config.model.timeout, 300.0))
    result: dict[str, Any] = {
        "section": SECTION,
        "backend": "openai",
        "url": str(remote.endpoint),
        "server_model": name,
        "local_model": local.name,
        "device": str(local.device),
        "prompt_tokens": local.count_tokens(prompt),
        "server_prompt_tokens": remote.count_tokens(prompt),
        "new_tokens": new_tokens,
        "ns": list(ns),
        "seed": seed,
    }
    try:
        result["local"] = _bench(local, prompt, new_tokens, ns, seed, repeats, eos_off=True)
        result["local_logprobs"] = _bench(local, prompt, logprob_tokens, (1,), seed, 1, eos_off=True, top=5)
    finally:
        local.close()
    result["openai"] = _bench(remote, prompt, new_tokens, ns, seed, repeats, eos_off=False)
    result["openai_logprobs"] = _bench(remote, prompt, logprob_tokens, (1,), seed, 1, eos_off=False, top=5)
    result["logprob_tokens"] = logprob_tokens
    result["load_before"] = [round(x, 2) for x in load_before]
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["rows"] = [_row(n, result["local"][n], result["openai"][n]) for n in ns]
    return result


def _served_name(url: str) -> str:
    from ambient.sampling.http_client import Client, Endpoint

    data = Client(Endpoint.parse(url)).get_json("/v1/models")
    return str(data["data"][0]["id"])


def _options(n: int, new_tokens: int, seed: int, top: int = 0) -> SamplingOptions:
    return SamplingOptions(
        n=n, max_tokens=new_tokens, temperature=1.0, top_p=1.0, top_k=0, seed=seed, top_logprobs=top
    )


def _bench(
    sampler: Any, prompt: str, new_tokens: int, ns: Sequence[int], seed: int, repeats: int, *, eos_off: bool,
    top: int = 0,
) -> dict[int, dict[str, Any]]:
    eos = getattr(sampler, "eos_token_ids", None)
    if eos_off:
        sampler.eos_token_ids = frozenset()
    try:
        sampler.generate(prompt, _options(2, 4, seed))  # warm-up (and, for a server, learns how it treats n)
        out: dict[int, dict[str, Any]] = {}
        for n in ns:
            call = functools.partial(sampler.generate, prompt, _options(n, new_tokens, seed, top))
            wall, res = best_time(call, repeats)
            made = sum(len(c.tokens) for c in res.continuations)
            keep = ("server_n", "fanned_out", "requests", "resumed", "logprobs", "prefill_s", "decode_s")
            out[n] = {"wall_s": wall, "tokens": made, **{k: v for k, v in res.meta.items() if k in keep}}
        return out
    finally:
        if eos_off:
            sampler.eos_token_ids = eos


def _row(n: int, local: dict[str, Any], remote: dict[str, Any]) -> dict[str, Any]:
    return {
        "n": n,
        "local_s": local["wall_s"], "local_tokens": local["tokens"],
        "local_tps": local["tokens"] / local["wall_s"],
        "openai_s": remote["wall_s"], "openai_tokens": remote["tokens"],
        "openai_tps": remote["tokens"] / remote["wall_s"],
        "ratio": remote["wall_s"] / local["wall_s"],
        "tps_ratio": (remote["tokens"] / remote["wall_s"]) / (local["tokens"] / local["wall_s"]),
        "requests": remote.get("requests"), "resumed": remote.get("resumed"),
        "server_n": remote.get("server_n"),
        "logprobs": remote.get("logprobs"),
    }


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "## Sampling: an OpenAI-compatible server (llama.cpp) beside the local backend",
        "",
        f"Sampling through an OpenAI-compatible server: `{result['server_model']}` at {result['url']} "
        f"against the local backend ({result['local_model']} on {result['device']}), one run, same machine. "
        f"Prompt {result['prompt_tokens']} tokens ({result['server_prompt_tokens']} by the server's count), "
        f"{result['new_tokens']} new tokens per branch, temperature 1.0, seed {result['seed']}, no logprob "
        "alternatives. Local: end-of-text off; server: end-of-text on (tokens made are counted).",
        "",
        "| N | local | server | tokens local / server | tokens/s local / server | server ÷ local (time) "
        "| server requests (resumed) | server logprobs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['n']} | {r['local_s']:.2f} s | {r['openai_s']:.2f} s "
            f"| {r['local_tokens']} / {r['openai_tokens']} | {r['local_tps']:.1f} / {r['openai_tps']:.1f} "
            f"| {r['ratio']:.2f}× | {r['requests']} ({r['resumed']}) | {'yes' if r['logprobs'] else 'no'} |"
        )
    lb, la = result["load_before"], result["load_after"]
    lo, so = result["local_logprobs"][1], result["openai_logprobs"][1]
    if any(r["server_n"] == 1 and r["n"] > 1 for r in result["rows"]):
        lines += [
            "",
            "This server makes one completion per request whatever `n` asks for (server_n = 1): N branches "
            "are N requests. Branches whose stream the server cut short when the next request arrived are "
            "continued from their text (resumed); after that, fan-outs go one request at a time.",
        ]
    lines += [
        "",
        f"With 5 logprob alternatives per token (N=1, {result['logprob_tokens']} tokens): local "
        f"{lo['wall_s']:.2f} s, server {so['wall_s']:.2f} s ({so['tokens']} tokens, logprobs "
        f"{'sent' if so.get('logprobs') else 'not sent'}).",
        f"Load average (1/5/15 min) before: {lb[0]} / {lb[1]} / {lb[2]}; after: {la[0]} / {la[1]} / {la[2]}. "
        "The server and the local model share the same cores; other work on the machine slows both.",
    ]
    return "\n".join(lines) + "\n"
