"""``ambient bench tune``: does a personal adapter learn a person's taste, and does it keep the range?

The person is simulated (:mod:`ambient.bench.taste`: they pick the branch naming the most
everyday objects); their picks are the committed test data, real offers of the default model
on the Loom fixture's texts (``tests/data/picks.jsonl`` in a checkout, made by
``tests/data/make_picks.py``). The adapter is trained as ``ambient tune`` trains one (the
settings of ``[tune]``) in a temporary home, so the person's own adapters are never touched.

* **held-out picks** (the last 20% of pairs by time, never trained on): the share of pairs where
  the model gives the chosen continuation a higher log-likelihood per token than the rejected one,
  base vs personal, and the mean log-likelihood gain per token on the chosen ones;
* **range kept**, on prompts it never saw (offers of the held-out period, picked or not): N
  branches by the base model and N by the adapter, same seeds: per-token entropy, and diversity
  (mean pairwise cosine distance of the branches' MiniLM embeddings);
* **taste**: the share of those branches the person would like (naming an object), base vs personal;
* training time, pairs and pairs per second;
* **offers while it trains**: the training runs as ``ambient tune`` runs it for the daemon, in a
  process of its own at the lowest priority (:mod:`ambient.tuning.background`), while this
  process, holding the sampler as the daemon does, makes an offer every ``OFFER_EVERY_S``
  seconds (a person writing): the time to an offer's first token and to its end, against the
  same offers with nothing training.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ambient import adapters, models
from ambient.bench import taste
from ambient.bench.measure import peak_rss_mb
from ambient.errors import InvalidInput
from ambient.tuning.data import Choice, split_by_time, take_pairs

LONG = True  # minutes of training: not part of `ambient bench all`
DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "picks.jsonl"
HOLDOUT = 0.2
OFFER_EVERY_S = 10.0  # an offer this often while the adapter trains
OFFER_N, OFFER_TOKENS = 4, 32
QUIET_OFFERS = 3


def load_offers(path: Path = DATA) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InvalidInput(
            f"the tuning benchmark reads the simulated person's picks at {path}: run it from a checkout "
            "of ambient (tests/data/picks.jsonl)"
        )
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sorted(records, key=lambda r: r["offer"])


def choices_of(records: list[dict[str, Any]]) -> list[Choice]:
    """The person's picks (their rule applied afresh) as choices, in the order they saw the offers."""
    out = []
    for r in records:
        pick = taste.choose(r["continuations"])
        if pick is None:
            continue
        chosen = r["continuations"][pick]
        rejected = tuple(
            t for i, t in enumerate(r["continuations"]) if i != pick and t.strip() != chosen.strip()
        )
        out.append(Choice(f"offer-{r['offer']}", r["prompt"], chosen, rejected, "notes", float(r["offer"])))
    return out


