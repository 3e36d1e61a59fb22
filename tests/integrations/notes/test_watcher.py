"""Real watchdog events on temporary folders: one "changed" per save, whatever the editor does."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from integrations.notes.options import DEFAULT_IGNORE
from integrations.notes.watcher import NoteFilter, NoteWatcher
from tests.integrations.notes.conftest import wait_for

# watchdog 7.1 warns (in its inotify thread) when a new folder is watched twice in a race, as when
# `git init` creates .git/hooks; harmless, but pytest's "error" filter would kill that thread.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

QUIET_S = 0.15
SETTLE_S = 0.6  # several quiet windows: any second event would have arrived


class Recorder:
    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, path: str) -> None:
        self.paths.append(path)


@pytest.fixture
async def watched(notes_dir: Path) -> AsyncIterator[tuple[NoteWatcher, Recorder]]:
    recorder = Recorder()
    note_filter = NoteFilter([notes_dir], ("*.md", "*.txt"), DEFAULT_IGNORE)
    watcher = NoteWatcher([notes_dir], note_filter, QUIET_S, recorder, asyncio.get_running_loop())
    watcher.start()
    yield watcher, recorder
    watcher.stop()
    await asyncio.to_thread(watcher.join)


async def saved(recorder: Recorder, save: Callable[[], None]) -> list[str]:
    recorder.paths.clear()
    await asyncio.to_thread(save)
    await asyncio.sleep(SETTLE_S)
    return list(recorder.paths)


def write_in_place(note: Path, text: str) -> None:
    with note.open("r+", encoding="utf-8") as fh:
        fh.seek(0, os.SEEK_END)
        fh.write(text)


def truncate_and_write(note: Path, text: str) -> None:
    with note.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def temp_and_rename(note: Path, text: str) -> None:
    """VS Code and many others: write a temporary file beside the note, rename it over the note."""
    tmp = note.with_name(f".{note.name}.swp.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, note)


def vim_backup_rename(note: Path, text: str) -> None:
    """vim with backupcopy=no: rename the note to note~, write a new note, delete note~."""
    backup = note.with_name(note.name + "~")
    os.rename(note, backup)
    probe = note.with_name("4913")  # vim checks it may create files in the folder
    probe.write_text("")
    probe.unlink()
    note.write_text(text, encoding="utf-8")
    backup.unlink()


@pytest.mark.parametrize("save", [write_in_place, truncate_and_write, temp_and_rename, vim_backup_rename])
async def test_each_save_style_gives_one_event(
    watched: tuple[NoteWatcher, Recorder], notes_dir: Path, save: Callable[[Path, str], None]
) -> None:
    watcher, recorder = watched
    note = notes_dir / "today.md"
    await saved(recorder, lambda: note.write_text("first line\n"))
    for i in range(3):  # several saves in a row, each its own event
        events = await saved(recorder, lambda i=i: save(note, f"line {i}\n"))
        assert events == [str(note)], save.__name__
    assert watcher.raw_events > watcher.changes  # the bursts were real, and were folded


async def test_a_burst_of_writes_within_the_quiet_window_is_one_event(
    watched: tuple[NoteWatcher, Recorder], notes_dir: Path
) -> None:
    _, recorder = watched
    note = notes_dir / "a.md"

    def burst() -> None:
        for i in range(20):
            note.write_text(f"version {i}\n")

    assert await saved(recorder, burst) == [str(note)]


async def test_debounce_is_per_path(watched: tuple[NoteWatcher, Recorder], notes_dir: Path) -> None:
    _, recorder = watched
    a, b = notes_dir / "a.md", notes_dir / "sub" / "b.txt"
    b.parent.mkdir()
    await asyncio.sleep(0.1)  # the new subfolder gets its watch

    def both() -> None:
        a.write_text("a")
        b.write_text("b")

    assert sorted(await saved(recorder, both)) == sorted([str(a), str(b)])


@pytest.mark.parametrize(
    "name",
    [".hidden.md", ".git/notes.md", "sub/.obsidian/x.md", "image.png", "note.md~", "draft.md.swp", "#a.md#"],
)
async def test_what_is_not_a_note_gives_nothing(
    watched: tuple[NoteWatcher, Recorder], notes_dir: Path, name: str
) -> None:
    _, recorder = watched
    path = notes_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.sleep(0.1)
    assert await saved(recorder, lambda: path.write_text("x")) == []


async def test_a_git_commit_in_the_folder_gives_nothing(
    watched: tuple[NoteWatcher, Recorder], notes_dir: Path
) -> None:
    _, recorder = watched
    assert shutil.which("git") is not None, "git is not installed: `make system` (apt-get install git)"

    def commit() -> None:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
        env["GIT_COMMITTER_EMAIL"] = "t@t"
        subprocess.run(["git", "init", "-q"], cwd=notes_dir, check=True, env=env)
        subprocess.run(
            ["git", "commit", "-q", "--allow-empty", "-m", "x"], cwd=notes_dir, check=True, env=env
        )

    assert await saved(recorder, commit) == []


async def test_deleting_a_note_gives_nothing(watched: tuple[NoteWatcher, Recorder], notes_dir: Path) -> None:
    _, recorder = watched
    note = notes_dir / "a.md"
    await saved(recorder, lambda: note.write_text("x"))
    assert await saved(recorder, note.unlink) == []


async def test_symlink_loops_do_not_stop_the_watcher(
    watched: tuple[NoteWatcher, Recorder], notes_dir: Path
) -> None:
    watcher, recorder = watched

    def loops() -> None:
        os.symlink(notes_dir, notes_dir / "loop")  # a folder that contains itself
        os.symlink(notes_dir / "y.md", notes_dir / "x.md")
        os.symlink(notes_dir / "x.md", notes_dir / "y.md")

    await saved(recorder, loops)  # the file links may be reported; reading them is refused later
    assert watcher.alive
    note = notes_dir / "real.md"
    assert await saved(recorder, lambda: note.write_text("still watching")) == [str(note)]


async def test_a_folder_that_disappears_is_one_log_line_and_the_others_stay_watched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    recorder = Recorder()
    note_filter = NoteFilter([one, two], ("*.md",), DEFAULT_IGNORE)
    watcher = NoteWatcher([one, two], note_filter, QUIET_S, recorder, asyncio.get_running_loop())
    watcher.start()
    try:
        with caplog.at_level(logging.WARNING, logger="integrations.notes.watcher"):
            (one / "a.md").write_text("x")
            await asyncio.to_thread(shutil.rmtree, one)
            await wait_for(lambda: watcher.gone)
            await asyncio.sleep(SETTLE_S)
        lines = [r for r in caplog.records if "disappeared" in r.getMessage()]
        assert len(lines) == 1 and str(one) in lines[0].getMessage()
        assert watcher.alive
        note = two / "b.md"
        assert await saved(recorder, lambda: note.write_text("y")) == [str(note)]
    finally:
        watcher.stop()
        await asyncio.to_thread(watcher.join)


def test_filter(tmp_path: Path) -> None:
    home = tmp_path / "notes" / "ambient-home"
    f = NoteFilter([tmp_path / "notes"], ("*.md", "*.txt"), (*DEFAULT_IGNORE, "drafts/*.txt"), [home])
    yes = ["a.md", "sub/deeper/b.txt"]
    no = ["a.pdf", ".a.md", "a.md~", "sub/.git/c.md", "drafts/x.txt", "ambient-home/sidecars/a.md.offers.md"]
    assert all(f.is_note(tmp_path / "notes" / p) for p in yes)
    assert not any(f.is_note(tmp_path / "notes" / p) for p in no)
    assert not f.is_note(tmp_path / "elsewhere.md")
    assert not f.is_note(tmp_path / "notes")
