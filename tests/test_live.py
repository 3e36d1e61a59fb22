"""`ambient continue` on a terminal: the N branches grow in place while sampled; piped, it prints once."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from ambient.commands.live import CLEAR_LINE, LiveBranches, cursor_up
from ambient.sampling.base import Token

AMBIENT = Path(sys.executable).with_name("ambient")


def test_each_branch_has_a_line_cut_to_the_width() -> None:
    live = LiveBranches(2, io.StringIO())
    live(0, Token("Once upon\na time", -0.1))
    live(1, Token("x" * 200, -0.2))
    first, second = live.lines(width=40)
    assert first == " 1 │ Once upon⏎a time"
    assert second == " 2 │ " + "x" * 35 and len(second) == 40


def test_redraws_in_place_and_erases_at_the_end() -> None:
    out = io.StringIO()
    live = LiveBranches(3, out)
    live.draw()
    live.draw()
    live.close()
    text = out.getvalue()
    assert text.count(CLEAR_LINE) == 3 + 3 + 3 and text.count(cursor_up(3)) == 3  # 2nd draw, 2x erase
    assert text.startswith(CLEAR_LINE + " 1 │ \n")


def _run_on_a_terminal(argv: list[str], env: dict[str, str], timeout: float = 120.0) -> str:
    main, child = pty.openpty()
    proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                data = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(10)
    os.close(main)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_ambient_continue_shows_the_branches_growing(tmp_path: Path, tiny_model_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("The lighthouse keeper had not spoken to anyone in three weeks when")
    env = {**os.environ, "AMBIENT_HOME": str(tmp_path / "home"), "COLUMNS": "100"}
    argv = [str(AMBIENT), "continue", str(note), "-n", "3", "--max-tokens", "24", "--no-memory"]
    argv += ["--model", str(tiny_model_path)]
    shown = _run_on_a_terminal(argv, env)
    final = shown.index("── 1 ·")
    live = shown[:final]
    assert CLEAR_LINE in live and " 1 │ " in live and " 3 │ " in live  # drawn while sampling
    assert shown.count("── ") >= 3 and "pick one with: ambient pick NODE" in shown
    piped = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "\x1b[" not in piped.stdout and "── 3 ·" in piped.stdout
