"""Loading the local model: the tokenizer straight from tokenizer.json, the weights packed from 16 bits.

The tokenizer encodes and decodes as AutoTokenizer does; a 16-bit checkpoint
loaded as stored and packed gives exactly the logits of a float32 load.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from ambient.sampling.local.loading import (
    _direct_tokenizer_settings,
    _model,
    _slim,
    _tokenizer,
    load,
    stored_half_dtype,
)
from tests.loom_fixture import FIXTURES, node_texts, read

SAMPLES = [
    "Hello world",
    " leading space\n\nnew  lines\ttabs",
    "<start_of_turn>user hi<end_of_turn>",
    "<bos>x<eos> <pad> <mask> <unk>",
    "émoji 🌊 日本語 and Ελληνικά",
    "",
]


def _loom_texts() -> list[str]:
    """Every node text of the real Loom fixture trees (written by people and models nobody here knows)."""
    return [t for file in sorted(FIXTURES.glob("*.json")) for t in node_texts(read(file.name))]


def test_gemma_direct_tokenizer_matches_autotokenizer(default_model_path: Path) -> None:
    assert _direct_tokenizer_settings(default_model_path) is not None, "Gemma should take the direct path"
    start = time.perf_counter()
    direct = _tokenizer(default_model_path)
    direct_s = time.perf_counter() - start
    auto = AutoTokenizer.from_pretrained(default_model_path, local_files_only=True)
    texts = SAMPLES + _loom_texts()
    assert len(texts) > 100, "the Loom fixture should add its node texts"
    for text in texts:
        for options in ({}, {"split_special_tokens": True}, {"add_special_tokens": False}):
            assert direct(text, **options)["input_ids"] == auto(text, **options)["input_ids"], (text, options)
    joined = "".join(texts[:50])
    assert direct(joined, return_offsets_mapping=True) == auto(joined, return_offsets_mapping=True)
    ids = [*range(0, len(auto), 997), 0, 1, 2, 3, 106, 107]
    assert direct.decode(ids) == auto.decode(ids)
    assert direct.decode(ids, skip_special_tokens=True) == auto.decode(ids, skip_special_tokens=True)
    assert direct.convert_ids_to_tokens(ids) == auto.convert_ids_to_tokens(ids)
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "all_special_ids"):
        assert getattr(direct, attr) == getattr(auto, attr), attr
    assert len(direct) == len(auto)
    assert direct_s < 10, f"loading the tokenizer took {direct_s:.1f} s"


@pytest.mark.parametrize(
    "config",
    [
        {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>"},  # a class with behaviour of its own
        {"tokenizer_class": "GemmaTokenizer", "add_bos_token": False},  # a setting to apply
        {"tokenizer_class": "GemmaTokenizer", "bos_token": {"content": "<bos>"}},  # not a plain string
        {"tokenizer_class": "GemmaTokenizer", "chat_template": "{{ x }}"},
    ],
)
def test_other_tokenizers_go_through_autotokenizer(tmp_path: Path, config: dict[str, Any]) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert _direct_tokenizer_settings(tmp_path) is None


def test_direct_path_needs_both_files(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GemmaTokenizer"}))
    assert _direct_tokenizer_settings(tmp_path) is None  # no tokenizer.json
    (tmp_path / "tokenizer.json").write_text("{}")
    assert _direct_tokenizer_settings(tmp_path) == {}
    (tmp_path / "tokenizer_config.json").write_text("not json")
    assert _direct_tokenizer_settings(tmp_path) is None


def test_tiny_model_tokenizer_still_loads(tiny_model_path: Path) -> None:
    tokenizer = _tokenizer(tiny_model_path)
    ids = tokenizer("the tide turns", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == "the tide turns"


def test_half_checkpoint_packs_to_the_same_logits_as_a_float32_load(default_model_path: Path) -> None:
    assert stored_half_dtype(default_model_path) is torch.bfloat16
    tokenizer, packed, layers = load(default_model_path, torch.device("cpu"), torch.float32)
    assert layers > 100
    emb = packed.get_input_embeddings()
    kinds = {t.dtype for t in [*packed.parameters(), *packed.buffers()] if t is not emb.table}
    assert kinds == {torch.float32}, kinds  # nothing else left in 16 bits
    assert emb.mapped and emb.table.dtype is torch.bfloat16  # the input table: the checkpoint's own rows
    reference = _model(default_model_path, torch.float32).eval()
    assert _slim(reference, None) == layers
    ids = torch.tensor([tokenizer("The keeper wrote in his log that the fog had come in early")["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(packed(ids).logits, reference(ids).logits)


def test_stored_dtype(tmp_path: Path, tiny_model_path: Path) -> None:
    assert stored_half_dtype(tiny_model_path) is None  # a float32 checkpoint is loaded as it is
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "float16"}))
    assert stored_half_dtype(tmp_path) is torch.float16
    (tmp_path / "config.json").write_text("{")
    assert stored_half_dtype(tmp_path) is None
