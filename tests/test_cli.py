"""The core commands, end to end through ambient.cli.main (sampling by a registered fake backend)."""

import json
from pathlib import Path

import pytest

from ambient.cli import main
from ambient.sampling.registry import register_backend
from ambient.store import TreeStore
from tests.fakes import FakeSampler

LOOM_DEMO = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "loom" / "loom_demo.json"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    register_backend("fake", lambda config: FakeSampler())
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AMBIENT_MODEL_BACKEND", "fake")
    monkeypatch.setenv("AMBIENT_MEMORY_ENABLED", "false")
    return tmp_path / "home"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str):
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_continue_pick_show(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    note = tmp_path / "note.md"
    note.write_text("The lighthouse keeper")
    data = run_json(capsys, "continue", str(note), "-n", "3", "--max-tokens", "4", "--seed", "1")
    assert set(data) >= {"tree_id", "parent_id", "continuations"}
    assert len(data["continuations"]) == 3
    first = data["continuations"][0]
    assert first["text"] == " b0w0 b0w1 b0w2 b0w3"
    assert [t["text"] for t in first["tokens"]] == [" b0w0", " b0w1", " b0w2", " b0w3"]
    assert all(t["logprob"] == -0.5 for t in first["tokens"])

    picked = run_json(capsys, "pick", first["node_id"][:8])
    assert picked["status"] == "picked"
    shown = run_json(capsys, "show", first["node_id"])
    assert shown["full_text"] == "The lighthouse keeper b0w0 b0w1 b0w2 b0w3"
    assert shown["provenance"]["source"]["kind"] == "tree"
    tree = run_json(capsys, "show", data["tree_id"])
    assert len(tree["nodes"]) == 4
    assert len(run_json(capsys, "trees")) == 1

    # continue from the picked node: a second level in the same tree
    again = run_json(capsys, "continue", "-", "--from", first["node_id"], "-n", "2", "--max-tokens", "2")
    assert again["tree_id"] == data["tree_id"] and again["parent_id"] == first["node_id"]


def test_plain_output(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    note = tmp_path / "n.txt"
    note.write_text("hello")
    assert main(["continue", str(note), "-n", "2", "--max-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert "── 1 ·" in out and "b1w1" in out and "ambient pick NODE" in out


def test_stdin(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    data = run_json(capsys, "continue", "-", "-n", "1", "--max-tokens", "1")
    assert data["continuations"][0]["text"] == " b0w0"


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (b"", (), "is empty"),
        (b"   \n", (), "is empty"),
        (b"\x00\x01binary", (), "looks binary"),
        (b"caf\xe9", (), "not UTF-8"),
        (b"ok", ("-n", "0"), "n must be between 1 and 64"),
        (b"ok", ("-n", "65"), "n must be between 1 and 64"),
        (b"ok", ("--temperature", "-1"), "temperature must be 0 or more"),
    ],
)
def test_bad_input_exits_2_and_stores_nothing(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, args: tuple, message: str
) -> None:
    f = tmp_path / "in.txt"
    f.write_bytes(content)
    assert main(["continue", str(f), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1  # one clear line
    if (home / "ambient.sqlite3").exists():
        with TreeStore(home / "ambient.sqlite3") as s:
            assert s.list_trees() == []


def test_missing_file_and_unknown_node(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["continue", "/nonexistent/file.md"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["pick", "deadbeef"]) == 2
    assert "no node 'deadbeef'" in capsys.readouterr().err
    assert main(["show", "deadbeef"]) == 2
    assert "no tree" in capsys.readouterr().err


def test_import_errors_change_nothing(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    note = tmp_path / "n.txt"
    note.write_text("keep me")
    run_json(capsys, "continue", str(note), "-n", "1", "--max-tokens", "1")
    bad = tmp_path / "bad.json"
    bad.write_text('{"foreign": true}')
    assert main(["import", str(bad)]) == 2
    assert "not a Loom tree" in capsys.readouterr().err
    assert len(run_json(capsys, "trees")) == 1


def test_import_export_cli(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert LOOM_DEMO.is_file(), f"the Loom fixture is not at {LOOM_DEMO} (../shared beside the repo)"
    result = run_json(capsys, "import", str(LOOM_DEMO))
    assert result["nodes"] == 764
    out = tmp_path / "out.json"
    assert main(["export", result["tree_id"][:10], "--format", "loom", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["root"]["id"] == "af49303c-165f-11ec-b847-acde48001122"
    assert main(["export", result["tree_id"], "--format", "jsonl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 764
    assert set(json.loads(lines[1])) >= {"id", "parent_id", "text", "author", "status"}


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("continue", "pick", "show", "import", "export"):
        assert f"ambient {command}" in out


def test_demo_notes_folder_and_config(tmp_path: Path) -> None:
    from ambient.app import App
    from ambient.commands.core import make_demo
    from ambient.config import load_config

    env = {"AMBIENT_HOME": str(tmp_path)}
    made = make_demo(App(load_config(env=env)))
    assert (tmp_path / "notes" / "welcome.md").read_text().startswith("# Welcome to ambient")
    assert set(made) == {"demo notes", "config"}
    config = load_config(env=env)
    assert config.sources["notes"]["folders"] == [str(tmp_path / "notes")]
    # a second run changes nothing, and an existing config is never overwritten
    (tmp_path / "ambient.toml").write_text("[sampling]\nn = 2\n")
    assert make_demo(App(load_config(env=env))) == {}
    assert (tmp_path / "ambient.toml").read_text() == "[sampling]\nn = 2\n"