def run(config: Any, *, quick: bool = False) -> dict[str, Any]:
    """Train on the older picks, measure on the newer ones; see the module docstring."""
    from ambient.memory import get_embedder
    from ambient.sampling.local import LocalSampler
    from ambient.tuning import range as range_check

    records = load_offers()
    choices = choices_of(records)
    train, held = split_by_time(choices, HOLDOUT)
    if quick:
        train, held = take_pairs(train, 40), take_pairs(held, 40)
    first_held = held[0].created_at if held else float("inf")
    unseen = [r["prompt"] for r in records if r["offer"] >= first_held]
    step = max(1, len(unseen) // (2 if quick else 8))
    prompts = unseen[::step][: 2 if quick else 8]
    n = 4 if quick else 6
    with tempfile.TemporaryDirectory(prefix="ambient-bench-tune-") as tmp:
        home = Path(tmp)
        model_path = models.resolve_model_path(config)  # the person's prepared copy, not a new one
        bench_config = dataclasses.replace(
            config, home=home, model=dataclasses.replace(config.model, path=str(model_path), adapter="none")
        )
        sampler = LocalSampler(model_path, device="cpu", threads=config.model.threads, prefix_cache_mb=0)
        try:
            quiet = [_offer(sampler, unseen[i % len(unseen)], i) for i in range(QUIET_OFFERS)]
            t0 = time.perf_counter()
            tuned, during = _train_while_offering(sampler, bench_config, train, held, unseen)
            tune_s = time.perf_counter() - t0
            sampler.use_adapter(Path(tuned["path"]))
            assert sampler.adapter is not None, sampler.adapter_problem
            figures = range_check.measure(
                sampler,
                prompts,
                get_embedder(config).embed,
                n=n,
                max_tokens=28,
                temperature=config.sampling.temperature or 1.0,
                seed=config.tune.seed,
            )
        finally:
            sampler.close()
    manifest = tuned["manifest"]
    first_offers = (figures["texts_base"][0], figures["texts_personal"][0])
    base_texts = [t for offer in figures.pop("texts_base") for t in offer]
    personal_texts = [t for offer in figures.pop("texts_personal") for t in offer]
    evaluation = {**manifest["evaluation"], **figures}
    active, status = adapters.verdict(
        evaluation, config.tune.max_diversity_drop, config.tune.max_likelihood_loss
    )
    return {
        "model": manifest["base_model"]["name"],
        "quick": quick,
        "settings": manifest["settings"],
        "offers": len(records),
        "picks": len(choices),
        "train_pairs": evaluation["train_pairs"],
        "held_out_pairs": evaluation["held_out_pairs"],
        "tune_s": round(tune_s, 1),
        "threads": config.model.threads or os.cpu_count(),
        "evaluation": evaluation,
        "taste_base": round(sum(map(taste.satisfies, base_texts)) / max(1, len(base_texts)), 4),
        "taste_personal": round(sum(map(taste.satisfies, personal_texts)) / max(1, len(personal_texts)), 4),
        "branches": len(base_texts),
        "n": n,
        "would_activate": active,
        "max_diversity_drop": config.tune.max_diversity_drop,
        "status": status,
        "adapter_bytes": manifest.get("adapter_bytes"),
        "offers_quiet": quiet,
        "offers_training": during,
        "example": {"prompt_end": prompts[0][-200:], "base": first_offers[0], "personal": first_offers[1]},
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_training_mb": tuned["peak_rss_mb"],
        "load": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def _tune_child(
    config: Any, train: list[Choice], held: list[Choice], *, cancel: threading.Event
) -> dict[str, Any]:
    """In the tuning process: train as ``ambient tune`` does; where it wrote the adapter, its manifest."""
    from ambient.tuning.tune import tune_on

    outcome = tune_on(config, train, held, range_prompts=[], cancel=cancel)
    return {"path": str(outcome.path), "manifest": outcome.manifest, "peak_rss_mb": peak_rss_mb()}


def _train_while_offering(
    sampler: Any, config: Any, train: list[Choice], held: list[Choice], prompts: list[str]
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Train in the background process while making an offer every ``OFFER_EVERY_S`` seconds."""
    from ambient.tuning import background

    answer: dict[str, Any] = {}

    def train_it() -> None:
        try:
            answer["result"] = background.run(_tune_child, config, train, held)
        except BaseException as exc:  # raised again in the caller
            answer["error"] = exc

    worker = threading.Thread(target=train_it, name="bench-tune")
    worker.start()
    offers: list[dict[str, float]] = []
    while worker.is_alive():
        started = time.monotonic()
        offers.append(_offer(sampler, prompts[len(offers) % len(prompts)], 100 + len(offers)))
        worker.join(max(0.0, OFFER_EVERY_S - (time.monotonic() - started)))
    if "error" in answer:
        raise answer["error"]
    return answer["result"], offers


def _offer(sampler: Any, prompt: str, seed: int) -> dict[str, float]:
    """One offer as the daemon makes it: seconds to its first token and to its end."""
    from ambient.sampling.base import SamplingOptions

    first: list[float] = []
    t0 = time.perf_counter()

    def on_token(_branch: int, _token: Any) -> None:
        if not first:
            first.append(time.perf_counter() - t0)

    options = SamplingOptions(n=OFFER_N, max_tokens=OFFER_TOKENS, temperature=1.0, seed=seed)
    sampler.generate(prompt, options, on_token)
    total = time.perf_counter() - t0
    return {"first_token_s": round(first[0] if first else total, 3), "total_s": round(total, 3)}


def _inline(text: str) -> str:
    """A branch's text on one table line."""
    return text.replace("\n", "⏎").replace("|", "/").replace("`", "'").strip()


def _offers_line(result: dict[str, Any]) -> str:
    quiet, during = result["offers_quiet"], result["offers_training"]

    def median(offers: list[dict[str, float]], key: str) -> float:
        return statistics.median(o[key] for o in offers)

    return (
        f"Offers while it trained (the training in its own process at the lowest priority, as the daemon "
        f"runs it; one offer of {OFFER_N} branches x {OFFER_TOKENS} tokens every {OFFER_EVERY_S:.0f} s, "
        f"{len(during)} offers): first token after {median(during, 'first_token_s'):.2f} s, the whole offer "
        f"{median(during, 'total_s'):.2f} s (medians; slowest {max(o['total_s'] for o in during):.2f} s), "
        f"against {median(quiet, 'first_token_s'):.2f} s and {median(quiet, 'total_s'):.2f} s with nothing "
        f"training ({len(quiet)} offers). The training process peaked at "
        f"{result['peak_rss_training_mb']:.0f} MB RSS."
    )


def _objective(settings: dict[str, Any]) -> str:
    if settings["objective"] == "rpo":
        return f"rpo (beta {settings['beta']}, nll_weight {settings.get('nll_weight', 1.0)})"
    return f"{settings['objective']} (beta {settings['beta']})"


def to_markdown(result: dict[str, Any]) -> str:
    ev, s = result["evaluation"], result["settings"]
    passes = ev.get("passes", s["epochs"])
    drop = None
    if ev.get("diversity_base"):
        drop = (ev["diversity_base"] - ev["diversity_personal"]) / ev["diversity_base"]
    lines = [
        "## Tuning: a personal adapter from a simulated person's picks",
        "",
        f"`ambient bench tune`{' --quick' if result['quick'] else ''}: {result['model']}, the simulated "
        f"person of `ambient/bench/taste.py` (they pick the branch naming the most everyday objects) on "
        f"{result['offers']} real offers of the default model (tests/data/picks.jsonl; {result['picks']} "
        f"picked). Trained on the older {result['train_pairs']} pairs, measured on the newest "
        f"{result['held_out_pairs']} (never trained on). LoRA rank {s['rank']}, alpha {s['alpha']}, "
        f"objective {_objective(s)}, learning rate {s['learning_rate']}, "
        f"{passes} pass(es) over the picks, the last {s['context_tokens']} prompt tokens, "
        f"{result['threads']} thread(s), CPU.",
        "",
        "| | base | personal |",
        "|---|---|---|",
        f"| held-out pairs where the chosen branch is likelier per token | {ev['accuracy_base']:.0%} "
        f"| {ev['accuracy_personal']:.0%} |",
        "| log-likelihood per token of the chosen branches (gain) | "
        f"| {ev['chosen_gain_per_token']:+.3f} nats |",
        f"| entropy per token of its own offers (unseen prompts) | {ev['entropy_base']:.3f} "
        f"| {ev['entropy_personal']:.3f} |",
        f"| diversity of its offers (mean pairwise cosine distance) | {ev['diversity_base']:.3f} "
        f"| {ev['diversity_personal']:.3f} |",
        f"| its branches the person likes ({result['branches']} each, unseen prompts) "
        f"| {result['taste_base']:.0%} | {result['taste_personal']:.0%} |",
        "",
        f"Training: {ev['train_s']:.0f} s for {result['train_pairs']} pairs x {passes} pass(es) "
        f"({ev['pairs_per_s']:.2f} pairs/s); held-out evaluation {ev['eval_s']:.0f} s; the whole "
        f"`tune` (load, train, evaluate, save) {result['tune_s']:.0f} s, offers going on. "
        f"Peak RSS of the sampling process {result['peak_rss_mb']:.0f} MB. "
        f"The adapter: {result['adapter_bytes'] / 2**20:.1f} MB; "
        f"a decode step of {result['n']} branches takes {ev['decode_ms_per_step_base']:.0f} ms all base, "
        f"{ev['decode_ms_per_step_personal']:.0f} ms all personal (signals on; the adapter's low-rank path "
        "runs beside the packed layers).",
        _offers_line(result),
        f"Diversity {'fell' if drop and drop > 0 else 'rose'} by {abs(drop or 0):.1%} "
        f"(more than {result['max_diversity_drop']:.0%} lost keeps an adapter inactive): "
        f"{'it would be activated' if result['would_activate'] else result['status']}.",
        f"Load average at the end (1, 5, 15 min): {', '.join(str(x) for x in result['load'])} "
        "(2 cores shared with other work).",
    ]
    example = result.get("example")
    if example:
        lines += [
            "",
            f"The first unseen prompt ends ...`{_inline(example['prompt_end'][-80:])}`; "
            "its first three branches:",
            "",
            "| base | personal |",
            "|---|---|",
            *(
                f"| `{_inline(b)}` | `{_inline(p)}` |"
                for b, p in list(zip(example["base"], example["personal"], strict=True))[:3]
            ),
        ]
    return "\n".join(lines) + "\n"
