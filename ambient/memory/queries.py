"""Asking the memory index: a usable query, the Chroma filter of a search, a hit as a Fragment."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ambient import scopes
from ambient.context import Fragment
from ambient.errors import InvalidInput
from ambient.scopes import View
from ambient.tree import Status

MAX_QUERY_CHARS = 2000


def check_query(query: str) -> str:
    """A usable search query, or InvalidInput saying what is wrong."""
    if not query or not query.strip():
        raise InvalidInput(
            'the search query is empty: give a few words, e.g. ambient search "a ship lost at sea"'
        )
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(
            f"the search query is {len(query)} characters long: give at most {MAX_QUERY_CHARS} "
            "(a sentence or two finds more than a page)"
        )
    return query.strip()


def where_clause(
    status: str | None,
    source: str | None,
    exclude_tree_id: str | None,
    exclude_node_ids: Collection[str],
    view: View | None = None,
) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = [scopes.where(view)] if view is not None else []
    if status is not None:
        if status not in {str(s) for s in Status}:
            raise InvalidInput(f"status must be one of picked, offered, pruned; got {status!r}")
        clauses.append({"status": status})
    if source is not None:
        clauses.append({"source": source})
    if exclude_tree_id is not None:
        clauses.append({"tree_id": {"$ne": exclude_tree_id}})
    if exclude_node_ids:
        clauses.append({"node_id": {"$nin": sorted(exclude_node_ids)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def fragment_of(node_id: str, document: str | None, meta: Any, distance: float) -> Fragment:
    meta = dict(meta or {})
    document = document or ""
    lead = int(meta.get("lead_chars", 0))
    return Fragment(
        node_id=node_id,
        tree_id=str(meta.get("tree_id", "")),
        text=document[lead:],
        score=1.0 - float(distance),
        status=str(meta.get("status", "")),
        source=str(meta.get("source", "")),
        lead=document[:lead],
        scope=str(meta.get("scope", "")),
    )
