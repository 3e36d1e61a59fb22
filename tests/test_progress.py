"""Progress on a terminal for long operations (tqdm on stderr); nothing of it in a pipe or with --json."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ambient.commands.progress import nodes_bar, steps_bar
from ambient.store import TreeStore
from tests.test_live import _run_on_a_terminal

AMBIENT = Path(sys.executable).with_name("ambient")


def test_the_bars_count_what_they_are_told(capsys: pytest.CaptureFixture[str]) -> None:
    with nodes_bar(10, "indexing", enabled=True) as progress:
        assert progress is not None
        progress(4, 2)
        progress(10, 7)
    with steps_bar(["one", "two", "three"], enabled=True) as begin:
        begin("one")
        begin("two")
    err = capsys.readouterr().err
    assert "indexing" in err and "10/10" in err and "embedded=7" in err
    assert "two [1/3]" in err
    with nodes_bar(10, "indexing", enabled=False) as progress:
        assert progress is None
    assert capsys.readouterr().err == ""


def test_reindex_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with TreeStore(home / "ambient.sqlite3") as store:
        _, root = store.create_tree("The tide came in over the causeway.")
        for i in range(30):
            store.add_node(root.id, f" Wave {i} broke against the old stones.")
    env = {**os.environ, "AMBIENT_HOME": str(home)}
    shown = _run_on_a_terminal([str(AMBIENT), "reindex"], env)
    assert "indexing" in shown and "31/31" in shown
    piped = subprocess.run([str(AMBIENT), "reindex"], env=env, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "indexing" not in piped.stderr and "\r" not in piped.stderr
