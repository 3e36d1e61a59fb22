"""How much sharing the prompt pass saves: N branches three ways, in one process.

On the same prompt (about ``prompt_tokens`` tokens of English prose shipped in
``prompt.txt``), the same weights and the same settings (temperature 1.0, no
top-k/top-p, a fixed seed, end-of-text disabled so every branch makes exactly
``new_tokens`` tokens), for each N:

(a) N separate ``model.generate`` calls (plain transformers);
(b) one ``model.generate(num_return_sequences=N)`` call (plain transformers);
(c) one :meth:`LocalSampler.generate` call (one prompt pass, N rows decoding together);
(d) llama.cpp in this process (llama-cpp-python, the Q4_K_M GGUF the model comes from), N completions.

Every timed call reads the whole prompt (cold); (c)'s warm prefill, reusing a
stored prefix, is reported apart.

It also measures the machine's memory read bandwidth, which bounds a decode
step (every weight is read once per step), an ``ambient continue``-like wall
time for -n 1 against -n 8, and the peak resident memory.

(a) and (b) use the model exactly as transformers loads it (float32 on CPU);
(c) uses LocalSampler as ambient runs it.
"""

from __future__ import annotations

import functools
import gc
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ambient.bench.measure import best_time, build_prompt, load_average, measure_bandwidth, peak_rss_mb
from ambient.errors import InvalidInput
from ambient.sampling.base import SamplingOptions


def run(
    config: Any,
    *,
    model_path: Path | None = None,
    prompt_tokens: int = 1000,
    new_tokens: int = 32,
    ns: Sequence[int] = (1, 4, 8),
    seed: int = 0,
    repeats: int = 1,
    backend: str = "local",
    url: str | None = None,
    signals: bool = False,
) -> dict[str, Any]:
    """Run the benchmark; returns plain data (see :func:`to_markdown`). Timings: best of ``repeats``.

    ``signals=True`` measures the cost of per-token signals instead (:mod:`ambient.bench.signals`,
    its own section of BENCHMARKS.md).

    ``backend="openai"`` runs the same workload on the server at ``url`` beside the local backend
    (:mod:`ambient.bench.sampling_openai`, its own section of BENCHMARKS.md).
    """
    from ambient import models
    from ambient.sampling.local import LocalSampler

    if signals:
        from ambient.bench import signals as signals_bench

        return signals_bench.run(
            config, model_path=model_path, prompt_tokens=prompt_tokens, new_tokens=new_tokens
        )
    model_path = model_path or models.resolve_model_path(config)
    if backend == "openai":
        from ambient.bench import sampling_openai

        if not url:
            raise InvalidInput("--backend openai needs --url http://HOST:PORT (the completions server)")
        return sampling_openai.run(
            config, url=url, model_path=model_path, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
            ns=ns, seed=seed, repeats=repeats,
        )
    if backend != "local":
        raise InvalidInput(f"--backend must be local or openai, got {backend!r}")

    load_before = load_average()
    sampler = LocalSampler(model_path, device=config.model.device, threads=config.model.threads)
    result: dict[str, Any] = {
        "model": sampler.name,
        "device": str(sampler.device),
        "threads": _threads(),
        "machine": platform.processor() or platform.machine(),
        "new_tokens": new_tokens,
        "ns": list(ns),
        "seed": seed,
        "step_weight_bytes": sampler.step_weight_bytes,
    }
    prompt = build_prompt(sampler.tokenizer, prompt_tokens)
    result["prompt_tokens"] = sampler.count_tokens(prompt)
    result["local"] = _bench_local(sampler, prompt, new_tokens, ns, seed, repeats)
    result["continue"] = _bench_continue(sampler, config, prompt, new_tokens, seed, repeats)
    result["peak_rss_local_mb"] = peak_rss_mb()
    sampler.close()
    del sampler
    gc.collect()
    result["bandwidth_gbs"] = round(measure_bandwidth() / 1e9, 1)
    result["hf"] = _bench_hf(model_path, prompt, new_tokens, ns, seed, repeats)
    result["llama_cpp"] = _bench_llama(config, prompt, new_tokens, ns, repeats)
    result["peak_rss_mb"] = peak_rss_mb()
    result["load"] = {"before": load_before, "after": load_average()}
    _summarise(result)
    return result


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _bench_local(
    sampler: Any, prompt: str, new_tokens: int, ns: Sequence[int], seed: int, repeats: int
) -> dict[int, dict[str, Any]]:
    """(c): LocalSampler, end-of-text off so every branch makes ``new_tokens`` tokens.

    Every timed call starts with the prefix cache emptied, so it reads the whole
    prompt (cold), as (a) and (b) do; one more call per N reuses the prompt's
    stored prefix (warm: what a person continuing the same text sees), and its
    prefill is reported apart.
    """
    eos, sampler.eos_token_ids = sampler.eos_token_ids, frozenset()

    def cold(n: int) -> Any:
        sampler.prefixes.clear()
        return sampler.generate(prompt, _options(n, new_tokens, seed))

    try:
        sampler.generate(prompt, _options(2, 4, seed))  # warm-up
        out: dict[int, dict[str, Any]] = {}
        for n in ns:
            wall, res = best_time(functools.partial(cold, n), repeats)
            made = sum(len(c.tokens) for c in res.continuations)
            warm = sampler.generate(prompt, _options(n, new_tokens, seed)).meta
            out[n] = {"wall_s": wall, "tokens": made, **res.meta, "warm_prefill_s": warm["prefill_s"]}
        return out
    finally:
        sampler.eos_token_ids = eos


