"""Tuning's own process (ambient.tuning.background): real child processes, real signals.

The targets are module-level functions here, as the child imports them by name.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ambient.errors import AmbientError, InvalidInput
from ambient.tuning import background
from ambient.tuning.trainer import Interrupted


def who(*, cancel: threading.Event) -> dict[str, int]:
    return {"pid": os.getpid(), "nice": os.nice(0)}


def until_cancelled(marker: str, *, cancel: threading.Event) -> None:
    with open(marker, "w") as f:
        f.write("started")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if cancel.is_set():
            raise Interrupted("tuning was interrupted")
        time.sleep(0.05)


def refuses(*, cancel: threading.Event) -> None:
    raise InvalidInput("5 preference pair(s) from your picks so far; tuning needs at least 12")


def breaks(*, cancel: threading.Event) -> None:
    raise KeyError("weights")


def dies(*, cancel: threading.Event) -> None:
    os._exit(3)


def test_the_child_is_another_process_at_the_lowest_priority() -> None:
    got = background.run(who)
    assert got["pid"] != os.getpid()
    assert got["nice"] == min(19, os.nice(0) + background.LOWEST)


def test_cancel_stops_the_child_as_an_interruption(tmp_path: Path) -> None:
    cancel = threading.Event()
    marker = tmp_path / "started"
    outcome: dict[str, BaseException] = {}

    def call() -> None:
        try:
            background.run(until_cancelled, str(marker), cancel=cancel)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=call)
    worker.start()
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    t0 = time.monotonic()
    cancel.set()
    worker.join(30)
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), Interrupted)
    assert time.monotonic() - t0 < 5


def test_errors_come_back_as_one_line() -> None:
    with pytest.raises(AmbientError, match=r"^5 preference pair\(s\) .* at least 12$"):
        background.run(refuses)
    with pytest.raises(RuntimeError, match=r"^tuning failed: KeyError: 'weights'$"):
        background.run(breaks)
    with pytest.raises(RuntimeError, match=r"ended without an answer \(exit code 3\)"):
        background.run(dies)
