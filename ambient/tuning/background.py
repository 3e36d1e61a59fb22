"""Tuning in its own process at the lowest CPU priority, so that offers go on while it trains.

:func:`run` starts a fresh interpreter (multiprocessing's *spawn*: no copy of the caller's
threads, model or open database), which lowers its own priority to ``nice`` 19 and then calls
the target. The caller blocks (call it from a worker thread, never the event loop) until the
child answers. Setting ``cancel`` in the caller sends the child SIGTERM, which sets the
child's own cancel event: the target stops at its next check with
:class:`~ambient.tuning.trainer.Interrupted` and writes nothing (an adapter is written under a
temporary name and renamed whole, see :func:`ambient.adapters.write`).

The child's answer is data: ``("ok", value)`` or ``("error", kind, message)``; an error comes
back as the same one-line :class:`~ambient.errors.AmbientError` (or ``Interrupted``) the
target raised, anything else as a ``RuntimeError`` naming it. A child that dies without
answering (killed, out of memory) is a ``RuntimeError`` with its exit code.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from ambient.errors import AmbientError, InvalidInput

LOWEST = 19  # os.nice: the scheduler runs the daemon and its offers first
_POLL_S = 0.2


def run(
    target: Callable[..., Any], *args: Any, cancel: threading.Event | None = None, nice: int = LOWEST
) -> Any:
    """``target(*args, cancel=event)`` in a child process at priority ``nice``; its (picklable) result.

    ``target`` must be a module-level function (the child imports it by name).
    """
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, nice, target, args), name="ambient-tune", daemon=True)
    child.start()
    send.close()  # the child holds the only writer: a child that dies ends the pipe
    try:
        answer = _wait(receive, child, cancel)
    finally:
        receive.close()
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()
    return _result(answer, child.exitcode)


def _wait(receive: Any, child: Any, cancel: threading.Event | None) -> Any:
    """The child's answer, or None if it ended without one; SIGTERM to it once ``cancel`` is set."""
    signalled = False
    while True:
        if receive.poll(_POLL_S):
            try:
                return receive.recv()
            except EOFError:
                return None
        if cancel is not None and cancel.is_set() and not signalled and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
            signalled = True
        if not child.is_alive() and not receive.poll(0):
            return None


def _result(answer: Any, exitcode: int | None) -> Any:
    from ambient.tuning.trainer import Interrupted

    if answer is None:
        raise RuntimeError(f"the tuning process ended without an answer (exit code {exitcode})")
    if answer[0] == "ok":
        return answer[1]
    _, kind, message = answer
    if kind == "Interrupted":
        raise Interrupted(message)
    if kind == "AmbientError":
        raise InvalidInput(message)  # one line, as the child's error said it
    raise RuntimeError(f"tuning failed: {message}")


def _child(send: Any, nice: int, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    from ambient.tuning.trainer import Interrupted

    if nice:
        os.nice(nice)
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    try:
        answer: tuple[Any, ...] = ("ok", target(*args, cancel=cancel))
    except Interrupted as exc:
        answer = ("error", "Interrupted", str(exc))
    except AmbientError as exc:
        answer = ("error", "AmbientError", str(exc))
    except Exception as exc:  # sent back whole, as one line, to the caller
        answer = ("error", type(exc).__name__, f"{type(exc).__name__}: {exc}")
    send.send(answer)
    send.close()
