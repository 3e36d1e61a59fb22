"""Progress for long operations, on a terminal only (tqdm on stderr); quiet into a pipe or with --json."""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable, Iterator
from typing import Any

from tqdm import tqdm

Progress = Callable[[int, int], None]  # (nodes seen, nodes embedded) so far, as the memory index reports


def shown(as_json: bool = False) -> bool:
    """Whether to show progress: stderr is a terminal and the output is not JSON."""
    return not as_json and sys.stderr.isatty()


@contextlib.contextmanager
def nodes_bar(total: int, what: str, enabled: bool) -> Iterator[Progress | None]:
    """A bar over ``total`` nodes for the memory index's progress callback (None when not shown)."""
    if not enabled or total <= 0:
        yield None
        return
    with tqdm(total=total, desc=what, unit="node", file=sys.stderr, **_size()) as bar:  # the count stays

        def update(seen: int, embedded: int) -> None:
            bar.update(seen - bar.n)
            bar.set_postfix(embedded=embedded, refresh=False)

        yield update


@contextlib.contextmanager
def steps_bar(steps: list[str], enabled: bool) -> Iterator[Callable[[str], None]]:
    """A bar over named steps; the callback is told which step begins."""
    if not enabled:
        yield lambda _step: None
        return
    form = "{desc} [{n}/{total}] {elapsed}"
    with tqdm(total=len(steps), file=sys.stderr, leave=False, bar_format=form, **_size()) as bar:
        started: list[str] = []

        def begin(step: str) -> None:
            if started:
                bar.update(1)
            started.append(step)
            bar.set_description_str(step)

        yield begin


def items(values: list[Any], what: str, enabled: bool) -> Any:
    """``values``, with a bar over them when shown."""
    return tqdm(values, desc=what, file=sys.stderr, leave=False, **_size()) if enabled else values


def bar(total: int, what: str, unit: str = "it") -> Any:
    """A bar on stderr over ``total`` steps that goes away when closed (for a caller that shows it)."""
    return tqdm(total=total, desc=what, unit=unit, file=sys.stderr, leave=False, **_size())


def _size() -> dict[str, int]:
    """The terminal's size for tqdm; one that reports none (a fresh pty says 0 x 0) counts as 80 x 24,
    since tqdm hides every bar below a screen it thinks has no lines."""
    size = shutil.get_terminal_size((80, 24))
    return {"ncols": size.columns, "nrows": size.lines}