def _bench_continue(
    sampler: Any, config: Any, prompt: str, new_tokens: int, seed: int, repeats: int
) -> dict[str, Any]:
    """Like ``ambient continue``: the configured sampling settings, real end-of-text, -n 1 against -n 8."""
    s = config.sampling
    out: dict[str, Any] = {}
    for n in (1, 8):
        opts = SamplingOptions(
            n=n, max_tokens=new_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
            stop=tuple(s.stop), seed=seed, top_logprobs=s.top_logprobs,
        )
        wall, res = best_time(functools.partial(sampler.generate, prompt, opts), repeats)
        out[f"n{n}_s"] = wall
        out[f"n{n}_tokens"] = sum(len(c.tokens) for c in res.continuations)
    out["ratio"] = out["n8_s"] / out["n1_s"]
    return out


def _options(n: int, new_tokens: int, seed: int) -> SamplingOptions:
    return SamplingOptions(n=n, max_tokens=new_tokens, temperature=1.0, top_p=1.0, top_k=0, seed=seed)


def _bench_hf(
    model_path: Path, prompt: str, new_tokens: int, ns: Sequence[int], seed: int, repeats: int
) -> dict[int, dict[str, float]]:
    """(a) and (b): plain transformers ``generate`` on the model as transformers loads it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, local_files_only=True)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    settings = {
        "do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens, "pad_token_id": tokenizer.pad_token_id,
    }

    def gen(copies: int) -> Any:
        torch.manual_seed(seed)
        with torch.inference_mode():
            return model.eval().generate(ids, num_return_sequences=copies, **settings)

    def separate(n: int) -> Any:
        return [gen(1) for _ in range(n)]

    gen(2)  # warm-up
    out: dict[int, dict[str, float]] = {}
    for n in ns:
        a, _ = best_time(functools.partial(separate, n), repeats)
        b, _ = best_time(functools.partial(gen, n), repeats)
        out[n] = {"separate_s": a, "num_return_s": b}
    return out


def _bench_llama(
    config: Any, prompt: str, new_tokens: int, ns: Sequence[int], repeats: int
) -> dict[str, Any] | None:
    """(d): llama.cpp in this process (llama-cpp-python) on the bundled Q4_K_M GGUF, one sequence at a time.

    Its decode rate comes by difference: a completion of ``new_tokens`` tokens
    minus one of a single token, both from a cold prompt, over the tokens
    between. N branches are N completions in a row (llama.cpp keeps the last
    prompt, so only the first reads it). None when llama-cpp-python is absent.
    """
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    from ambient import models

    gguf = models.default_gguf_path(Path(config.models_dir))
    llm = Llama(model_path=str(gguf), n_ctx=4096, n_threads=_threads(), n_batch=512, verbose=False)

    def complete(tokens: int, fresh: bool = True) -> None:
        if fresh:
            llm.reset()  # type: ignore[no-untyped-call]
        llm.create_completion(prompt, max_tokens=tokens, temperature=1.0, top_p=1.0, top_k=0, seed=0)

    complete(4)  # warm-up
    one, _ = best_time(functools.partial(complete, 1), repeats)
    full, _ = best_time(functools.partial(complete, new_tokens), repeats)
    decode_tps = (new_tokens - 1) / max(full - one, 1e-9)

    def branches(n: int) -> None:
        complete(new_tokens)
        for _ in range(n - 1):
            complete(new_tokens, fresh=False)

    per_n: dict[int, dict[str, float]] = {}
    for n in ns:
        wall, _ = best_time(functools.partial(branches, n), repeats)
        per_n[n] = {"wall_s": wall, "tps": n * new_tokens / wall}
    return {"prefill_s": one, "decode_tps": decode_tps, "branches": per_n}


def _summarise(result: dict[str, Any]) -> None:
    """Ratios, tokens/s and the bandwidth bound, per N."""
    bound_step_s = result["step_weight_bytes"] / (result["bandwidth_gbs"] * 1e9)
    result["bound_steps_per_s"] = 1 / bound_step_s
    rows = []
    for n in result["ns"]:
        c, hf = result["local"][n], result["hf"][n]
        made = n * result["new_tokens"]
        steps_per_s = c["decode_steps"] / c["decode_s"] if c["decode_s"] else 0.0
        rows.append({
            "n": n,
            "a_s": hf["separate_s"], "b_s": hf["num_return_s"], "c_s": c["wall_s"],
            "a_tps": made / hf["separate_s"], "b_tps": made / hf["num_return_s"], "c_tps": made / c["wall_s"],
            "a_over_c": hf["separate_s"] / c["wall_s"], "b_over_c": hf["num_return_s"] / c["wall_s"],
            "c_prefill_s": c["prefill_s"], "c_warm_prefill_s": c["warm_prefill_s"],
            "c_steps_per_s": steps_per_s, "c_share_of_bound": steps_per_s / result["bound_steps_per_s"],
            "c_decode_tps": n * steps_per_s,
        })
    result["rows"] = rows
    llama = result.get("llama_cpp")
    if llama:
        for r in rows:
            d = llama["branches"][r["n"]]
            r.update(d_s=d["wall_s"], d_tps=d["tps"], d_over_c=d["wall_s"] / r["c_s"])
            r["c_decode_vs_llama"] = r["c_decode_tps"] / llama["decode_tps"]


def to_markdown(result: dict[str, Any]) -> str:
    """A short report: one table per N, then the bound, the -n 1/-n 8 comparison and memory."""
    if result.get("section") == "signals":
        from ambient.bench import signals as signals_bench

        return signals_bench.to_markdown(result)
    if result.get("backend") == "openai":
        from ambient.bench import sampling_openai

        return sampling_openai.to_markdown(result)
    load = result.get("load", {})
    lines = [
        "## Sampling: N branches of one prompt",
        "",
        f"Sampling benchmark: {result['model']} on {result['device']} ({result['threads']} threads), "
        f"prompt {result['prompt_tokens']} tokens, {result['new_tokens']} new tokens per branch, "
        f"temperature 1.0, seed {result['seed']}, end-of-text off. Load average before the run "
        f"{load.get('before', 'unknown')}, after it {load.get('after', 'unknown')}: other work on the "
        "machine slows every column, and not always evenly.",
        "",
        "| N | (a) N× generate | (b) num_return_sequences | (c) LocalSampler | tokens/s a / b / c "
        "| a÷c | b÷c | (c) prefill cold / warm | (c) decode steps/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['n']} | {r['a_s']:.2f} s | {r['b_s']:.2f} s | {r['c_s']:.2f} s "
            f"| {r['a_tps']:.1f} / {r['b_tps']:.1f} / {r['c_tps']:.1f} "
            f"| {r['a_over_c']:.1f}× | {r['b_over_c']:.1f}× "
            f"| {r['c_prefill_s']:.2f} / {r['c_warm_prefill_s']:.2f} s | {r['c_steps_per_s']:.1f} |"
        )
    llama = result.get("llama_cpp")
    if llama:
        lines += [
            "",
            "Beside llama.cpp in this process (llama-cpp-python, the bundled Q4_K_M GGUF, same threads, same "
            "prompt; N branches are N completions in a row, the prompt read once):",
            "",
            "| N | (d) llama.cpp | (c) LocalSampler | d÷c | (c) decode tokens/s | ÷ llama.cpp's decode |",
            "|---|---|---|---|---|---|",
            *[
                f"| {r['n']} | {r['d_s']:.2f} s | {r['c_s']:.2f} s | {r['d_over_c']:.2f}× "
                f"| {r['c_decode_tps']:.1f} | {r['c_decode_vs_llama']:.2f}× |"
                for r in result["rows"]
            ],
            "",
            f"llama.cpp decodes {llama['decode_tps']:.1f} tokens/s at one sequence (by difference of "
            f"{result['new_tokens']} and 1 tokens); its cold prompt pass takes {llama['prefill_s']:.2f} s.",
        ]
    cont = result["continue"]
    bound = result["bound_steps_per_s"]
    achieved = ", ".join(
        f"N={r['n']} {r['c_steps_per_s']:.1f} steps/s ({100 * r['c_share_of_bound']:.0f}%)"
        for r in result["rows"]
    )
    lines += [
        "",
        f"Memory read bandwidth measured: {result['bandwidth_gbs']:.1f} GB/s. (c) reads "
        f"{result['step_weight_bytes'] / 1e6:.0f} MB of weights per decode step, so the fastest possible "
        f"step is {1000 / bound:.1f} ms ({bound:.1f} steps/s); achieved: {achieved}.",
        f"`ambient continue`-like (configured sampling, {result['new_tokens']} tokens): "
        f"-n 1 {cont['n1_s']:.2f} s, -n 8 {cont['n8_s']:.2f} s ({cont['ratio']:.2f}× the -n 1 time).",
        f"Peak RSS: {result['peak_rss_local_mb']:.0f} MB after the LocalSampler runs, "
        f"{result['peak_rss_mb']:.0f} MB for the whole run (which also loads the plain transformers model).",
    ]
    return "\n".join(lines) + "\n"
