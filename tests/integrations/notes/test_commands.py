"""`ambient offers NOTE` and `ambient accept NODE`, end to end through ambient.cli.main."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ambient import cli
from ambient.store import TreeStore
from ambient.tree import MODEL, Author, NewBranch, Node
from integrations.notes.history import NoteHistory


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose configuration watches ``tmp_path/notes`` (where `ambient accept` may write)."""
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AMBIENT_MEMORY_ENABLED", "false")
    (tmp_path / "notes").mkdir()
    (tmp_path / "home").mkdir()
    folders = json.dumps([str(tmp_path / "notes")])
    (tmp_path / "home" / "ambient.toml").write_text(f"[sources.notes]\nfolders = {folders}\n")
    return tmp_path / "home"


def offer(home: Path, note: Path, texts: list[str]) -> list[Node]:
    with TreeStore(home / "ambient.sqlite3") as store:
        rec = NoteHistory(store).record(str(note), note.read_text(), offer=True)
        assert rec.point_node is not None
        _, nodes = store.add_offer(rec.point_node.id, [NewBranch(t) for t in texts], author=Author(MODEL))
    return nodes


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_offers_then_accept(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    note = tmp_path / "notes" / "plan.md"
    note.write_text("Plan:\n1. wake up\n")
    nodes = offer(home, note, ["2. coffee\n", "2. run\n"])

    code, out, _ = run(capsys, "offers", str(note), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["note"] == str(note) and data["point"]["line"] == 3 and data["point"]["column"] == 1
    assert [c["text"] for c in data["offers"][0]["continuations"]] == ["2. coffee\n", "2. run\n"]

    code, out, _ = run(capsys, "offers", os.path.relpath(note))
    assert code == 0 and nodes[0].id[:12] in out and "ambient accept NODE" in out

    code, out, _ = run(capsys, "accept", nodes[1].id[:8])
    assert code == 0 and f"into {note} at line 3, column 1" in out
    assert note.read_text() == "Plan:\n1. wake up\n2. run\n"

    code, out, _ = run(capsys, "offers", str(note), "--json")
    assert [c["accepted"] for c in json.loads(out)["offers"][0]["continuations"]] == [False, True]

    # The note moved on at the point: a second accept is refused, with the next step, changing nothing.
    code, _, err = run(capsys, "accept", nodes[0].id, "--json")
    assert code == 2 and "changed around the point" in err and "save again" in err
    assert note.read_text() == "Plan:\n1. wake up\n2. run\n"


def test_offers_for_an_unknown_note(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "offers", str(tmp_path / "nope.md"))
    assert code == 2 and "no offers for" in err and "[sources.notes]" in err


def test_accept_of_a_note_that_became_binary(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    note = tmp_path / "notes" / "a.md"
    note.write_text("Text")
    nodes = offer(home, note, [" more"])
    note.write_bytes(b"\x00\x01")
    code, _, err = run(capsys, "accept", nodes[0].id)
    assert code == 2 and "binary" in err
    assert note.read_bytes() == b"\x00\x01"


def test_accept_refuses_a_note_outside_the_configured_folders(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "private.md"
    outside.write_text("Mine alone")
    link = tmp_path / "notes" / "private.md"
    link.symlink_to(outside)
    loose = tmp_path / "loose.md"
    loose.write_text("Loose")
    errors = []
    for note in (link, loose):
        nodes = offer(home, note, [" and more"])
        code, out, err = run(capsys, "accept", nodes[0].id)
        assert code == 2 and out == "" and "is not in a watched folder" in err, err
        errors.append(err)
    assert f"(it links to {outside})" in errors[0] and "links to" not in errors[1]
    assert outside.read_text() == "Mine alone" and loose.read_text() == "Loose" and link.is_symlink()


def test_accept_refuses_when_a_save_lands_while_accepting(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ambient import fsutil

    note = tmp_path / "notes" / "race.md"
    note.write_text("Steady")
    nodes = offer(home, note, [" state"])
    real_exchange = fsutil.exchange

    def save_first(a: Path, b: Path) -> bool:
        if note.read_text() == "Steady":
            saved = note.with_name(".race.md.editor")
            saved.write_text("Steady, saved meanwhile")
            os.replace(saved, note)
        return real_exchange(a, b)

    monkeypatch.setattr(fsutil, "exchange", save_first)
    code, out, err = run(capsys, "accept", nodes[0].id)
    assert code == 2 and out == ""
    assert "changed while accepting" in err and "nothing was lost" in err
    assert note.read_text() == "Steady, saved meanwhile"
