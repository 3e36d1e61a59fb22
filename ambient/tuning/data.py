"""What tuning learns from: the pick log as offers with one chosen and some rejected continuations.

:func:`ambient.picklog.dpo_pairs` gives one (chosen, rejected) pair per couple; tuning groups
them back by offer and chosen text (:class:`Choice`), so that the prompt, read once, serves every
pair of the offer. Only picks made in places tuning may learn from count: the person's private
places (notes, speech, the UI, the command line, imports) always; a shared place (a Discord
server) only when ``tune.shared_places`` names it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from ambient.picklog import dpo_pairs
from ambient.scopes import PRIVATE, wall_of
from ambient.store import TreeStore


@dataclasses.dataclass(frozen=True)
class Choice:
    """One chosen continuation of an offer, against the continuations of that offer it beat."""

    offer_id: str
    prompt: str
    chosen: str
    rejected: tuple[str, ...]
    scope: str = "cli"
    created_at: float = 0.0

    @property
    def pairs(self) -> int:
        return len(self.rejected)


@dataclasses.dataclass(frozen=True)
class Picks:
    """The choices tuning may learn from, oldest first, and what was left out (by scope)."""

    choices: list[Choice]
    left_out: dict[str, int]  # scope -> pairs not allowed (a shared place not opted in)

    @property
    def pairs(self) -> int:
        return sum(c.pairs for c in self.choices)

    def scopes(self) -> dict[str, int]:
        """Pairs per scope."""
        out: dict[str, int] = {}
        for c in self.choices:
            out[c.scope] = out.get(c.scope, 0) + c.pairs
        return out

    def split(self, holdout: float) -> tuple[list[Choice], list[Choice]]:
        """(train, held out): the held-out choices are the last ``holdout`` share of pairs, by time."""
        return split_by_time(self.choices, holdout)


def allowed(scope: str, shared_places: Iterable[str]) -> bool:
    """Whether picks made in ``scope`` may tune the personal model."""
    return wall_of(scope) == PRIVATE or scope in set(shared_places)


def collect(store: TreeStore, shared_places: Sequence[str] = ()) -> Picks:
    """Every choice of the pick log that tuning may use, oldest offer first."""
    offers: dict[str, tuple[str, float]] = {}  # offer id -> (scope, created_at)
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    left_out: dict[str, int] = {}
    for pair in dpo_pairs(store):
        offer_id = pair["offer_id"]
        if offer_id not in offers:
            offer = store.get_offer(offer_id)
            offers[offer_id] = (store.get_tree(offer.tree_id).scope, offer.created_at)
        scope, created = offers[offer_id]
        if not allowed(scope, shared_places):
            left_out[scope] = left_out.get(scope, 0) + 1
            continue
        key = (offer_id, pair["chosen"])
        entry = grouped.setdefault(
            key, {"prompt": pair["prompt"], "rejected": [], "scope": scope, "created_at": created}
        )
        if pair["rejected"] not in entry["rejected"]:
            entry["rejected"].append(pair["rejected"])
    choices = [
        Choice(offer_id, e["prompt"], chosen, tuple(e["rejected"]), e["scope"], e["created_at"])
        for (offer_id, chosen), e in grouped.items()
        if e["prompt"].strip() and chosen.strip()
    ]
    choices.sort(key=lambda c: (c.created_at, c.offer_id))
    return Picks(choices, left_out)


def split_by_time(choices: Sequence[Choice], holdout: float) -> tuple[list[Choice], list[Choice]]:
    """The oldest choices to train on, the newest (about ``holdout`` of the pairs) held out."""
    total = sum(c.pairs for c in choices)
    want = round(total * holdout)
    held: list[Choice] = []
    count = 0
    for c in reversed(choices):
        if count >= want:
            break
        held.append(c)
        count += c.pairs
    held.reverse()
    return list(choices[: len(choices) - len(held)]), held


def take_pairs(choices: Sequence[Choice], pairs: int) -> list[Choice]:
    """The oldest choices holding at least ``pairs`` pairs (the last one cut down to fit)."""
    out: list[Choice] = []
    count = 0
    for c in choices:
        if count >= pairs:
            break
        need = pairs - count
        out.append(c if c.pairs <= need else dataclasses.replace(c, rejected=c.rejected[:need]))
        count += min(c.pairs, need)
    return out
