"""TreeStore: the one object the rest of ambient uses to read and write the multiverse.

It is assembled from layers that each own a concept: the connection
(:mod:`.connection`), trees and nodes (:mod:`.nodes`), and on top of nodes the
offers (:mod:`.offers`), the human actions with their pick log (:mod:`.actions`), and
forgetting (:mod:`.forgetting`).
"""

from __future__ import annotations

from ambient.store.actions import ActionLog
from ambient.store.forgetting import Forgetting
from ambient.store.offers import OfferStore


class TreeStore(OfferStore, ActionLog, Forgetting):
    """Durable storage of trees, nodes, offers, revisions and the pick log."""
