"""The tree store's schema: named migrations, applied in order and recorded by name.

An existing database keeps opening because ``schema_migrations`` records the
name of every migration already applied: never rename or reorder these, only
append new ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

from ambient.tree import now

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE trees (
            id TEXT PRIMARY KEY,
            root_id TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE offers (
            id TEXT PRIMARY KEY,
            tree_id TEXT NOT NULL REFERENCES trees(id) ON DELETE CASCADE,
            parent_id TEXT NOT NULL,
            state TEXT NOT NULL,
            settings TEXT NOT NULL DEFAULT '{}',
            meta TEXT NOT NULL DEFAULT '{}',
            error TEXT,
            created_at REAL NOT NULL,
            finished_at REAL
        );
        CREATE TABLE nodes (
            id TEXT PRIMARY KEY,
            tree_id TEXT NOT NULL REFERENCES trees(id) ON DELETE CASCADE,
            parent_id TEXT REFERENCES nodes(id),
            text TEXT NOT NULL,
            author TEXT NOT NULL,
            status TEXT NOT NULL,
            offer_id TEXT REFERENCES offers(id),
            branch INTEGER,
            bookmarked INTEGER NOT NULL DEFAULT 0,
            tags TEXT NOT NULL DEFAULT '[]',
            tokens TEXT,
            provenance TEXT,
            meta TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            version INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX nodes_parent ON nodes(parent_id);
        CREATE INDEX nodes_tree ON nodes(tree_id);
        CREATE INDEX nodes_offer ON nodes(offer_id);
        CREATE INDEX nodes_version ON nodes(version);
        CREATE INDEX offers_parent ON offers(parent_id);
        CREATE TABLE revisions (
            node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
            rev INTEGER NOT NULL,
            text TEXT NOT NULL,
            edited_at REAL NOT NULL,
            PRIMARY KEY (node_id, rev)
        );
        CREATE TABLE actions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            action TEXT NOT NULL,
            node_id TEXT,
            offer_id TEXT,
            data TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX actions_offer ON actions(offer_id);
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO counters VALUES ('node_version', 0);
        """,
    ),
    (
        # Every tree stands behind a wall (ambient/scopes.py). Trees made before scopes existed get
        # the scope their place gives today, read from the source formats those places wrote.
        "0002_tree_scopes",
        """
        ALTER TABLE trees ADD COLUMN scope TEXT NOT NULL DEFAULT 'cli';
        UPDATE trees SET scope = CASE
            WHEN source LIKE 'note:%' THEN 'notes'
            WHEN source LIKE 'speech:%' THEN 'speech'
            WHEN source = 'ui' THEN 'ui'
            WHEN source = 'loom' THEN 'import'
            WHEN source LIKE 'discord:%/%'
                THEN 'discord:' || substr(source, 9, instr(substr(source, 9), '/') - 1)
            WHEN source LIKE 'discord:%' THEN source
            ELSE 'cli'
        END;
        CREATE INDEX trees_scope ON trees(scope);
        """,
    ),
]


def migrate(
    db: sqlite3.Connection,
    transaction: Callable[[], AbstractContextManager[sqlite3.Connection]],
) -> None:
    """Apply, in order and each in its own ``transaction()``, the migrations not yet recorded."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    done = {r[0] for r in db.execute("SELECT name FROM schema_migrations")}
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        with transaction() as tx:
            for statement in sql.split(";"):
                if statement.strip():
                    tx.execute(statement)
            tx.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, now()))
