"""Prompt-prefix key/value cache reuse: exact results, sliding windows, budget, the sampler's use of it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from ambient.sampling.base import SamplingOptions
from ambient.sampling.local import LocalSampler, new_cache
from ambient.sampling.prefix_cache import MIN_PREFIX, PrefixCache, cache_bytes

NOTE = "The gardener kept a notebook of every winter, and of what the frost took. "


def greedy(n: int = 2, max_tokens: int = 6) -> SamplingOptions:
    return SamplingOptions(n=n, max_tokens=max_tokens, temperature=0, seed=1, top_logprobs=3)


def same_result(a: object, b: object) -> None:
    ca, cb = a.continuations, b.continuations  # type: ignore[attr-defined]
    assert [c.text for c in ca] == [c.text for c in cb]
    for x, y in zip(ca, cb, strict=True):
        for s, t in zip(x.tokens, y.tokens, strict=True):
            assert s.logprob == pytest.approx(t.logprob, abs=1e-3)


# ------------------------------------------------------------------ the cache itself


def small_gemma() -> torch.nn.Module:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=6,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"], max_position_embeddings=256,
    )
    torch.manual_seed(0)
    return Gemma3ForCausalLM(config).eval()


def test_a_stored_prefix_continues_exactly_past_the_sliding_window() -> None:
    model = small_gemma()
    ids = torch.randint(0, 97, (1, 60))
    prefixes = PrefixCache(2**24, margin=8)
    with torch.inference_mode():
        whole = model(ids, cache=new_cache(model.config)).logits[:, -1]
        first = new_cache(model.config)
        model(ids[:, :40], cache=first)  # 40 tokens: far past the window of 6
        prefixes.store(ids[0, :40].tolist(), first)
        model(ids[:, 40:50], cache=first)  # the original goes on; the stored copy must not change
        reuse = prefixes.lookup(ids[0].tolist())
        assert reuse is not None and reuse.tokens == 40
        resumed = model(ids[:, 40:], cache=reuse.cache).logits[:, -1]
        again = prefixes.lookup(ids[0].tolist())  # a second copy is as good as the first
        assert again is not None
        resumed_again = model(ids[:, 40:], cache=again.cache).logits[:, -1]
    torch.testing.assert_close(resumed, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(resumed_again, whole, atol=1e-5, rtol=1e-5)


def test_lookup_takes_the_longest_matching_prefix_and_leaves_a_token_to_run() -> None:
    model = small_gemma()
    prefixes = PrefixCache(2**24)
    with torch.inference_mode():
        for length in (40, 50):
            cache = new_cache(model.config)
            model(torch.arange(length).unsqueeze(0), cache=cache)
            prefixes.store(list(range(length)), cache)
    assert len(prefixes) == 1  # the 40-token entry was superseded by the 50-token one that extends it
    hit = prefixes.lookup(list(range(60)))
    assert hit is not None and hit.tokens == 50
    assert prefixes.lookup(list(range(50))) is None  # nothing would be left to run
    assert prefixes.lookup([*range(30), 99, *range(31, 60)]) is None  # differs inside the prefix
    assert (prefixes.hits, prefixes.misses) == (1, 2)


def test_budget_evicts_the_least_recently_used() -> None:
    model = small_gemma()
    caches = []
    with torch.inference_mode():
        for start in (0, 100, 200):
            cache = new_cache(model.config)
            model(torch.arange(start % 97, start % 97 + 40).unsqueeze(0) % 97, cache=cache)
            caches.append(([(start + i) % 97 for i in range(40)], cache))
    one = cache_bytes(copy.deepcopy(caches[0][1]))  # what an entry holds: the positions kept, no spare room
    prefixes = PrefixCache(int(one * 2.5))
    for ids, cache in caches:
        prefixes.store(ids, cache)
    assert len(prefixes) == 2 and prefixes.nbytes <= prefixes.budget_bytes
    assert prefixes.lookup([*caches[0][0], 1]) is None  # the oldest went
    assert prefixes.lookup([*caches[2][0], 1]) is not None
    off = PrefixCache(0)
    off.store(caches[0][0], caches[0][1])
    assert len(off) == 0 and off.lookup([*caches[0][0], 1]) is None


def test_cut_point_keeps_a_margin_and_skips_short_prompts() -> None:
    prefixes = PrefixCache(2**20, margin=8)
    assert prefixes.cut_point(MIN_PREFIX + 8, 0) == MIN_PREFIX
    assert prefixes.cut_point(MIN_PREFIX + 7, 0) is None
    assert prefixes.cut_point(200, 192) is None  # the reused entry already ends at the cut
    assert PrefixCache(0).cut_point(500, 0) is None


# ------------------------------------------------------------------ the sampler


@pytest.fixture(scope="module")
def tiny_pair(tiny_model_path: Path) -> tuple[LocalSampler, LocalSampler]:
    return LocalSampler(tiny_model_path, device="cpu"), LocalSampler(
        tiny_model_path, device="cpu", prefix_cache_mb=0
    )


def test_a_grown_prompt_reads_only_its_new_tokens(tiny_pair: tuple[LocalSampler, LocalSampler]) -> None:
    cached, plain = tiny_pair
    note = NOTE * 4
    first = cached.generate(note, greedy())
    assert first.meta["prefill_reused_tokens"] == 0
    grown = note + "In March the seeds woke"
    second = cached.generate(grown, greedy())
    assert second.meta["prefill_reused_tokens"] == first.prompt_tokens - cached.prefixes.margin
    reference = plain.generate(grown, greedy())
    assert reference.meta["prefill_reused_tokens"] == 0
    same_result(second, reference)


def test_an_edit_inside_the_prompt_is_not_served_stale(tiny_pair: tuple[LocalSampler, LocalSampler]) -> None:
    cached, plain = tiny_pair
    note = NOTE * 4
    cached.generate(note + "Spring came late.", greedy())
    edited = note.replace("frost", "snow", 1) + "Spring came late. Then"
    result = cached.generate(edited, greedy())
    changed_at = len(cached.tokenizer(note.split("frost")[0])["input_ids"])
    assert result.meta["prefill_reused_tokens"] < changed_at
    same_result(result, plain.generate(edited, greedy()))


def test_default_model_reuse_is_exact_past_its_sliding_window(gemma_sampler: LocalSampler) -> None:
    note = NOTE * 36  # about 610 tokens: past Gemma's 512-token sliding window
    gemma_sampler.generate(note, greedy(n=2, max_tokens=3))
    grown = note + "In March the seeds woke up"
    reused = gemma_sampler.generate(grown, greedy(n=2, max_tokens=3))
    assert reused.meta["prefill_reused_tokens"] > 512
    gemma_sampler.prefixes.clear()
    fresh = gemma_sampler.generate(grown, greedy(n=2, max_tokens=3))
    assert fresh.meta["prefill_reused_tokens"] == 0
    same_result(reused, fresh)
