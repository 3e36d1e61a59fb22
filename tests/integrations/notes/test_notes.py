"""Reading notes safely, and finding where the person was writing."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from integrations.notes import notes
from integrations.notes.notes import (
    NoteUnreadable,
    common_prefix,
    common_suffix,
    find_change,
    line_col,
    read_note,
    text_sha,
)


def test_reads_text_with_its_facts(tmp_path: Path) -> None:
    note = tmp_path / "a.md"
    note.write_bytes("Café\r\nnaïve\n".encode())
    note.chmod(0o640)
    got = read_note(note, 1000)
    assert got.text == "Café\r\nnaïve\n"  # line endings are kept as they are
    assert got.mode == 0o640
    assert got.sha256 == text_sha(got.text)
    assert got.size == note.stat().st_size and got.mtime_ns == note.stat().st_mtime_ns


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
        (b"caf\xe9 au lait", r"not UTF-8 \(bad byte at 3\)"),
        (b"x" * 101, "larger than the limit"),
    ],
)
def test_refuses_what_is_not_a_note(tmp_path: Path, data: bytes, reason: str) -> None:
    note = tmp_path / "a.md"
    note.write_bytes(data)
    with pytest.raises(NoteUnreadable, match=reason) as info:
        read_note(note, 100)
    assert not info.value.vanished


def test_deleted_before_read_is_vanished(tmp_path: Path) -> None:
    with pytest.raises(NoteUnreadable, match="deleted or renamed") as info:
        read_note(tmp_path / "gone.md", 100)
    assert info.value.vanished


def test_symlink_loop(tmp_path: Path) -> None:
    os.symlink(tmp_path / "b.md", tmp_path / "a.md")
    os.symlink(tmp_path / "a.md", tmp_path / "b.md")
    with pytest.raises(NoteUnreadable, match="symlink loop"):
        read_note(tmp_path / "a.md", 100)


def test_fifo_is_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    with pytest.raises(NoteUnreadable, match="not a regular file"):
        read_note(fifo, 100)


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, which reads anything: provoke EACCES at the edge where the file is opened.
    note = tmp_path / "a.md"
    note.write_text("secret")

    def denied(path: Path) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(notes, "_open_note", denied)
    with pytest.raises(NoteUnreadable, match="permission denied"):
        read_note(note, 100)


def test_a_folder_is_not_a_note(tmp_path: Path) -> None:
    (tmp_path / "dir.md").mkdir()
    with pytest.raises(NoteUnreadable):
        read_note(tmp_path / "dir.md", 100)


@pytest.mark.parametrize(
    ("old", "new", "start", "end"),
    [
        ("abc", "abcdef", 3, 6),  # written at the end
        ("abc", "abc", 3, 3),  # nothing changed
        ("", "hello", 0, 5),  # first version
        ("one\nthree\n", "one\ntwo\nthree\n", 3, 7),  # a line inserted: the point ends the word
        ("hello world", "hello brave world", 5, 11),
        ("hello world", "hello world, again", 11, 18),
        ("hello cruel world", "hello world", 6, 6),  # a deletion: the point is where it was
        ("ab\n", "ab\nab\n", 3, 6),  # repeated text: the prefix wins, the point is at the end
        ("x", "y", 0, 1),
    ],
)
def test_find_change(old: str, new: str, start: int, end: int) -> None:
    change = find_change(old, new)
    assert (change.start, change.end) == (start, end)
    assert new[: change.start] == old[: change.start]
    assert new[change.end :] == old[change.old_end :]


def test_prefix_and_suffix_match_the_naive_answer() -> None:
    rng = random.Random(7)
    for _ in range(500):
        a = "".join(rng.choice("ab\n") for _ in range(rng.randint(0, 30)))
        b = "".join(rng.choice("ab\n") for _ in range(rng.randint(0, 30)))
        naive_p = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        assert common_prefix(a, b) == naive_p
        limit = rng.randint(0, 30)
        k = 0
        while k < min(limit, len(a), len(b)) and a[len(a) - 1 - k] == b[len(b) - 1 - k]:
            k += 1
        assert common_suffix(a, b, limit) == k


def test_a_megabyte_note_diffs_quickly() -> None:
    old = "lorem ipsum dolor " * 60_000
    new = old[:500_000] + "NEW" + old[500_000:]
    change = find_change(old, new)
    assert (change.start, change.end) == (500_000, 500_003)


def test_line_col() -> None:
    assert line_col("ab\ncd", 0) == (1, 1)
    assert line_col("ab\ncd", 4) == (2, 2)
    assert line_col("ab\ncd", 3) == (2, 1)
