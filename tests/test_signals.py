"""Per-token signals of the local backend: shapes, ranges, and agreement with plain reference passes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from ambient.sampling import signals
from ambient.sampling.base import PromptRegion, SamplingOptions
from ambient.sampling.local import LocalSampler

MEMORY = "Related fragments from earlier:\n---\nThe lighthouse keeper painted the door blue.\n---\n\n"
SOURCE = "In the morning the keeper walked down to the door, which was"


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path) -> LocalSampler:
    return LocalSampler(tiny_model_path, device="cpu", prefix_cache_mb=64)


def _regions(memory: str, source: str) -> tuple[PromptRegion, ...]:
    return (PromptRegion("memory", 0, len(memory)), PromptRegion("source", len(memory), len(memory + source)))


def _recorded_ids(sampler: LocalSampler) -> tuple[list[list[int]], Any]:
    """Wrap ``_step_view`` so a test can see the ids each step chose."""
    chosen: list[list[int]] = []
    original = sampler._step_view

    def spy(*args: Any) -> Any:
        view = original(*args)
        chosen.append(view.chosen)
        return view

    return chosen, spy


# --------------------------------------------------------------------------- shapes and ranges


def test_tiny_model_signals_have_the_right_shapes_and_ranges(tiny: LocalSampler) -> None:
    prompt = MEMORY + SOURCE
    opts = SamplingOptions(n=3, max_tokens=6, seed=3, signals=True, regions=_regions(MEMORY, SOURCE))
    result = tiny.generate(prompt, opts)
    layers = tiny.model.config.num_hidden_layers
    assert {"entropy", "ease", "attention", "surprise"} <= tiny.capabilities.signals
    for c in result.continuations:
        assert c.tokens
        for t in c.tokens:
            assert t.extra is not None
            vocab = tiny.model.config.vocab_size
            assert 0.0 <= t.extra["entropy"] <= math.log(vocab) + 1e-3
            layer = t.extra["ease_layer"]
            assert layer is None or 1 <= layer <= layers
            assert t.extra["ease"] is None or 0 < t.extra["ease"] <= 1
            shares = t.extra["attention"]
            assert set(shares) == {"memory", "source", "new", "recent"}
            assert all(0.0 <= v <= 1.0 for v in shares.values())
            assert shares["memory"] + shares["source"] + shares["new"] == pytest.approx(1.0, abs=2e-4)
    info = result.meta["signals"]
    assert info["layers"] == layers and info["memory_tokens"] > 0
    assert len(info["branches"]) == 3 and all(isinstance(b["ignores_memory"], bool) for b in info["branches"])
    spans = result.meta["surprise"]
    assert spans and all(s[0] >= len(MEMORY) and s[2] <= 0 for s in spans)  # only the person's text


def test_signals_off_changes_nothing(tiny: LocalSampler) -> None:
    plain = tiny.generate(SOURCE, SamplingOptions(n=3, max_tokens=8, seed=5))
    with_signals = tiny.generate(SOURCE, SamplingOptions(n=3, max_tokens=8, seed=5, signals=True))
    assert [c.text for c in plain.continuations] == [c.text for c in with_signals.continuations]
    for a, b in zip(plain.continuations, with_signals.continuations, strict=True):
        assert [t.logprob for t in a.tokens] == pytest.approx([t.logprob for t in b.tokens], abs=1e-5)
        assert all(t.extra is None for t in a.tokens)
    assert "signals" not in plain.meta and "surprise" not in plain.meta
    assert not tiny.model.base_model.layers[0]._forward_hooks  # hooks are gone after the call


def test_entropy_matches_a_direct_computation() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0]])
    h = signals.entropy(logits)
    assert h[0].item() == pytest.approx(math.log(4))
    assert h[1].item() < 0.01


def test_ease_is_the_first_layer_from_which_the_choice_stays_on_top() -> None:
    # 4 layers, 3 rows, 2 candidates; column 0 is the chosen word for rows 0 and 1, row 2 chose outside top-k
    top0 = torch.tensor([1.0, 0.0])
    top1 = torch.tensor([0.0, 1.0])
    scores = torch.stack(
        [
            torch.stack([top1, top0, top0]),
            torch.stack([top0, top1, top0]),
            torch.stack([top0, top1, top0]),
            torch.stack([top0, top0, top0]),
        ]
    )
    assert signals.ease_layers(scores, torch.tensor([0, 0, -1])) == [2, 4, None]


def test_lens_candidates_find_the_chosen_column() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.5, 0.2]])
    ids, col = signals.lens_candidates(logits, torch.tensor([2]), k=2)
    assert ids.tolist() == [[1, 2]] and col.tolist() == [1]
    _, absent = signals.lens_candidates(logits, torch.tensor([0]), k=2)
    assert absent.tolist() == [-1]


# --------------------------------------------------------------------------- regions


def test_regions_map_to_token_positions(tiny: LocalSampler) -> None:
    prompt = MEMORY + SOURCE
    enc = tiny._encode(prompt, 8)
    kinds = signals.position_kinds(enc.offsets, enc.special, _regions(MEMORY, SOURCE))
    assert kinds[0] == signals.SINK  # the begin-of-text marker
    memory = [i for i, k in enumerate(kinds) if k == signals.MEMORY]
    source = [i for i, k in enumerate(kinds) if k == signals.SOURCE]
    assert memory == list(range(1, len(memory) + 1)) and source == list(range(memory[-1] + 1, len(kinds)))
    text = tiny.tokenizer.decode(enc.ids[source[0] :])
    assert text.lstrip() == SOURCE.lstrip()  # the source tokens spell the source text
    no_regions = signals.position_kinds(enc.offsets, enc.special, ())
    assert set(no_regions[1:]) == {signals.SOURCE}


def test_a_bad_region_names_the_fix() -> None:
    with pytest.raises(Exception, match="kind must be one of"):
        SamplingOptions(regions=(PromptRegion("notes", 0, 3),)).validate()


# --------------------------------------------------------------------------- attention against eager


def _eager(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()


def _check_attention_against_eager(sampler: LocalSampler, path: Path, prompt: str, regions: Any) -> None:
    chosen, spy = _recorded_ids(sampler)
    sampler._step_view = spy  # type: ignore[method-assign]
    try:
        result = sampler.generate(
            prompt, SamplingOptions(n=2, max_tokens=3, seed=7, signals=True, regions=regions)
        )
    finally:
        del sampler._step_view
    enc = sampler._encode(prompt, 3)
    layer = signals.attention_layer_index(sampler.model.config)
    assert layer is not None
    kinds = signals.position_kinds(enc.offsets, enc.special, regions)
    model = _eager(path)
    for branch in range(2):
        ids = list(enc.ids) + [chosen[s][branch] for s in range(len(result.continuations[branch].tokens) - 1)]
        for step, token in enumerate(result.continuations[branch].tokens):
            seq = ids[: len(enc.ids) + step]
            with torch.inference_mode():
                out = model(torch.tensor([seq]), output_attentions=True)
            probs = out.attentions[layer][:, :, -1, :]  # [1, heads, T]
            full = torch.tensor(kinds + [signals.NEW] * step)
            want = signals.attention_shares(probs, full)[0]
            got = token.extra["attention"] if token.extra else {}
            assert got == pytest.approx(want, abs=2e-3), (branch, step)


def test_attention_shares_match_eager_attention_tiny(tiny: LocalSampler, tiny_model_path: Path) -> None:
    _check_attention_against_eager(tiny, tiny_model_path, MEMORY + SOURCE, _regions(MEMORY, SOURCE))


def test_attention_shares_match_eager_attention_gemma(
    gemma_sampler: LocalSampler, default_model_path: Path
) -> None:
    """Gemma: q-norm, rotary, query_pre_attn_scalar, grouped keys, sliding and full layers."""
    _check_attention_against_eager(
        gemma_sampler, default_model_path, MEMORY + SOURCE, _regions(MEMORY, SOURCE)
    )


# --------------------------------------------------------------------------- surprise


def _plain_logprobs(path: Path, ids: list[int]) -> list[float]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return [float(lp[i - 1, ids[i]]) for i in range(1, len(ids))]


def test_surprise_matches_a_plain_forward_pass_and_is_incremental(
    tiny: LocalSampler, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signals, "SURPRISE_MAX_TOKENS", 1000)  # score every token of the first prompt
    tiny.prefixes.clear()
    first = SOURCE * 3
    grown = first + " and the sea was calm."
    for prompt, reused in ((first, False), (grown, True)):
        result = tiny.generate(prompt, SamplingOptions(n=1, max_tokens=2, seed=0, signals=True))
        assert (result.meta["prefill_reused_tokens"] > 0) is reused
        enc = tiny._encode(prompt, 2)
        want = _plain_logprobs(tiny_model_path, enc.ids)
        spans = result.meta["surprise"]
        assert len(spans) == len(enc.ids) - 1  # every text token after the first, reused ones included
        for (start, end, lp), (o_start, o_end), ref in zip(spans, enc.offsets[1:], want, strict=True):
            assert (start, end) == (o_start, o_end)
            assert lp == pytest.approx(ref, abs=1e-3)


def test_surprise_after_an_echo_comes_from_the_prompt_s_scores(
    tiny: LocalSampler, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app echoing its prompt with logprobs (score_prompt), then sampling from it: the prefix the
    scorer read is reused, and its surprise comes from the scores rather than going missing."""
    monkeypatch.setattr(signals, "SURPRISE_MAX_TOKENS", 1000)
    tiny.prefixes.clear()
    prompt = SOURCE * 4
    tiny.score_prompt(prompt, top_logprobs=1)
    result = tiny.generate(prompt, SamplingOptions(n=1, max_tokens=2, seed=0, signals=True))
    assert result.meta["prefill_reused_tokens"] > 0  # the scorer's cache: the prompt was not read again
    enc = tiny._encode(prompt, 2)
    spans = result.meta["surprise"]
    assert len(spans) == len(enc.ids) - 1
    want = _plain_logprobs(tiny_model_path, enc.ids)
    assert [s[2] for s in spans] == pytest.approx(want, abs=1e-3)


