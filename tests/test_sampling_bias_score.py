"""The local sampler's logit bias and prompt scoring (what /v1/completions' logit_bias and echo use).

Checked against a plain forward pass of the same model (the tiny one), plus one check on the
real default model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ambient.errors import InvalidInput
from ambient.sampling.base import SamplingOptions
from ambient.sampling.local import LocalSampler
from ambient.sampling.local import sampler as sampler_module
from ambient.sampling.openai_wire import completion_body

PROMPT = "The river runs past the old mill and under the stone bridge."


@pytest.fixture(scope="module")
def sampler(tiny_model_path: Path) -> LocalSampler:
    return LocalSampler(tiny_model_path, device="cpu", prefix_cache_mb=0)


def opts(**kw: object) -> SamplingOptions:
    base: dict[str, object] = {"n": 2, "max_tokens": 4, "temperature": 1.0, "seed": 1, "top_logprobs": 3}
    base.update(kw)
    return SamplingOptions(**base)  # type: ignore[arg-type]


def ids_of(sampler: LocalSampler, text: str) -> list[int]:
    return list(sampler.tokenizer(text, split_special_tokens=True)["input_ids"])


def model_logprobs(sampler: LocalSampler, ids: list[int]) -> torch.Tensor:
    """log-softmax of a plain forward pass: row i is what position i predicts."""
    with torch.inference_mode():
        logits = sampler.model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def word_id(sampler: LocalSampler, text: str) -> int:
    ids = sampler.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, ids
    return int(ids[0])


# ------------------------------------------------------------------ logit bias
def test_a_plus_100_bias_forces_a_word_and_logprobs_stay_the_models(sampler: LocalSampler) -> None:
    forced = word_id(sampler, " the")
    result = sampler.generate(PROMPT, opts(logit_bias={forced: 100.0}))
    expected = model_logprobs(sampler, ids_of(sampler, PROMPT))[-1, forced].item()
    for c in result.continuations:
        assert c.text == " the" * 4
        assert c.tokens[0].logprob == pytest.approx(expected, abs=1e-4)  # the model's own, not biased


def test_a_minus_100_bias_bans_the_greedy_word(sampler: LocalSampler) -> None:
    greedy = sampler.generate(PROMPT, opts(n=1, temperature=0))
    first = greedy.continuations[0].tokens[0].text
    banned = word_id(sampler, first)
    again = sampler.generate(PROMPT, opts(n=1, temperature=0, logit_bias={banned: -100.0}))
    assert again.continuations[0].tokens[0].text != first
    assert (
        sampler.generate(PROMPT, opts(n=1, temperature=0)).continuations[0].text
        == greedy.continuations[0].text
    )


def test_bad_logit_bias_is_refused_naming_it(sampler: LocalSampler) -> None:
    with pytest.raises(InvalidInput, match=f"this model's words are 0..{sampler.vocab_size - 1}"):
        sampler.generate(PROMPT, opts(logit_bias={sampler.vocab_size: 1.0}))
    for bias, message in (
        ({1: 101.0}, "within -100..100"),
        ({-1: 1.0}, "token ids"),
        ({1: float("nan")}, "within"),
    ):
        with pytest.raises(InvalidInput, match=message):
            opts(logit_bias=bias).validate()


def test_logit_bias_is_stored_with_the_offer_and_sent_to_a_server() -> None:
    assert "logit_bias" not in opts().as_dict()
    assert opts(logit_bias={7: -100}).as_dict()["logit_bias"] == {"7": -100.0}
    body = completion_body("m", "p", opts(logit_bias={7: 5.0}), n=2, seed=1)
    assert body["logit_bias"] == {"7": 5.0}
    assert "logit_bias" not in completion_body("m", "p", opts(), n=2, seed=1)


# ------------------------------------------------------------------ scoring a prompt
def test_scoring_matches_a_plain_forward_pass(sampler: LocalSampler) -> None:
    ids = ids_of(sampler, PROMPT)
    assert ids[0] == sampler.tokenizer.bos_token_id  # the tiny model starts with <s>
    reference = model_logprobs(sampler, ids)
    score = sampler.score_prompt(PROMPT, top_logprobs=4)
    assert sampler.capabilities.scores_prompt
    assert len(score.tokens) == len(ids) - 1  # the text tokens: never <s>
    assert "".join(t.text for t in score.tokens) == PROMPT
    assert score.offsets == [sum(len(t.text) for t in score.tokens[:i]) for i in range(len(score.tokens))]
    for i, token in enumerate(score.tokens, start=1):  # token i is predicted by position i - 1
        assert token.logprob == pytest.approx(reference[i - 1, ids[i]].item(), abs=1e-4)
        tops = [a.logprob for a in token.top]
        assert len(tops) == 4 and tops == sorted(tops, reverse=True)
        assert tops[0] == pytest.approx(reference[i - 1].max().item(), abs=1e-4)
    assert all(t.top == () for t in sampler.score_prompt(PROMPT).tokens)


def test_scoring_in_small_chunks_gives_the_same_numbers(
    sampler: LocalSampler, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = PROMPT * 6
    whole = sampler.score_prompt(text, top_logprobs=2)
    monkeypatch.setattr(sampler_module, "PREFILL_CHUNK", 16)
    monkeypatch.setattr(sampler_module, "SCORE_ROWS", 5)
    chunked = sampler.score_prompt(text, top_logprobs=2)
    assert [t.text for t in chunked.tokens] == [t.text for t in whole.tokens]
    for a, b in zip(whole.tokens, chunked.tokens, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert [x.text for x in a.top] == [x.text for x in b.top]


def test_a_grown_prompt_is_scored_only_where_it_grew(sampler: LocalSampler, tiny_model_path: Path) -> None:
    cached = LocalSampler(tiny_model_path, device="cpu")  # the prefix cache on (the module's is off)
    base = PROMPT * 4
    cached.score_prompt(base, top_logprobs=3)
    hits = cached.prefixes.hits
    grown = base + " And then the mill stopped."
    again = cached.score_prompt(grown, top_logprobs=2)
    assert cached.prefixes.hits == hits + 1  # the remembered prefix was taken, not read again
    fresh = sampler.score_prompt(grown, top_logprobs=2)
    assert [t.text for t in again.tokens] == [t.text for t in fresh.tokens]
    for a, b in zip(again.tokens, fresh.tokens, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert [x.text for x in a.top] == [x.text for x in b.top]
    wider = cached.score_prompt(grown + " More.", top_logprobs=5)  # more alternatives than remembered
    assert all(len(t.top) == 5 for t in wider.tokens)
    reused = cached.generate(grown, opts(n=1, max_tokens=2)).meta["prefill_reused_tokens"]
    assert reused > 0  # sampling after an echo reads only the prompt's last tokens


def test_scored_texts_join_to_any_prompt(sampler: LocalSampler) -> None:
    for text in (
        "naïve café 🙂 — ok",
        "  leading spaces\n\nand lines  ",
        "<s> looks like a marker </s>",
        "x",
    ):
        score = sampler.score_prompt(text, top_logprobs=1)
        assert "".join(t.text for t in score.tokens) == text
        assert all(t.logprob is not None for t in score.tokens)  # <s> precedes the first one


def test_scoring_refuses_what_it_cannot_score(sampler: LocalSampler, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        sampler.score_prompt("")
    with pytest.raises(InvalidInput, match="between 0 and 20"):
        sampler.score_prompt(PROMPT, top_logprobs=21)
    monkeypatch.setattr(sampler_module, "CPU_CONTEXT_CAP", 8)
    with pytest.raises(InvalidInput, match="more than the 8 this model reads: shorten it"):
        sampler.score_prompt(PROMPT)


def test_the_default_model_scores_a_sentence(gemma_sampler: LocalSampler) -> None:
    text = "The cat sat on the mat. The cat sat on the mat."
    score = gemma_sampler.score_prompt(text, top_logprobs=3)
    assert "".join(t.text for t in score.tokens) == text
    assert all(t.logprob is not None and len(t.top) == 3 for t in score.tokens)  # <bos> precedes the first
    half = len(score.tokens) // 2
    first = [t.logprob for t in score.tokens[:half] if t.logprob is not None]
    second = [t.logprob for t in score.tokens[half + 1 :] if t.logprob is not None]
    assert sum(second) / len(second) > sum(first) / len(first) + 1.0  # the repeat is far easier to predict
