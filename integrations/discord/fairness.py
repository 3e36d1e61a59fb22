"""Fairness between the members of a server: who may start a pull now, and why not.

A *pull* is anything that samples: ``/continue``, the menu, ``!continue``,
**More like this** and **Branch** (a pick samples nothing). Before a pull does
anything (no thread opened, nothing sampled), :meth:`Fairness.admit` checks,
in this order:

1. the member's limit: at most ``member_pulls`` pulls started in the last
   ``member_window_s`` seconds (a sliding window; 0 = no limit);
2. one pull at a time per member, so one member cannot fill the server's slots;
3. the server's cap: at most ``server_concurrent_pulls`` pulls running or
   waiting at once. Each waits in the daemon's one queue, which the notes and
   the other places share, so this bounds what Discord can put before them.

A refused pull is not counted; an admitted one counts even if it fails. The
refusal (:class:`Limited`) says when or how to try again. Pure: ids and a
clock, no Discord; the slot is given back when the pull ends, however it ends.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from types import TracebackType

from integrations.discord.options import DiscordOptions
from integrations.discord.replies import WAIT, Refused

Clock = Callable[[], float]


class Limited(Refused):
    """A pull refused for fairness; the message says when to try again."""

    reaction = WAIT


class Slot:
    """One admitted pull; leaving the ``with`` block (or :meth:`release`) frees its place."""

    def __init__(self, fairness: Fairness, guild_id: int, member_id: int) -> None:
        self._fairness = fairness
        self._key = (guild_id, member_id)
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._fairness._release(*self._key)

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class Fairness:
    """The pulls each member started recently, and the pulls running in each server."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._started: dict[tuple[int, int], collections.deque[float]] = {}
        self._running: dict[int, set[int]] = {}  # server id -> members with a pull running

    def admit(self, options: DiscordOptions, guild_id: int, member_id: int) -> Slot:
        """A slot for this member's pull now, or :class:`Limited` saying when to try again."""
        now = self.clock()
        self._forget_before(now - options.member_window_s)
        started = self._started.get((guild_id, member_id), collections.deque())
        if options.member_pulls and len(started) >= options.member_pulls:
            wait = max(1, math.ceil(started[0] + options.member_window_s - now))
            raise Limited(
                f"you can pull again in {wait} s (each member may start {options.member_pulls} "
                f"pulls every {options.member_window_s} s here)."
            )
        running = self._running.setdefault(guild_id, set())
        if member_id in running:
            raise Limited("your last pull is still running: wait for its continuations, then pull again.")
        if len(running) >= options.server_concurrent_pulls:
            raise Limited(
                f"ambient is already busy with {len(running)} pulls in this server: "
                "try again in a moment, when one of them is done."
            )
        if options.member_pulls:
            started.append(now)
            self._started[(guild_id, member_id)] = started
        running.add(member_id)
        return Slot(self, guild_id, member_id)

    def running(self, guild_id: int) -> int:
        """How many pulls run (or wait in the daemon) in this server now."""
        return len(self._running.get(guild_id, ()))

    def _release(self, guild_id: int, member_id: int) -> None:
        running = self._running.get(guild_id)
        if running is not None:
            running.discard(member_id)
            if not running:
                del self._running[guild_id]

    def _forget_before(self, cutoff: float) -> None:
        """Drop the starts older than the window (and members with none left): memory stays small."""
        for key in list(self._started):
            started = self._started[key]
            while started and started[0] <= cutoff:
                started.popleft()
            if not started:
                del self._started[key]
