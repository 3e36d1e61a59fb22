"""One tuning run, start to end: the picks, training, evaluation, the range check, a new adapter.

Used by ``ambient tune``, by the daemon when it tunes while idle, and by ``ambient bench tune``.
Nothing is written until the adapter is complete (:func:`ambient.adapters.write`); an
interruption (Ctrl-C, or ``cancel``) leaves the adapters as they were.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ambient import __version__, adapters, models
from ambient.config import Config
from ambient.errors import InvalidInput
from ambient.store import TreeStore
from ambient.tuning.data import Choice, Picks, collect
from ambient.tuning.trainer import Progress, Trained, TrainSettings, train


class TooFewPicks(InvalidInput):
    """Not enough preference pairs to tune on."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A new adapter: where it is, its manifest, and whether it is the active one now."""

    path: Path
    manifest: dict[str, Any]

    @property
    def active(self) -> bool:
        return bool(self.manifest.get("active"))


def settings_of(config: Config) -> TrainSettings:
    t = config.tune
    return TrainSettings(
        rank=t.rank,
        alpha=t.alpha,
        learning_rate=t.learning_rate,
        beta=t.beta,
        objective=t.objective,
        nll_weight=t.nll_weight,
        context_tokens=t.context_tokens,
        epochs=t.epochs,
        min_steps=t.min_steps,
        seed=t.seed,
    )


def gather(config: Config, store: TreeStore) -> Picks:
    """The picks tuning may learn from; :class:`TooFewPicks` (one line) when there are not enough."""
    picks = collect(store, config.tune.shared_places)
    need = config.tune.min_pairs
    if picks.pairs < need:
        left = sum(picks.left_out.values())
        aside = f" ({left} more from shared places not opted in: tune.shared_places)" if left else ""
        raise TooFewPicks(
            f"{picks.pairs} preference pair(s) from your picks so far{aside}; tuning needs at least {need}: "
            "pick among more offers (each pick against the branches you passed over is a pair)"
        )
    return picks


def tune(
    config: Config,
    store: TreeStore,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    activate: bool = True,
) -> Outcome:
    """Train a new personal adapter from the pick log and keep it under ``AMBIENT_HOME/adapters``.

    It becomes the active adapter when ``activate`` and its evaluation allow
    (:func:`ambient.adapters.verdict`); its manifest's ``status`` says which.
    """
    if config.model.backend != "local":
        raise InvalidInput(
            f"ambient tune trains the local model, but model.backend is {config.model.backend!r}: "
            'set model.backend = "local" to tune and use a personal adapter'
        )
    picks = gather(config, store)
    train_choices, held_out = picks.split(config.tune.holdout)
    return tune_on(
        config, train_choices, held_out, picks, progress=progress, cancel=cancel, activate=activate
    )


def tune_home(config: Config, *, cancel: threading.Event | None = None) -> dict[str, Any]:
    """:func:`tune` on the pick log in ``config``'s home, with a store of its own (for the process
    :mod:`ambient.tuning.background` starts); the new adapter's manifest."""
    with TreeStore(config.db_path) as store:
        return tune(config, store, cancel=cancel).manifest


def tune_on(
    config: Config,
    train_choices: Sequence[Choice],
    held_out: Sequence[Choice],
    picks: Picks | None = None,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    activate: bool = True,
    range_prompts: Sequence[str] | None = None,
) -> Outcome:
    """:func:`tune` on given choices (the benchmark's and the tests' way in)."""
    import torch

    from ambient.sampling.local.loading import load_plain

    settings = settings_of(config)
    model_path = models.resolve_model_path(config)
    torch.set_num_threads(config.model.threads or os.cpu_count() or 1)  # as the sampler does
    t0 = time.perf_counter()
    tokenizer, model = load_plain(model_path)
    trained = train(tokenizer, model, train_choices, held_out, settings, progress=progress, cancel=cancel)
    del model  # the trained (peft) model holds it; freed with it before the range check
    prompts = list(range_prompts or ()) if range_prompts is not None else _range_prompts(config, held_out)
    home = config.home
    adapters.clean_temporary(home)
    name = adapters.next_name(home)
    manifest = _manifest(config, name, model_path, settings, trained, train_choices, held_out, picks)

    def fill(tmp: Path) -> dict[str, Any]:
        trained.model.save_pretrained(str(tmp))
        _release(trained)
        manifest["adapter_bytes"] = (tmp / adapters.WEIGHTS).stat().st_size
        adapters.write_manifest(tmp, manifest)  # the sampler reads it to check the base model
        evaluation = dict(manifest["evaluation"])
        if prompts:
            evaluation.update(_range(config, model_path, tmp, prompts, progress, cancel))
        ok, status = adapters.verdict(
            evaluation, config.tune.max_diversity_drop, config.tune.max_likelihood_loss
        )
        if not activate:
            ok, status = False, "not activated (asked not to)"
        evaluation["total_s"] = round(time.perf_counter() - t0, 2)
        return {**manifest, "evaluation": evaluation, "active": ok, "status": status}

    path, written = adapters.write(home, name, fill)
    return Outcome(path, written)


