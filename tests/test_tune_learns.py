"""Tuning learns a person's taste: the real default model, 40 real pairs, held-out picks.

The picks are the committed test data (tests/data/picks.jsonl): real offers of the default model
and a simulated person's choices among them (ambient/bench/taste.py). The adapter is trained by
``ambient tune``'s own trainer with its default settings on the 40 oldest pairs, and measured on
the 40 pairs the person made next, which it never saw: on how many of them it gives the person's
choice a higher log-likelihood per token than the branch they passed over, against the base model.
(``ambient bench tune`` measures on the newest 20% instead, after training on all the rest.)
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ambient.config import Config
from ambient.sampling.local.loading import load_plain
from ambient.tuning.data import take_pairs
from ambient.tuning.trainer import train
from ambient.tuning.tune import settings_of
from tests.tuning_data import choices

TRAIN_PAIRS = 40
HELD_OUT_PAIRS = 40


@pytest.mark.timeout(420)
def test_forty_pairs_raise_held_out_accuracy(default_model_path: Path, tmp_path: Path) -> None:
    picks = choices()
    train_on = take_pairs(picks, TRAIN_PAIRS)
    held_out = take_pairs(picks[len(train_on) :], HELD_OUT_PAIRS)  # the picks that came next
    assert sum(c.pairs for c in train_on) == TRAIN_PAIRS
    t0 = time.perf_counter()
    tokenizer, model = load_plain(default_model_path)
    trained = train(tokenizer, model, train_on, held_out, settings_of(Config(home=tmp_path)))  # [tune]
    took = time.perf_counter() - t0
    m = trained.metrics
    summary = (
        f"held-out accuracy {m['accuracy_base']} -> {m['accuracy_personal']} on {m['held_out_pairs']} pairs; "
        f"train {m['train_s']} s, evaluation {m['eval_s']} s, all {took:.0f} s"
    )
    print(summary)
    assert m["train_pairs"] == TRAIN_PAIRS and m["held_out_pairs"] >= HELD_OUT_PAIRS, summary
    assert m["accuracy_personal"] >= m["accuracy_base"] + 0.2, summary
