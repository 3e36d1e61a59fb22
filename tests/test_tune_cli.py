"""`ambient tune` and `ambient adapter` end to end, on the tiny model (seconds), with real picks.

The picks are the committed test data (tests/data/picks.jsonl) replayed into a real store; the
adapter is trained by the real trainer (peft's LoRA, DPO) and sampled with by the real sampler.
Whether tuning *learns* is tests/test_tune_learns.py, on the real default model.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from ambient import adapters
from ambient.cli import main
from ambient.config import load_config
from ambient.errors import ConfigError
from ambient.store import TreeStore
from ambient.tuning import tune as tuning
from ambient.tuning.trainer import Interrupted
from tests.tuning_data import fill_store, picked


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_path: Path) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("AMBIENT_HOME", str(home))
    monkeypatch.setenv("AMBIENT_MODEL_PATH", str(tiny_model_path))
    monkeypatch.setenv("AMBIENT_MEMORY_ENABLED", "false")
    monkeypatch.setenv("AMBIENT_TUNE_MIN_PAIRS", "12")
    monkeypatch.setenv("AMBIENT_TUNE_RANGE_PROMPTS", "2")
    monkeypatch.setenv("AMBIENT_TUNE_CONTEXT_TOKENS", "48")
    home.mkdir()
    return home


def _fill(home: Path, offers: int, **kwargs: str) -> None:
    store = TreeStore(home / "ambient.sqlite3")
    try:
        fill_store(store, picked()[:offers], **kwargs)
    finally:
        store.close()


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_too_few_picks_is_one_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(home, 1)
    assert main(["tune"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("ambient: 5 preference pair(s) from your picks so far; tuning needs at least 12")
    assert not adapters.folder(home).exists() or not adapters.names(home)


def test_tune_writes_a_versioned_adapter_and_sampling_uses_it(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(home, 4)
    manifest = run_json(capsys, "tune")
    assert manifest["name"] == "personal-001"
    assert manifest["picks"]["pairs"] == 20 and manifest["picks"]["scopes"] == {"ui": 20}
    assert manifest["picks"]["held_out_pairs"] == 5 and manifest["picks"]["train_pairs"] == 15
    assert "offers" not in manifest["picks"]  # the list is in the file, not on the screen
    ev = manifest["evaluation"]
    assert ev["train_pairs"] == 15 and ev["pairs_per_s"] > 0
    assert {"accuracy_base", "accuracy_personal", "chosen_gain_per_token"} <= set(ev)
    assert {"entropy_base", "entropy_personal", "diversity_base", "diversity_personal"} <= set(ev)
    assert manifest["settings"]["objective"] in ("dpo", "dpo-mean")
    assert manifest["base_model"]["fingerprint"] == adapters.model_fingerprint(Path(load_config().model.path))
    folder = adapters.folder(home) / "personal-001"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("README")) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "manifest.json",
    ]
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert len(on_disk["picks"]["offers"]) == 4
    assert adapters.active_name(home) == ("personal-001" if manifest["active"] else None)
    assert not list(adapters.folder(home).glob(".tmp-*"))

    # `ambient status` says when it last tuned and what it measured (no daemon needed)
    assert main(["status", "--json"]) == 1
    status = json.loads(capsys.readouterr().out)
    assert status["running"] is False and status["personal_model"]["latest"] == "personal-001"
    assert status["personal_model"]["evaluation"]["accuracy_base"] == ev["accuracy_base"]
    assert main(["status"]) == 1
    line = capsys.readouterr().out
    assert "personal model: " in line and "last tuned" in line and "(personal-001: " in line

    # the adapter is used: each branch says who wrote it
    adapters.set_active(home, "personal-001")
    note = tmp_path / "n.txt"
    note.write_text("The sea was calm")
    out = run_json(capsys, "continue", str(note), "-n", "4", "--max-tokens", "3", "--seed", "1")
    assert [c["adapter"] for c in out["continuations"]] == ["none", "personal-001"] * 2
    out = run_json(capsys, "continue", str(note), "-n", "2", "--max-tokens", "3", "--adapter", "none")
    assert [c["adapter"] for c in out["continuations"]] == [None, None]

    # a second tune is a new version; the list shows both
    _fill(home, 6)
    second = run_json(capsys, "tune", "--no-activate")
    assert second["name"] == "personal-002" and second["active"] is False
    assert adapters.active_name(home) == "personal-001"
    listed = run_json(capsys, "adapter", "list")
    assert [(a["name"], a["active"]) for a in listed] == [("personal-001", True), ("personal-002", False)]
    assert main(["adapter", "use", "personal-002"]) == 0
    assert adapters.active_name(home) == "personal-002"
    assert main(["adapter", "use", "none"]) == 0
    assert adapters.active_name(home) is None
    capsys.readouterr()
    assert main(["adapter", "use", "personal-009"]) == 2
    assert "no adapter 'personal-009'" in capsys.readouterr().err


def test_an_interrupted_tune_writes_nothing(home: Path) -> None:
    _fill(home, 4)
    config = load_config()
    store = TreeStore(config.db_path)
    cancel = threading.Event()
    seen: list[str] = []

    def progress(step: int, total: int, what: str) -> None:
        seen.append(what)
        if what == "evaluation":
            cancel.set()  # as Ctrl-C would, once training is done

    try:
        with pytest.raises(Interrupted):
            tuning.tune(config, store, progress=progress, cancel=cancel)
    finally:
        store.close()
    assert "training" in seen
    assert adapters.names(home) == [] and adapters.active_name(home) is None
    assert not list(adapters.folder(home).glob(".tmp-*")) if adapters.folder(home).exists() else True


def test_shared_places_count_only_when_opted_in(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(home, 2, source="discord:1/2", scope="discord:1")
    _fill(home, 2)
    monkeypatch.setenv("AMBIENT_TUNE_RANGE_PROMPTS", "0")
    monkeypatch.setenv("AMBIENT_TUNE_MIN_PAIRS", "15")
    assert main(["tune"]) == 2
    err = capsys.readouterr().err
    assert "10 preference pair(s)" in err and "10 more from shared places" in err
    monkeypatch.setenv("AMBIENT_TUNE_SHARED_PLACES", "discord:1")
    manifest = run_json(capsys, "tune")
    assert manifest["picks"]["scopes"] == {"discord:1": 10, "ui": 10}
    assert manifest["picks"]["shared_places"] == ["discord:1"]


def test_an_adapter_needs_the_local_model(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A server takes an adapter by a name it serves (test_sampling_openai_adapter.py), never a folder."""
    with pytest.raises(ConfigError, match="is a folder, but model.backend is 'openai'"):
        load_config(
            env={
                "AMBIENT_HOME": str(home),
                "AMBIENT_MODEL_BACKEND": "openai",
                "AMBIENT_MODEL_ADAPTER": str(home),
            },
        )
    note = home / "n.txt"
    note.write_text("hi")
    code = main(
        [
            "continue",
            str(note),
            "--backend",
            "openai",
            "--base-url",
            "http://127.0.0.1:9",
            "--adapter",
            str(home),
        ]
    )
    assert code == 2
    assert f"--adapter {home} is a folder, but the backend is 'openai'" in capsys.readouterr().err
    argv = [
        "continue",
        str(note),
        "--backend",
        "openai",
        "--base-url",
        "http://127.0.0.1:9",
        "--adapter",
        "personal",
    ]
    assert main(argv) == 2
    assert "--adapter personal needs the local model, but the backend is 'openai'" in capsys.readouterr().err


