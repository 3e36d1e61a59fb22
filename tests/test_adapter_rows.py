"""A personal adapter on the sampler's packed model: base and personal branches in one batch.

On the real default model (its linear layers packed for FBGEMM): the base rows of a mixed offer
are exactly what a sampler without the adapter makes, the personal rows match peft's own merged
model, each branch says which model wrote it, and a damaged or foreign adapter is refused in one
line while the base model keeps sampling.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from ambient import adapters
from ambient.packing import PackedLinear
from ambient.sampling.base import SamplingOptions
from ambient.sampling.local import LocalSampler
from ambient.tuning.trainer import quiet_peft
from tests.adapter_helpers import lora_model, random_adapter, save_adapter

PROMPT = "The lighthouse keeper climbed the narrow stairs at dusk, and"
CONTINUATION = " lit the great lamp above the sea. Far out, a ship"


@pytest.fixture(scope="module")
def sampler(default_model_path: Path) -> LocalSampler:
    return LocalSampler(default_model_path, device="cpu")


@pytest.fixture(scope="module")
def adapter_dir(default_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_adapter(default_model_path, tmp_path_factory.mktemp("adapters") / "personal-001")


@pytest.fixture
def with_adapter(sampler: LocalSampler, adapter_dir: Path):
    sampler.use_adapter(adapter_dir)
    assert sampler.adapter is not None, sampler.adapter_problem
    yield sampler
    sampler.use_adapter(None)
    sampler.adapter_share = 0.5


def _rows(result):
    return [(c.text, [(t.text, t.logprob, t.top) for t in c.tokens]) for c in result.continuations]


def test_the_sampler_packs_the_layers_the_adapter_adapts(sampler: LocalSampler, adapter_dir: Path) -> None:
    layer = sampler.model.get_submodule("model.layers.0.self_attn.q_proj")
    assert isinstance(layer, PackedLinear)  # so peft could not wrap it: the adapter's own path does
    assert (adapter_dir / adapters.WEIGHTS).stat().st_size < 4 * 2**20  # a few MB at most


def test_a_mixed_offer_s_base_branches_are_the_base_sampler_s(
    sampler: LocalSampler, adapter_dir: Path
) -> None:
    options = SamplingOptions(n=4, max_tokens=12, temperature=0.9, seed=11, top_logprobs=5)
    sampler.use_adapter(None)
    base = sampler.generate(PROMPT, options)
    assert all(c.meta == {} for c in base.continuations) and "adapter" not in base.meta
    sampler.use_adapter(adapter_dir)
    try:
        mixed = sampler.generate(PROMPT, options)
    finally:
        sampler.use_adapter(None)
    labels = [c.meta["adapter"] for c in mixed.continuations]
    assert labels == ["none", "personal-001", "none", "personal-001"]
    assert mixed.meta["adapter"] == {"name": "personal-001", "branches": [1, 3]}
    before, after = _rows(base), _rows(mixed)
    assert after[0] == before[0] and after[2] == before[2]  # text, every logprob, every alternative: exact
    assert after[1] != before[1] and after[3] != before[3]
    # the first token of every branch comes from the prompt pass, which the base model makes
    assert after[1][1][0] == before[1][1][0]


def test_personal_rows_match_peft_s_merged_model(
    sampler: LocalSampler, adapter_dir: Path, default_model_path: Path
) -> None:
    from peft import PeftModel

    from ambient.sampling.local.loading import load_plain

    tokenizer = sampler.tokenizer
    prompt_ids = sampler._encode(PROMPT, 8).ids
    cont = tokenizer(CONTINUATION, add_special_tokens=False)["input_ids"]
    sampler.use_adapter(adapter_dir)
    try:
        with torch.inference_mode():
            mixed = _decode(sampler, prompt_ids, cont, [False, True])
            plain = _decode(sampler, prompt_ids, cont, None)
    finally:
        sampler.use_adapter(None)
    assert torch.equal(mixed[:, 0], plain[:, 0])  # the base row of a mixed batch: exactly the base logits

    _, model = load_plain(default_model_path)
    with torch.inference_mode():
        cache = model.model(input_ids=torch.tensor([prompt_ids]), use_cache=True).past_key_values  # base
        with quiet_peft():
            merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        reference = merged(input_ids=torch.tensor([cont]), cache=cache, use_cache=True).logits[0]
    personal = mixed[:, 1]
    assert not torch.allclose(personal, plain[:, 1], atol=1e-2)  # the adapter does change the logits
    torch.testing.assert_close(personal, reference, atol=2e-3, rtol=1e-4)


def _decode(
    sampler: LocalSampler, prompt_ids: list[int], cont: list[int], rows: list[bool] | None
) -> torch.Tensor:
    """Logits [steps, 2, vocab] of two rows reading ``cont`` after the prompt, ``rows`` taking the adapter."""
    cache, _, _ = sampler._prefill(prompt_ids)
    cache.batch_repeat_interleave(2)
    sampler._switch.set(rows)
    try:
        return torch.stack([sampler._forward(torch.tensor([[t], [t]]), cache) for t in cont])
    finally:
        sampler._switch.set(None)


def test_all_or_none_of_the_branches(with_adapter: LocalSampler) -> None:
    options = SamplingOptions(n=3, max_tokens=4, seed=2, top_logprobs=0)
    with_adapter.adapter_share = 1.0
    assert _labels(with_adapter, options) == {"personal-001"}
    with_adapter.adapter_share = 0.0
    assert _labels(with_adapter, options) == {"none"}
    assert with_adapter.personal_rows(1) == [False]
    with_adapter.adapter_share = 0.5
    assert with_adapter.personal_rows(1) == [True] or with_adapter.personal_rows(1) == [False]
    assert with_adapter.personal_rows(6) == [False, True] * 3


def test_an_offer_kept_from_the_adapter_is_the_base_sampler_s(
    sampler: LocalSampler, adapter_dir: Path
) -> None:
    """``personal=False`` (a document's switch off): every branch base, exactly, and said so."""
    options = SamplingOptions(n=4, max_tokens=10, temperature=0.9, seed=4, top_logprobs=3)
    sampler.use_adapter(None)
    base = sampler.generate(PROMPT, options)
    sampler.use_adapter(adapter_dir)
    try:
        kept = sampler.generate(PROMPT, dataclasses.replace(options, personal=False))
        mixed = sampler.generate(PROMPT, options)
    finally:
        sampler.use_adapter(None)
    assert _rows(kept) == _rows(base)
    assert [c.meta["adapter"] for c in kept.continuations] == ["none"] * 4
    assert kept.meta["adapter"] == {"name": "personal-001", "branches": []}
    assert _rows(mixed) != _rows(base)  # the same request with the switch on does take the adapter
    assert dataclasses.replace(options, personal=False).as_dict()["personal"] is False
    assert "personal" not in options.as_dict()  # stored with an offer only when off


def _labels(sampler: LocalSampler, options: SamplingOptions) -> set[str]:
    return {c.meta["adapter"] for c in sampler.generate(PROMPT, options).continuations}


def _base_texts(sampler: LocalSampler) -> list[str]:
    options = SamplingOptions(n=2, max_tokens=6, seed=5, top_logprobs=0)
    return [c.text for c in sampler.generate(PROMPT, options).continuations]


def test_a_damaged_adapter_is_refused_and_the_base_model_samples(
    sampler: LocalSampler, adapter_dir: Path, tmp_path: Path
) -> None:
    sampler.use_adapter(None)
    base = _base_texts(sampler)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in (adapters.MANIFEST, adapters.PEFT_CONFIG):
        (broken / name).write_bytes((adapter_dir / name).read_bytes())
    weights = (adapter_dir / adapters.WEIGHTS).read_bytes()
    (broken / adapters.WEIGHTS).write_bytes(weights[:1000])  # cut short
    assert sampler.use_adapter(broken) is None
    assert sampler.adapter is None
    problem = sampler.adapter_problem or ""
    assert "cannot be read" in problem and "tune again" in problem and "\n" not in problem
    assert _base_texts(sampler) == base
    for damage in ("", "{not json"):
        (broken / adapters.WEIGHTS).write_bytes(weights)
        (broken / adapters.MANIFEST).write_text(damage)
        assert sampler.use_adapter(broken) is None and "cannot be read" in (sampler.adapter_problem or "")
    (broken / adapters.MANIFEST).unlink()
    assert sampler.use_adapter(broken) is None and "no manifest.json" in (sampler.adapter_problem or "")
    sampler.use_adapter(adapter_dir)
    assert sampler.adapter is not None and sampler.adapter_problem is None
    sampler.use_adapter(None)


def test_an_adapter_of_another_model_is_refused(
    sampler: LocalSampler, adapter_dir: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    foreign = random_adapter(tiny_model_path, tmp_path / "tiny-adapter")
    assert sampler.use_adapter(foreign) is None
    assert "trained on" in (sampler.adapter_problem or "") and tiny_model_path.name in sampler.adapter_problem
    # the same, with a manifest that claims this model: the shapes do not fit
    manifest = json.loads((foreign / adapters.MANIFEST).read_text())
    manifest["base_model"] = json.loads((adapter_dir / adapters.MANIFEST).read_text())["base_model"]
    (foreign / adapters.MANIFEST).write_text(json.dumps(manifest))
    assert sampler.use_adapter(foreign) is None
    assert "does not fit this model" in (sampler.adapter_problem or "")
    assert sampler.adapter is None and _base_texts(sampler)


def test_the_tiny_model_takes_an_adapter_on_plain_layers(tiny_model_path: Path, tmp_path: Path) -> None:
    """A model the sampler does not pack (random float32 weights): the same path on nn.Linear layers."""
    peft_model = lora_model(tiny_model_path, rank=2)
    folder = save_adapter(peft_model, tiny_model_path, tmp_path / "a")
    sampler = LocalSampler(tiny_model_path, device="cpu", adapter=folder, adapter_share=1.0)
    assert sampler.adapter is not None and sampler.adapter.bytes < 100_000
    layer = sampler.model.get_submodule("model.layers.0.self_attn.q_proj")
    assert type(layer) is torch.nn.Linear
    result = sampler.generate("hello", SamplingOptions(n=2, max_tokens=5, seed=1))
    assert [c.meta["adapter"] for c in result.continuations] == ["a", "a"]