def _release(trained: Trained) -> None:
    """Free the float32 training model before the sampler loads (they would not both fit a small machine)."""
    trained.model = None
    gc.collect()


def _range_prompts(config: Config, held_out: Sequence[Choice]) -> list[str]:
    """Prompts for the range check: the newest distinct held-out ones (prompts it never learnt from)."""
    out: list[str] = []
    for c in reversed(held_out):
        if len(out) >= config.tune.range_prompts:
            break
        if c.prompt not in out:
            out.append(c.prompt)
    return out


def _range(
    config: Config,
    model_path: Path,
    adapter: Path,
    prompts: Sequence[str],
    progress: Progress | None,
    cancel: threading.Event | None,
) -> dict[str, Any]:
    """Entropy and diversity, base vs personal, sampled by the sampler as ambient runs it."""
    from ambient.memory import get_embedder
    from ambient.sampling.local import LocalSampler
    from ambient.tuning import range as range_check
    from ambient.tuning.trainer import Interrupted

    if cancel is not None and cancel.is_set():
        raise Interrupted("tuning was interrupted")
    if progress is not None:
        progress(0, 1, "range")
    sampler = LocalSampler(model_path, device="cpu", threads=config.model.threads, prefix_cache_mb=0)
    try:
        sampler.use_adapter(adapter)
        if sampler.adapter is None:
            raise InvalidInput(f"the new adapter cannot be used: {sampler.adapter_problem}")
        embed = get_embedder(config).embed
        figures = range_check.measure(
            sampler,
            prompts,
            embed,
            n=max(2, min(config.sampling.n, 8)),
            max_tokens=min(config.sampling.max_tokens, 32),
            temperature=config.sampling.temperature or 1.0,
            seed=config.tune.seed,
        )
    finally:
        sampler.close()
    if progress is not None:
        progress(1, 1, "range")
    figures.pop("texts_base", None)
    figures.pop("texts_personal", None)
    return figures


def _manifest(
    config: Config,
    name: str,
    model_path: Path,
    settings: TrainSettings,
    trained: Trained,
    train_choices: Sequence[Choice],
    held_out: Sequence[Choice],
    picks: Picks | None,
) -> dict[str, Any]:
    seen = [*train_choices, *held_out]
    scopes: dict[str, int] = {}
    for c in seen:
        scopes[c.scope] = scopes.get(c.scope, 0) + c.pairs
    shared = sorted(s for s in scopes if adapters.is_shared(s))
    return {
        "format": adapters.FORMAT,
        "name": name,
        "created_at": time.time(),
        "ambient": __version__,
        "base_model": {"name": model_path.name, "fingerprint": adapters.model_fingerprint(model_path)},
        "picks": {
            "pairs": sum(c.pairs for c in seen),
            "train_pairs": sum(c.pairs for c in train_choices),
            "held_out_pairs": sum(c.pairs for c in held_out),
            "choices": len(seen),
            "scopes": scopes,
            "shared_places": shared,  # places other people see, whose picks it learnt from (opted in)
            "left_out": dict(picks.left_out) if picks is not None else {},
            "offers": sorted({c.offer_id for c in seen}),
            "last_pick_at": max((c.created_at for c in seen), default=None),
        },
        "settings": settings.as_dict(),
        "evaluation": dict(trained.metrics),
    }


def new_picks(config: Config, store: TreeStore) -> int:
    """Picks (chosen continuations) tuning may use that the newest adapter has not learnt from."""
    seen: set[str] = set()
    known = adapters.names(config.home)
    if known:
        with contextlib.suppress(adapters.AdapterError):
            manifest = adapters.read_manifest(adapters.folder(config.home) / known[-1])
            seen = set(manifest.get("picks", {}).get("offers", []))
    picks = collect(store, config.tune.shared_places)
    return sum(1 for c in picks.choices if c.offer_id not in seen)