def test_surprise_scores_only_the_end_of_a_long_cold_prompt(
    tiny: LocalSampler, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signals, "SURPRISE_MAX_TOKENS", 10)
    tiny.prefixes.clear()
    prompt = SOURCE * 2
    result = tiny.generate(prompt, SamplingOptions(n=1, max_tokens=1, seed=0, signals=True))
    enc = tiny._encode(prompt, 1)
    spans = result.meta["surprise"]
    assert [tuple(s[:2]) for s in spans] == [tuple(o) for o in enc.offsets[-10:]]
    want = _plain_logprobs(tiny_model_path, enc.ids)[-10:]
    assert [s[2] for s in spans] == pytest.approx(want, abs=1e-3)


# --------------------------------------------------------------------------- the default model


def test_an_obvious_continuation_is_easy_and_a_random_one_is_not(gemma_sampler: LocalSampler) -> None:
    greedy = SamplingOptions(n=1, max_tokens=1, temperature=0, seed=0, signals=True)
    easy = gemma_sampler.generate("one, two, three, four,", greedy).continuations[0].tokens[0]
    hard = gemma_sampler.generate("xq7 Zr kpl 9vW mmq", greedy).continuations[0].tokens[0]
    assert easy.text.strip() == "five"
    assert easy.logprob is not None and hard.logprob is not None
    assert math.exp(easy.logprob) > 0.5 > math.exp(hard.logprob)
    assert easy.extra and hard.extra
    assert easy.extra["entropy"] < hard.extra["entropy"]
    assert easy.extra["ease_layer"] is not None and hard.extra["ease_layer"] is not None
    assert easy.extra["ease_layer"] + 3 <= hard.extra["ease_layer"]  # settled clearly earlier
