"""The walls of the notes place: real paths inside the watched folders, the folders from the
configuration, and the note lock shared by processes (the daemon and `ambient accept`)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ambient.config import load_config
from ambient.errors import Conflict
from integrations.notes.notes import NoteUnreadable, read_note
from integrations.notes.walls import Walls

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "notes"
    (path / "sub").mkdir(parents=True)
    return path


def test_only_real_paths_inside_a_folder_are_in(folder: Path, tmp_path: Path) -> None:
    walls = Walls.of([folder], tmp_path / "home")
    (folder / "sub" / "a.md").write_text("in")
    (tmp_path / "out.md").write_text("out")
    (folder / "in-link.md").symlink_to(folder / "sub" / "a.md")
    (folder / "out-link.md").symlink_to(tmp_path / "out.md")
    (folder / "dir-link").symlink_to(tmp_path)  # a linked folder: its files are outside too
    assert walls.inside(folder / "sub" / "a.md") == folder / "sub" / "a.md"
    assert walls.inside(folder / "in-link.md") == folder / "sub" / "a.md"
    assert walls.inside(folder / "out-link.md") is None
    assert walls.inside(folder / "dir-link" / "out.md") is None
    assert walls.inside(folder) is None and walls.inside(tmp_path / "notes-2" / "a.md") is None
    with pytest.raises(Conflict, match=f"it links to {tmp_path / 'out.md'}"):
        walls.writable(folder / "out-link.md")


def test_reading_refuses_a_link_outside_and_opens_the_real_file(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "out.md").write_text("Never read")
    (folder / "out-link.md").symlink_to(tmp_path / "out.md")
    with pytest.raises(NoteUnreadable, match="outside the watched folders"):
        read_note(folder / "out-link.md", 100, [folder])
    (folder / "a.md").write_text("Read")
    (folder / "in-link.md").symlink_to(folder / "a.md")
    got = read_note(folder / "in-link.md", 100, [folder])
    assert got.text == "Read" and got.path == folder / "in-link.md"


def test_the_folders_come_from_the_configuration(tmp_path: Path, folder: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "ambient.toml").write_text(
        '[sources.notes]\nfolders = ["../notes", "../missing"]\nmax_bytes = 1234\n', encoding="utf-8"
    )
    walls = Walls.from_config(load_config(env={"AMBIENT_HOME": str(home)}))
    assert walls.folders == (folder.resolve(),)  # relative to the file; a missing folder holds nothing
    assert walls.max_bytes == 1234 and walls.locks == home / "locks"
    empty = Walls.from_config(load_config(env={"AMBIENT_HOME": str(tmp_path / "other")}))
    assert empty.folders == ()


def test_the_note_lock_is_a_private_file_that_other_processes_wait_for(folder: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    note = folder / "a.md"
    note.write_text("x")
    holder = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from integrations.notes.walls import Walls\n"
        "with Walls.of([Path(sys.argv[1])], Path(sys.argv[2])).lock(Path(sys.argv[3])):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(0.6)\n"
    )
    argv = [sys.executable, "-c", holder, str(folder), str(home), str(note)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        started = time.monotonic()
        with Walls.of([folder], home).lock(note):
            waited = time.monotonic() - started
    finally:
        proc.wait(10)
    assert waited > 0.3, waited  # the other process held it
    [lock] = list((home / "locks").iterdir())
    assert os.stat(lock).st_mode & 0o777 == 0o600 and os.stat(home / "locks").st_mode & 0o777 == 0o700


def test_the_note_lock_excludes_threads_of_one_process(folder: Path, tmp_path: Path) -> None:
    walls = Walls.of([folder], tmp_path / "home")
    note = folder / "a.md"
    inside: list[int] = []
    overlaps: list[int] = []

    def work(i: int) -> None:
        for _ in range(50):
            with walls.lock(note):
                inside.append(i)
                if len(inside) > 1:
                    overlaps.append(i)
                time.sleep(0.0005)
                inside.remove(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert overlaps == [] and inside == []
