"""Walls between places: which trees an offer made in one place may retrieve from.

Every tree has a **scope**, given by the place that made it: a bare name for
the person's private places (``notes``, ``speech``, ``ui``, ``cli``,
``import``), and ``kind:id`` for a place shared with other people (a Discord
server: ``discord:<server id>``). A scope's **wall** is what it sees by
default: private scopes all share the wall ``private`` (the person's notes,
voice and typed text see one another); a shared scope is a wall of its own (a
Discord server sees only its own server's trees, never the private places and
never another server).

Sharing beyond that is opt-in, per place, in ``ambient.toml``::

    [memory.share]
    "discord:123456789" = ["notes"]    # this server's offers may also retrieve from your notes
    notes = ["discord:123456789"]      # your notes' offers may retrieve that server's chat

A value names scopes, or ``private`` for every private one. Pruned nodes are
left out unless ``memory.include_pruned`` is on.

The memory index stores ``scope`` and ``wall`` with every entry (Chroma's
filters cannot match by prefix); :func:`where` is the one filter that both
context building and ``ambient search --scope`` use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ambient.errors import ConfigError

PRIVATE = "private"


def wall_of(scope: str) -> str:
    """The wall a scope stands behind: ``private`` for a bare name, else the scope itself."""
    return scope if ":" in scope else PRIVATE


@dataclasses.dataclass(frozen=True)
class View:
    """What an offer made in ``scope`` may retrieve."""

    scope: str
    walls: tuple[str, ...]  # whole walls visible (its own, and shared ones named as "private")
    scopes: tuple[str, ...] = ()  # single scopes shared with it beyond its walls
    include_pruned: bool = False


def view_for(scope: str, share: Mapping[str, Sequence[str]], include_pruned: bool = False) -> View:
    """The view of ``scope``: its own wall, plus what ``share`` opens to it or to its wall.

    A shared target (``private``, or a ``kind:id`` scope, which is its own wall) opens a whole wall;
    a bare private name (``notes``) opens that one scope.
    """
    walls = [wall_of(scope)]
    scopes: list[str] = []
    for key in dict.fromkeys((scope, wall_of(scope))):
        for target in share.get(key, ()):
            opened = walls if target == PRIVATE or ":" in target else scopes
            if target not in opened:
                opened.append(target)
    return View(scope, tuple(walls), tuple(s for s in scopes if wall_of(s) not in walls), include_pruned)


def where(view: View) -> dict[str, Any]:
    """The Chroma ``where`` clause of a view (entries without scope metadata match nothing)."""
    visible: list[dict[str, Any]] = [{"wall": {"$in": list(view.walls)}}]
    if view.scopes:
        visible.append({"scope": {"$in": list(view.scopes)}})
    clause = visible[0] if len(visible) == 1 else {"$or": visible}
    if view.include_pruned:
        return clause
    return {"$and": [clause, {"status": {"$ne": "pruned"}}]}


def check_share(share: Mapping[str, Any], key: str = "memory.share") -> dict[str, tuple[str, ...]]:
    """``[memory.share]`` as scope -> scopes, or a ConfigError naming what is wrong."""
    checked: dict[str, tuple[str, ...]] = {}
    for scope, targets in share.items():
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list | tuple) or not all(isinstance(t, str) and t for t in targets):
            raise ConfigError(
                f'{key}.{scope} must be a list of scopes, e.g. {scope} = ["notes"], got {targets!r}'
            )
        checked[str(scope)] = tuple(targets)
    return checked


def describe_sharing(share: Mapping[str, Sequence[str]]) -> list[str]:
    """One line per opening in the walls, for ``ambient run`` to state at start."""
    return [
        f"memory sharing is on: offers in {scope} may retrieve from {', '.join(targets)}"
        for scope, targets in sorted(share.items())
        if targets
    ]
