"""The pick log: every offer, and what the person did with each of its continuations.

Outcomes of an offered node:

* ``picked``              the person chose it (or something below it);
* ``edited then picked``  the person rewrote it (a human node with
  ``meta.edited_from`` pointing at it) and kept the rewrite;
* ``pruned``              the person set it aside;
* ``ignored``             nothing was done with it.

:func:`dpo_pairs` turns the log into preference pairs ``(prompt, chosen,
rejected)`` for tuning a personal model: each chosen text (a picked node, or a
person's rewrite) against each rejected one (pruned, ignored, or the model's
original of a rewrite) from the same offer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from ambient.store import TreeStore
from ambient.tree import Node, Offer, OfferState, Status

PICKED = "picked"
EDITED = "edited then picked"
PRUNED = "pruned"
IGNORED = "ignored"


@dataclasses.dataclass(frozen=True)
class NodeOutcome:
    node: Node
    outcome: str
    edited: Node | None = None  # the person's rewrite, for EDITED

    @property
    def chosen_text(self) -> str:
        return self.edited.text if self.edited is not None else self.node.text

    def as_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node.id,
            "branch": self.node.branch,
            "outcome": self.outcome,
            "text": self.node.text,
            "edited_node_id": self.edited.id if self.edited is not None else None,
            "edited_text": self.edited.text if self.edited is not None else None,
        }


@dataclasses.dataclass(frozen=True)
class OfferRecord:
    offer: Offer
    prompt: str  # the text from the root to the offer's parent
    nodes: list[NodeOutcome]

    def as_dict(self) -> dict[str, Any]:
        return {
            "offer_id": self.offer.id,
            "tree_id": self.offer.tree_id,
            "parent_id": self.offer.parent_id,
            "state": str(self.offer.state),
            "created_at": self.offer.created_at,
            "prompt": self.prompt,
            "nodes": [n.as_dict() for n in self.nodes],
        }


def offer_records(store: TreeStore, tree_id: str | None = None) -> Iterator[OfferRecord]:
    """Every offer (of one tree, or of all), oldest first within a tree, with its outcomes."""
    trees = [store.get_tree(tree_id)] if tree_id is not None else store.list_trees()
    for tree in trees:
        nodes = store.tree_nodes(tree.id)
        by_id = {n.id: n for n in nodes}
        edits: dict[str, list[Node]] = {}
        for n in nodes:
            original = n.meta.get("edited_from")
            if isinstance(original, str):
                edits.setdefault(original, []).append(n)
        for offer in store.tree_offers(tree.id):
            members = [by_id[i] for i in offer.node_ids if i in by_id]
            yield OfferRecord(offer, _text_to(by_id, offer.parent_id), [_outcome(n, edits) for n in members])


def _text_to(by_id: dict[str, Node], node_id: str | None) -> str:
    parts: list[str] = []
    while node_id is not None and node_id in by_id:
        node = by_id[node_id]
        parts.append(node.text)
        node_id = node.parent_id
    return "".join(reversed(parts))


def _outcome(node: Node, edits: dict[str, list[Node]]) -> NodeOutcome:
    kept = [e for e in edits.get(node.id, []) if e.status == Status.PICKED]
    if kept:
        return NodeOutcome(node, EDITED, kept[-1])
    if node.status == Status.PRUNED:
        return NodeOutcome(node, PRUNED)
    if node.status == Status.PICKED:
        return NodeOutcome(node, PICKED)
    return NodeOutcome(node, IGNORED)


def dpo_pairs(store: TreeStore) -> Iterator[dict[str, Any]]:
    """Preference pairs ``{"prompt", "chosen", "rejected", ...}``, one per chosen/rejected couple."""
    for record in offer_records(store):
        if record.offer.state == OfferState.FAILED:
            continue
        chosen = [n for n in record.nodes if n.outcome in (PICKED, EDITED)]
        rejected = [n for n in record.nodes if n.outcome in (PRUNED, IGNORED)]
        rejected += [n for n in record.nodes if n.outcome == EDITED]  # the model's text lost to the rewrite
        for c in chosen:
            for r in rejected:
                if r.node.text.strip() == c.chosen_text.strip():
                    continue
                yield {
                    "prompt": record.prompt,
                    "chosen": c.chosen_text,
                    "rejected": r.node.text,
                    "offer_id": record.offer.id,
                    "chosen_id": c.edited.id if c.edited is not None else c.node.id,
                    "rejected_id": r.node.id,
                    "chosen_outcome": c.outcome,
                    "rejected_outcome": "edited away" if r.outcome == EDITED else r.outcome,
                }
