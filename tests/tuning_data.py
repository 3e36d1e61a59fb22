"""The committed test data of tuning (tests/data/picks.jsonl, made by tests/data/make_picks.py) as picks.

Each line is an offer the real default model made from a Loom fixture text, and the simulated
person's pick among its branches (ambient/bench/taste.py). :func:`fill_store` replays them into
a real store (a tree per prompt, the offer, the pick), so tuning reads them as it reads anyone's
pick log, through ``ambient.picklog.dpo_pairs``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ambient.store import TreeStore
from ambient.tree import MODEL, Author, NewBranch
from ambient.tuning.data import Choice

PICKS = Path(__file__).resolve().parent / "data" / "picks.jsonl"


def offers() -> list[dict[str, Any]]:
    """Every offer of the test data, in the order the person saw them."""
    assert PICKS.is_file(), f"{PICKS} is missing: run tests/data/make_picks.py"
    return [json.loads(line) for line in PICKS.read_text(encoding="utf-8").splitlines() if line.strip()]


def picked() -> list[dict[str, Any]]:
    """The offers where the person picked a branch."""
    return [o for o in offers() if o["chosen"] is not None]


def choices(records: list[dict[str, Any]] | None = None, scope: str = "notes") -> list[Choice]:
    """The picks as tuning's choices (without a store: for the trainer's own tests)."""
    out = []
    for r in records if records is not None else picked():
        chosen = r["continuations"][r["chosen"]]
        rejected = tuple(
            t for i, t in enumerate(r["continuations"]) if i != r["chosen"] and t.strip() != chosen.strip()
        )
        out.append(Choice(f"offer-{r['offer']}", r["prompt"], chosen, rejected, scope, float(r["offer"])))
    return out


def fill_store(
    store: TreeStore, records: list[dict[str, Any]], *, source: str = "ui", scope: str = "ui"
) -> None:
    """Replay ``records`` into ``store``: each prompt a tree, its offer, and the person's pick."""
    for r in records:
        _, root = store.create_tree(r["prompt"], source=source, scope=scope)
        offer = store.begin_offer(root.id, {"n": len(r["continuations"]), "seed": r["seed"]})
        author = Author(MODEL, r.get("model", "gemma-3-270m"))
        nodes = store.finish_offer(offer.id, [NewBranch(t) for t in r["continuations"]], author=author)
        if r["chosen"] is not None:
            store.pick(nodes[r["chosen"]].id)
