"""Tuning's parts on the tiny model and a real store: the choices, the split, the scoring, the loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ambient.store import TreeStore
from ambient.tuning.data import Choice, collect, split_by_time, take_pairs
from ambient.tuning.scoring import encode, read_prompt, score
from ambient.tuning.trainer import dpo_loss
from tests.adapter_helpers import lora_model
from tests.tuning_data import fill_store, picked


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path):
    from ambient.sampling.local.loading import load_plain

    return load_plain(tiny_model_path)


CHOICE = Choice("o", "The keeper climbed the stairs and", " lit the lamp", (" slept", " went home again", ""))


def test_encode_cuts_the_prompt_and_drops_empty_branches(tiny) -> None:
    tokenizer, _ = tiny
    enc = encode(tokenizer, CHOICE, 4)
    assert enc is not None and len(enc.prompt) == 4
    full = tokenizer(CHOICE.prompt)["input_ids"]
    assert enc.prompt[1:] == full[-3:]  # the begin-of-text marker, then the prompt's last tokens
    assert len(enc.continuations) == 3 and enc.pairs == 2  # the empty rejected branch is left out
    assert encode(tokenizer, Choice("o", "x y", " a", ("",)), 8) is None


def test_scores_are_a_plain_forward_pass(tiny) -> None:
    tokenizer, model = tiny
    enc = encode(tokenizer, CHOICE, 64)
    assert enc is not None
    scores = score(model, enc, read_prompt(model, enc))
    for cont, got, count in zip(enc.continuations, scores.sums, scores.counts, strict=True):
        with torch.no_grad():
            logprobs = model(torch.tensor([enc.prompt + cont])).logits[0].log_softmax(-1)
        want = sum(float(logprobs[len(enc.prompt) - 1 + i, t]) for i, t in enumerate(cont))
        assert float(got) == pytest.approx(want, abs=1e-4) and int(count) == len(cont)


def test_the_adapter_changes_all_but_the_first_token(tiny_model_path: Path, tiny) -> None:
    tokenizer, _ = tiny
    peft_model = lora_model(tiny_model_path, rank=2)
    enc = encode(tokenizer, CHOICE, 64)
    assert enc is not None
    prompt = read_prompt(peft_model, enc)
    base = score(peft_model, enc, prompt, adapter=False)
    personal = score(peft_model, enc, prompt)
    words = [
        w
        for w in (" the", " a", "e", "a", "t", "s")
        if len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1
    ]
    one = encode(tokenizer, Choice("o", CHOICE.prompt, words[0], (words[1],)), 64)
    assert one is not None and [len(c) for c in one.continuations] == [1, 1]
    p1 = read_prompt(peft_model, one)
    torch.testing.assert_close(
        score(peft_model, one, p1).sums, score(peft_model, one, p1, adapter=False).sums
    )
    assert not torch.allclose(base.sums, personal.sums)
    # the loss is differentiable through the adapter only, and zero-margin at the start is log 2
    policy = score(peft_model, enc, prompt)
    assert float(dpo_loss(base, base, 0.1, "dpo")) == pytest.approx(0.6931, abs=1e-4)
    assert float(dpo_loss(policy, base, 0.1, "dpo-mean")) != pytest.approx(0.6931, abs=1e-6)


def test_choices_from_the_store_by_place_and_time(tmp_path: Path) -> None:
    store = TreeStore(tmp_path / "s.sqlite3")
    try:
        records = picked()[:6]
        fill_store(store, records[:3], source="note:a.md", scope="notes")
        fill_store(store, records[3:5], source="discord:9/1", scope="discord:9")
        fill_store(store, records[5:], source="cli", scope="cli")
        picks = collect(store)
        assert [c.scope for c in picks.choices] == ["notes", "notes", "notes", "cli"]
        assert picks.left_out == {"discord:9": sum(len(r["continuations"]) - 1 for r in records[3:5])}
        assert picks.pairs == sum(c.pairs for c in picks.choices) == 20
        opened = collect(store, ["discord:9"])
        assert [c.scope for c in opened.choices] == ["notes"] * 3 + ["discord:9"] * 2 + ["cli"]
        assert opened.scopes() == {"notes": 15, "discord:9": 10, "cli": 5}
        assert [c.created_at for c in opened.choices] == sorted(c.created_at for c in opened.choices)
        train, held = split_by_time(opened.choices, 0.2)
        assert held == opened.choices[-2:] and train == opened.choices[:-2]  # at least 20% of 30 pairs
        cut = take_pairs(opened.choices, 7)
        assert [c.pairs for c in cut] == [5, 2]
    finally:
        store.close()
