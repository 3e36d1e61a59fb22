"""TreeStore: the multiverse, kept durably in SQLite.

WAL mode, foreign keys on, ``synchronous=FULL`` (an acknowledged write survives
a crash), and named schema migrations recorded in ``schema_migrations``.

The store is the source of truth: the memory index, sidecars and the UI are
all derived from it. One connection is shared behind a lock, so the store can
be used from worker threads (the daemon never calls it on the event loop).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ambient.errors import AmbientError, Conflict, InvalidInput, NotFound
from ambient.sampling.base import Token
from ambient.tree import (
    HUMAN,
    Action,
    Author,
    NewBranch,
    Node,
    Offer,
    OfferState,
    Revision,
    Status,
    Tree,
    new_id,
    now,
)

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
]

_ID_CHARS = re.compile(r"[A-Za-z0-9-]+")
_NODE_COLUMNS = (
    "id, tree_id, parent_id, text, author, status, offer_id, branch, bookmarked, tags, "
    "tokens, provenance, meta, created_at, updated_at"
)


class StoreError(AmbientError):
    """The database cannot be opened or written (disk full, read-only): the service is unavailable."""

    http_status = 503


class TreeStore:
    """Durable storage of trees, nodes, offers, revisions and the pick log."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._listeners: list[Callable[[str, Node], None]] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot open the tree store at {self.path} ({exc}): check that AMBIENT_HOME is "
                "writable and has free space"
            ) from exc

    # ----------------------------------------------------------------- basics
    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> TreeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def on_change(self, listener: Callable[[str, Node], None]) -> None:
        """Call ``listener(event, node)`` after each committed node change."""
        self._listeners.append(listener)

    def _notify(self, event: str, nodes: Iterable[Node]) -> None:
        for node in nodes:
            for listener in self._listeners:
                listener(event, node)

    @contextlib.contextmanager
    def _tx(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``durable=False`` skips the fsync, for records that
        are not acknowledged to anyone (a later durable commit flushes them too)."""
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                yield from self._transaction()
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(self._cannot_write(exc)) from exc
            try:
                yield self._db
            except sqlite3.OperationalError as exc:  # disk full, read-only file system, I/O error
                self._rollback()
                raise StoreError(self._cannot_write(exc)) from exc
            except BaseException:
                self._rollback()
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(self._cannot_write(exc)) from exc

    def _rollback(self) -> None:
        """Undo the open transaction (SQLite may already have rolled it back itself)."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def _cannot_write(self, exc: sqlite3.Error) -> str:
        return (
            f"cannot write the tree store at {self.path} ({exc}): free some disk space "
            "or make AMBIENT_HOME writable; nothing was changed"
        )

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _migrate(self) -> None:
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        done = {r[0] for r in self._db.execute("SELECT name FROM schema_migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            with self._tx() as db:
                for statement in sql.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, now()))

    def migrations(self) -> list[str]:
        return [r[0] for r in self._query("SELECT name FROM schema_migrations ORDER BY name")]

    def integrity_check(self) -> str:
        return str(self._query("PRAGMA integrity_check")[0][0])

    def _next_version(self, db: sqlite3.Connection) -> int:
        db.execute("UPDATE counters SET value = value + 1 WHERE name = 'node_version'")
        return int(db.execute("SELECT value FROM counters WHERE name = 'node_version'").fetchone()[0])

    # ------------------------------------------------------------------ trees
    def create_tree(
        self,
        text: str,
        *,
        title: str = "",
        source: str = "cli",
        author: Author | None = None,
        meta: dict[str, Any] | None = None,
        tree_id: str | None = None,
        root_id: str | None = None,
    ) -> tuple[Tree, Node]:
        """A new tree whose root holds ``text`` (written by a person unless said otherwise)."""
        tree_id = tree_id or new_id()
        root_id = root_id or new_id()
        t = now()
        title = title or _title_from(text)
        with self._tx() as db:
            db.execute(
                "INSERT INTO trees VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tree_id, root_id, title, source, t, t, _dumps(meta or {})),
            )
            root = self._insert_node(
                db, tree_id, None, text, author or Author(HUMAN), Status.PICKED, node_id=root_id
            )
        self._notify("created", [root])
        return self.get_tree(tree_id), root

    def get_tree(self, tree_id: str) -> Tree:
        rows = self._query("SELECT * FROM trees WHERE id = ?", (tree_id,))
        if not rows:
            raise NotFound(f"no tree {tree_id!r}: list trees with `ambient show` or `ambient trees`")
        return _tree_from_row(rows[0])

    def list_trees(self, source: str | None = None) -> list[Tree]:
        if source is None:
            rows = self._query("SELECT * FROM trees ORDER BY updated_at DESC")
        else:
            rows = self._query("SELECT * FROM trees WHERE source = ? ORDER BY updated_at DESC", (source,))
        return [_tree_from_row(r) for r in rows]

    def find_tree(self, source: str) -> Tree | None:
        rows = self._query("SELECT * FROM trees WHERE source = ? ORDER BY created_at LIMIT 1", (source,))
        return _tree_from_row(rows[0]) if rows else None

    def update_tree_meta(self, tree_id: str, meta: dict[str, Any]) -> Tree:
        tree = self.get_tree(tree_id)
        with self._tx() as db:
            db.execute(
                "UPDATE trees SET meta = ?, updated_at = ? WHERE id = ?",
                (_dumps({**tree.meta, **meta}), now(), tree_id),
            )
        return self.get_tree(tree_id)

    def tree_nodes(self, tree_id: str) -> list[Node]:
        self.get_tree(tree_id)
        rows = self._query(
            f"SELECT {_NODE_COLUMNS} FROM nodes WHERE tree_id = ? ORDER BY created_at, rowid", (tree_id,)
        )
        return [_node_from_row(r) for r in rows]

    # ------------------------------------------------------------------ nodes
    def _insert_node(
        self,
        db: sqlite3.Connection,
        tree_id: str,
        parent_id: str | None,
        text: str,
        author: Author,
        status: Status,
        *,
        node_id: str | None = None,
        offer_id: str | None = None,
        branch: int | None = None,
        tokens: Sequence[Token] | None = None,
        provenance: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        tags: Sequence[str] = (),
        bookmarked: bool = False,
        created_at: float | None = None,
    ) -> Node:
        t = created_at if created_at is not None else now()
        node = Node(
            id=node_id or new_id(),
            tree_id=tree_id,
            parent_id=parent_id,
            text=text,
            author=author,
            status=status,
            created_at=t,
            updated_at=t,
            offer_id=offer_id,
            branch=branch,
            bookmarked=bookmarked,
            tags=tuple(tags),
            tokens=tuple(tokens) if tokens is not None else None,
            provenance=provenance,
            meta=meta or {},
        )
        db.execute(
            f"INSERT INTO nodes ({_NODE_COLUMNS}, version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (*_node_to_row(node), self._next_version(db)),
        )
        db.execute("UPDATE trees SET updated_at = ? WHERE id = ?", (t, tree_id))
        return node

    def add_node(
        self,
        parent_id: str,
        text: str,
        *,
        author: Author | None = None,
        status: Status = Status.PICKED,
        meta: dict[str, Any] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> Node:
        """A child written by a person (or imported) under ``parent_id``."""
        parent = self.get_node(parent_id)
        with self._tx() as db:
            node = self._insert_node(
                db,
                parent.tree_id,
                parent.id,
                text,
                author or Author(HUMAN),
                status,
                meta=meta,
                provenance=provenance,
            )
        self._notify("created", [node])
        return node

    def get_node(self, node_id: str) -> Node:
        rows = self._query(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE id = ?", (node_id,))
        if not rows:
            raise NotFound(f"no node {node_id!r}: check the id with `ambient show TREE`")
        return _node_from_row(rows[0])

    def resolve_node_id(self, prefix: str) -> str:
        """Full id of the one node whose id starts with ``prefix`` (ids can be shortened)."""
        if len(prefix) < 4:
            raise InvalidInput(f"node id {prefix!r} is too short: give at least 4 characters")
        rows = self._query("SELECT id FROM nodes WHERE id LIKE ? LIMIT 2", (_like_prefix(prefix),))
        if not rows:
            raise NotFound(f"no node {prefix!r}: check the id with `ambient show TREE`")
        if len(rows) > 1:
            raise InvalidInput(f"node id {prefix!r} is ambiguous: give more characters")
        return str(rows[0][0])

    def resolve_tree_id(self, prefix: str) -> str:
        if len(prefix) < 4:
            raise InvalidInput(f"tree id {prefix!r} is too short: give at least 4 characters")
        rows = self._query("SELECT id FROM trees WHERE id LIKE ? LIMIT 2", (_like_prefix(prefix),))
        if len(rows) == 1:
            return str(rows[0][0])
        if rows:
            raise InvalidInput(f"tree id {prefix!r} is ambiguous: give more characters")
        raise NotFound(f"no tree {prefix!r}: list trees with `ambient trees`")

    def children(self, node_id: str, include_pruned: bool = True) -> list[Node]:
        self.get_node(node_id)
        sql = f"SELECT {_NODE_COLUMNS} FROM nodes WHERE parent_id = ?"
        if not include_pruned:
            sql += " AND status != 'pruned'"
        rows = self._query(sql + " ORDER BY created_at, branch, rowid", (node_id,))
        return [_node_from_row(r) for r in rows]

    def siblings(self, node_id: str) -> list[Node]:
        node = self.get_node(node_id)
        if node.parent_id is None:
            return []
        return [n for n in self.children(node.parent_id) if n.id != node_id]

    def ancestry(self, node_id: str) -> list[Node]:
        """The path from the root to ``node_id``, both included."""
        rows = self._query(
            f"""
            WITH RECURSIVE path(id, depth) AS (
                SELECT id, 0 FROM nodes WHERE id = ?
                UNION ALL
                SELECT n.parent_id, path.depth + 1 FROM nodes n JOIN path ON n.id = path.id
                WHERE n.parent_id IS NOT NULL
            )
            SELECT {_NODE_COLUMNS} FROM nodes JOIN path USING (id) ORDER BY path.depth DESC
            """,
            (node_id,),
        )
        if not rows:
            raise NotFound(f"no node {node_id!r}: check the id with `ambient show TREE`")
        return [_node_from_row(r) for r in rows]

    def full_text(self, node_id: str) -> str:
        """The text of the whole branch from the root down to ``node_id``."""
        return "".join(n.text for n in self.ancestry(node_id))

    def nodes_since(self, version: int, limit: int = 1000) -> list[tuple[int, Node]]:
        """Nodes created or changed after ``version`` (for incremental indexing)."""
        rows = self._query(
            f"SELECT version, {_NODE_COLUMNS} FROM nodes WHERE version > ? ORDER BY version LIMIT ?",
            (version, limit),
        )
        return [(int(r["version"]), _node_from_row(r)) for r in rows]

    def node_count(self) -> int:
        return int(self._query("SELECT count(*) FROM nodes")[0][0])

    def iter_nodes(self, batch: int = 1000) -> Iterator[Node]:
        last = ""
        while True:
            rows = self._query(
                f"SELECT {_NODE_COLUMNS} FROM nodes WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
            )
            if not rows:
                return
            for r in rows:
                yield _node_from_row(r)
            last = rows[-1]["id"]

    # ----------------------------------------------------------------- offers
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
                    _dumps(settings),
                    _dumps(meta or {}),
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
                    meta={"finish_reason": b.finish_reason},
                    created_at=t,
                )
                for i, b in enumerate(branches)
            ]
            db.execute(
                "UPDATE offers SET state = ?, error = ?, finished_at = ?, meta = ? WHERE id = ?",
                (state, error, t, _dumps({**offer.meta, **(meta or {})}), offer_id),
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
        return _offer_from_row(rows[0], tuple(r[0] for r in ids))

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

    # ---------------------------------------------------------- human actions
    def pick(self, node_id: str, data: dict[str, Any] | None = None) -> Node:
        """A person chose this node (its ancestors become picked too)."""
        path = self.ancestry(node_id)
        with self._tx() as db:
            version = self._next_version(db)
            for n in path:
                if n.status != Status.PICKED:
                    db.execute(
                        "UPDATE nodes SET status = 'picked', updated_at = ?, version = ? WHERE id = ?",
                        (now(), version, n.id),
                    )
            self._log(db, Action.PICK, path[-1], data)
        node = self.get_node(node_id)
        self._notify("updated", [node])
        return node

    def edit(self, node_id: str, text: str) -> Node:
        """Replace a node's text, keeping every earlier text as a revision."""
        node = self.get_node(node_id)
        if text == node.text:
            return node
        with self._tx() as db:
            rev = db.execute(
                "SELECT coalesce(max(rev), 0) FROM revisions WHERE node_id = ?", (node_id,)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO revisions VALUES (?, ?, ?, ?)", (node_id, rev + 1, node.text, node.updated_at)
            )
            db.execute(
                "UPDATE nodes SET text = ?, tokens = NULL, updated_at = ?, version = ? WHERE id = ?",
                (text, now(), self._next_version(db), node_id),
            )
            self._log(db, Action.EDIT, node, {"before": node.text, "after": text})
        node = self.get_node(node_id)
        self._notify("updated", [node])
        return node

    def revisions(self, node_id: str) -> list[Revision]:
        self.get_node(node_id)
        rows = self._query("SELECT * FROM revisions WHERE node_id = ? ORDER BY rev", (node_id,))
        return [Revision(r["node_id"], r["rev"], r["text"], r["edited_at"]) for r in rows]

    def prune(self, node_id: str, pruned: bool = True) -> Node:
        node = self.get_node(node_id)
        if node.parent_id is None and pruned:
            raise Conflict("the root of a tree cannot be pruned: prune its children instead")
        status = Status.PRUNED if pruned else Status.OFFERED
        with self._tx() as db:
            db.execute(
                "UPDATE nodes SET status = ?, updated_at = ?, version = ? WHERE id = ?",
                (status, now(), self._next_version(db), node_id),
            )
            self._log(db, Action.PRUNE if pruned else Action.UNPRUNE, node, None)
        node = self.get_node(node_id)
        self._notify("updated", [node])
        return node

    def bookmark(self, node_id: str, on: bool = True) -> Node:
        node = self.get_node(node_id)
        with self._tx() as db:
            db.execute(
                "UPDATE nodes SET bookmarked = ?, updated_at = ? WHERE id = ?", (int(on), now(), node_id)
            )
            self._log(db, Action.BOOKMARK if on else Action.UNBOOKMARK, node, None)
        return self.get_node(node_id)

    def tag(self, node_id: str, tag: str, on: bool = True) -> Node:
        node = self.get_node(node_id)
        tags = [t for t in node.tags if t != tag] + ([tag] if on else [])
        with self._tx() as db:
            db.execute(
                "UPDATE nodes SET tags = ?, updated_at = ? WHERE id = ?", (_dumps(tags), now(), node_id)
            )
            self._log(db, Action.TAG if on else Action.UNTAG, node, {"tag": tag})
        return self.get_node(node_id)

    def update_meta(self, node_id: str, meta: dict[str, Any]) -> Node:
        node = self.get_node(node_id)
        with self._tx() as db:
            db.execute("UPDATE nodes SET meta = ? WHERE id = ?", (_dumps({**node.meta, **meta}), node_id))
        return self.get_node(node_id)

    def record(self, action: Action, node_id: str, data: dict[str, Any] | None = None) -> None:
        """Log an action taken outside the store (e.g. a continuation accepted into a note)."""
        node = self.get_node(node_id)
        with self._tx() as db:
            self._log(db, action, node, data)

    def _log(self, db: sqlite3.Connection, action: Action, node: Node, data: dict[str, Any] | None) -> None:
        db.execute(
            "INSERT INTO actions (at, action, node_id, offer_id, data) VALUES (?, ?, ?, ?, ?)",
            (now(), action, node.id, node.offer_id, _dumps(data or {})),
        )

    def actions(self, offer_id: str | None = None) -> list[dict[str, Any]]:
        if offer_id is None:
            rows = self._query("SELECT * FROM actions ORDER BY id")
        else:
            rows = self._query("SELECT * FROM actions WHERE offer_id = ? ORDER BY id", (offer_id,))
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    # ---------------------------------------------------------------- import
    def import_nodes(self, tree: Tree, nodes: Sequence[Node]) -> None:
        """Insert a whole tree at once (Loom import); parents come before children."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO trees VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    tree.id,
                    tree.root_id,
                    tree.title,
                    tree.source,
                    tree.created_at,
                    tree.updated_at,
                    _dumps(tree.meta),
                ),
            )
            self._insert_rows(db, nodes)
        self._notify("created", nodes)

    def import_nodes_into(self, tree_id: str, nodes: Sequence[Node]) -> None:
        """Add nodes (parents before children) to an existing tree."""
        self.get_tree(tree_id)
        with self._tx() as db:
            self._insert_rows(db, nodes)
            db.execute("UPDATE trees SET updated_at = ? WHERE id = ?", (now(), tree_id))
        self._notify("created", nodes)

    def _insert_rows(self, db: sqlite3.Connection, nodes: Sequence[Node]) -> None:
        for node in nodes:
            db.execute(
                f"INSERT INTO nodes ({_NODE_COLUMNS}, version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*_node_to_row(node), self._next_version(db)),
            )

    def tree_exists(self, tree_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM trees WHERE id = ?", (tree_id,)))


# ---------------------------------------------------------------- row helpers
def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _like_prefix(prefix: str) -> str:
    if not _ID_CHARS.fullmatch(prefix):
        raise InvalidInput(f"{prefix!r} is not an id: ids are letters, digits and '-'")
    return prefix + "%"


def _title_from(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first[:80] or "untitled"


def _node_to_row(node: Node) -> tuple[Any, ...]:
    return (
        node.id,
        node.tree_id,
        node.parent_id,
        node.text,
        _dumps(node.author.as_dict()),
        str(node.status),
        node.offer_id,
        node.branch,
        int(node.bookmarked),
        _dumps(list(node.tags)),
        _dumps([t.as_dict() for t in node.tokens]) if node.tokens is not None else None,
        _dumps(node.provenance) if node.provenance is not None else None,
        _dumps(node.meta),
        node.created_at,
        node.updated_at,
    )


def _node_from_row(r: sqlite3.Row) -> Node:
    return Node(
        id=r["id"],
        tree_id=r["tree_id"],
        parent_id=r["parent_id"],
        text=r["text"],
        author=Author.from_dict(json.loads(r["author"])),
        status=Status(r["status"]),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        offer_id=r["offer_id"],
        branch=r["branch"],
        bookmarked=bool(r["bookmarked"]),
        tags=tuple(json.loads(r["tags"])),
        tokens=tuple(Token.from_dict(t) for t in json.loads(r["tokens"])) if r["tokens"] else None,
        provenance=json.loads(r["provenance"]) if r["provenance"] else None,
        meta=json.loads(r["meta"]),
    )


def _tree_from_row(r: sqlite3.Row) -> Tree:
    return Tree(
        id=r["id"],
        root_id=r["root_id"],
        title=r["title"],
        source=r["source"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        meta=json.loads(r["meta"]),
    )


def _offer_from_row(r: sqlite3.Row, node_ids: tuple[str, ...]) -> Offer:
    return Offer(
        id=r["id"],
        tree_id=r["tree_id"],
        parent_id=r["parent_id"],
        state=OfferState(r["state"]),
        settings=json.loads(r["settings"]),
        created_at=r["created_at"],
        finished_at=r["finished_at"],
        error=r["error"],
        meta=json.loads(r["meta"]),
        node_ids=node_ids,
    )
