"""TreeStore: the multiverse, kept durably in SQLite.

WAL mode, foreign keys on, ``synchronous=FULL`` (an acknowledged write survives
a crash), and named schema migrations recorded in ``schema_migrations``.

The store is the source of truth: the memory index, sidecars and the UI are
all derived from it. One connection is shared behind a lock, so the store can
be used from worker threads (the daemon never calls it on the event loop).

Modules: :mod:`.schema` (migrations), :mod:`.rows` (rows <-> :mod:`ambient.tree`
data classes), :mod:`.connection` (connection, transactions, :class:`StoreError`),
:mod:`.nodes` (trees and nodes), :mod:`.offers`, :mod:`.actions` (human actions,
revisions, pick log) and :mod:`.treestore` (:class:`TreeStore`, all of them together).
"""

from ambient.store.connection import StoreError
from ambient.store.forgetting import Forgotten
from ambient.store.schema import MIGRATIONS
from ambient.store.treestore import TreeStore

__all__ = ["MIGRATIONS", "Forgotten", "StoreError", "TreeStore"]
