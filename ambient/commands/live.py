"""N branches growing on a terminal while they are sampled: one line each, redrawn in place.

Used by ``ambient continue`` when its output is a terminal (never with ``--json``
or into a pipe). Each line shows the branch's number and the end of its text so
far (line breaks shown as ``⏎``), cut to the terminal's width; redraws are
throttled. :meth:`LiveBranches.close` erases the lines, and the command then
prints the finished continuations as usual.
"""

from __future__ import annotations

import shutil
import time
from typing import TextIO

from ambient.sampling.base import Token

REDRAW_S = 1 / 15  # at most 15 redraws a second
CLEAR_LINE = "\x1b[2K"


def cursor_up(lines: int) -> str:
    """Move to the start of the line ``lines`` above."""
    return f"\x1b[{lines}F"


class LiveBranches:
    """An ``on_token`` callback that draws the growing branches on ``out`` (a terminal)."""

    def __init__(self, n: int, out: TextIO) -> None:
        self.out = out
        self.texts = [""] * n
        self.drawn = False
        self._last = 0.0

    def __call__(self, branch: int, token: Token) -> None:
        if 0 <= branch < len(self.texts):
            self.texts[branch] += token.text
        now = time.monotonic()
        if now - self._last >= REDRAW_S:
            self._last = now
            self.draw()

    def lines(self, width: int) -> list[str]:
        """What each branch's line shows: its number and the end of its text that fits ``width``."""
        room = max(8, width - 5)
        out = []
        for i, text in enumerate(self.texts, 1):
            flat = text.replace("\r", "").replace("\n", "⏎")
            tail = flat[-room:] if len(flat) > room else flat
            out.append(f"{i:>2} │ {tail}")
        return out

    def draw(self) -> None:
        width = shutil.get_terminal_size((100, 24)).columns
        parts = [cursor_up(len(self.texts))] if self.drawn else []
        parts += [CLEAR_LINE + line + "\n" for line in self.lines(width)]
        self.out.write("".join(parts))
        self.out.flush()
        self.drawn = True

    def close(self) -> None:
        """Erase the live lines (the finished continuations are printed after)."""
        if not self.drawn:
            return
        n = len(self.texts)
        self.out.write(cursor_up(n) + (CLEAR_LINE + "\n") * n + cursor_up(n))
        self.out.flush()
        self.drawn = False
