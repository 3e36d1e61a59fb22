"""Offers: the N continuations sampled at once under one node, stored as offered children.

An offer is begun (state ``streaming``) before sampling and finished with all
its branches in one transaction; one left streaming by a crash is failed at
the next start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ambient.errors import NotFound
from ambient.store.nodes import NodeStore
from ambient.store.rows import dumps, offer_from_row
from ambient.tree import Author, NewBranch, Node, Offer, OfferState, Status, new_id, now


class OfferStore(NodeStore):
    """The offers table, and the offered nodes each offer holds."""

    def begin_offer(
        self,
        parent_id: str,
        settings: dict[str, Any],
        meta: dict[str, Any] | None = None,
    ) -> Offer:
        """Record that N continuations are being sampled at ``parent_id``.

        Not fsynced: a streaming offer is acknowledged to nobody, and one left
        behind by a crash is marked failed at the next start.
        """
        parent = self.get_node(parent_id)
        offer_id = new_id()
        with self._tx(durable=False) as db:
            db.execute(
                "INSERT INTO offers (id, tree_id, parent_id, state, settings, meta, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    offer_id,
                    parent.tree_id,
                    parent_id,
                    OfferState.STREAMING,
                    dumps(settings),
                    dumps(meta or {}),
                    now(),
                ),
            )
        return self.get_offer(offer_id)

    def finish_offer(
        self,
        offer_id: str,
        branches: Sequence[NewBranch],
        *,
        author: Author,
        provenance: dict[str, Any] | None = None,
        state: OfferState = OfferState.DONE,
        error: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> list[Node]:
        """Store the offer's continuations as offered children, in one transaction."""
        offer = self.get_offer(offer_id)
        t = now()
        with self._tx() as db:
            nodes = [
                self._insert_node(
                    db,
                    offer.tree_id,
                    offer.parent_id,
                    b.text,
                    author,
                    Status.OFFERED,
                    offer_id=offer_id,
                    branch=i,
                    tokens=b.tokens,
                    provenance=provenance,
                    meta={"finish_reason": b.finish_reason, **(b.meta or {})},
                    created_at=t,
                )
                for i, b in enumerate(branches)
            ]
            db.execute(
                "UPDATE offers SET state = ?, error = ?, finished_at = ?, meta = ? WHERE id = ?",
                (state, error, t, dumps({**offer.meta, **(meta or {})}), offer_id),
            )
        self._notify("created", nodes)
        return nodes

    def add_offer(
        self,
        parent_id: str,
        branches: Sequence[NewBranch],
        *,
        author: Author,
        settings: dict[str, Any] | None = None,
        provenance: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> tuple[Offer, list[Node]]:
        offer = self.begin_offer(parent_id, settings or author.settings or {}, meta)
        nodes = self.finish_offer(offer.id, branches, author=author, provenance=provenance)
        return self.get_offer(offer.id), nodes

    def get_offer(self, offer_id: str) -> Offer:
        rows = self._query("SELECT * FROM offers WHERE id = ?", (offer_id,))
        if not rows:
            raise NotFound(f"no offer {offer_id!r}")
        ids = self._query("SELECT id FROM nodes WHERE offer_id = ? ORDER BY branch", (offer_id,))
        return offer_from_row(rows[0], tuple(r[0] for r in ids))

    def offers_at(self, parent_id: str) -> list[Offer]:
        rows = self._query("SELECT id FROM offers WHERE parent_id = ? ORDER BY created_at", (parent_id,))
        return [self.get_offer(r[0]) for r in rows]

    def tree_offers(self, tree_id: str) -> list[Offer]:
        rows = self._query("SELECT id FROM offers WHERE tree_id = ? ORDER BY created_at", (tree_id,))
        return [self.get_offer(r[0]) for r in rows]

    def fail_offer(self, offer_id: str, reason: str) -> bool:
        """Mark a streaming offer failed (when its result could not be stored); True if it was."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE offers SET state = ?, error = ?, finished_at = ? WHERE id = ? AND state = ?",
                (OfferState.FAILED, reason, now(), offer_id, OfferState.STREAMING),
            )
            return cur.rowcount > 0

    def fail_unfinished_offers(self, reason: str) -> int:
        """Mark offers left streaming by a crash as failed (called at start-up)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE offers SET state = ?, error = ?, finished_at = ? WHERE state = ?",
                (OfferState.FAILED, reason, now(), OfferState.STREAMING),
            )
            return cur.rowcount