def test_export_and_import_an_adapter(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMBIENT_TUNE_RANGE_PROMPTS", "0")
    monkeypatch.setenv("AMBIENT_TUNE_SHARED_PLACES", "discord:1")
    _fill(home, 3, source="discord:1/2", scope="discord:1")
    manifest = run_json(capsys, "tune")
    exported = tmp_path / "mine.safetensors"
    assert main(["adapter", "export", manifest["name"], "-o", str(exported)]) == 0
    captured = capsys.readouterr()
    assert "learnt from picks made in shared places (discord:1)" in captured.err  # a warning, still written
    assert exported.is_file()

    imported = run_json(capsys, "adapter", "import", str(exported))
    assert imported["name"] == "personal-002" and imported["active"] is False
    assert imported["imported"]["name"] == manifest["name"]
    assert imported["base_model"] == manifest["base_model"]
    original = adapters.folder(home) / manifest["name"] / adapters.WEIGHTS
    copy = adapters.folder(home) / "personal-002" / adapters.WEIGHTS
    from safetensors.torch import load_file

    a, b = load_file(str(original)), load_file(str(copy))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)

    # an adapter of another model is refused, and nothing is added
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(exported), framework="pt") as fh:
        metadata = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    foreign = json.loads(metadata["ambient.manifest"])
    foreign["base_model"] = {"name": "another-model", "fingerprint": "0" * 64}
    save_file(
        tensors, str(tmp_path / "foreign.safetensors"), {**metadata, "ambient.manifest": json.dumps(foreign)}
    )
    assert main(["adapter", "import", str(tmp_path / "foreign.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert "was trained on 'another-model', not on this model" in err and "\n" not in err
    assert adapters.names(home) == ["personal-001", "personal-002"]
    (tmp_path / "junk.safetensors").write_bytes(b"not an adapter")
    assert main(["adapter", "import", str(tmp_path / "junk.safetensors")]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert main(["adapter", "export", "personal-404", "-o", str(tmp_path / "x")]) == 2
    assert "no adapter 'personal-404'" in capsys.readouterr().err


def test_the_sampler_follows_the_active_adapter(home: Path, tiny_model_path: Path) -> None:
    """model.adapter = "personal": a running sampler takes up whatever adapter becomes active."""
    from ambient.sampling.base import SamplingOptions
    from ambient.sampling.local import LocalSampler
    from tests.adapter_helpers import random_adapter

    random_adapter(tiny_model_path, adapters.folder(home) / "personal-001")
    sampler = LocalSampler.from_config(load_config())
    options = SamplingOptions(n=2, max_tokens=3, seed=1)
    assert "adapter" not in sampler.generate("hi", options).meta
    adapters.set_active(home, "personal-001")
    assert sampler.generate("hi", options).meta["adapter"] == {"name": "personal-001", "branches": [1]}
    adapters.set_active(home, None)
    assert "adapter" not in sampler.generate("hi", options).meta
