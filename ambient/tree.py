"""The multiverse: trees of nodes, offers of N branches, and what people did with them.

These are plain data classes; :mod:`ambient.store` keeps them in SQLite.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import uuid
from typing import Any

from ambient.sampling.base import Token


class Status(enum.StrEnum):
    OFFERED = "offered"  # made by the model, not (yet) chosen
    PICKED = "picked"  # chosen by a person, or written by one
    PRUNED = "pruned"  # set aside by a person


class OfferState(enum.StrEnum):
    STREAMING = "streaming"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Action(enum.StrEnum):
    """What a person did; the pick log records each one."""

    PICK = "pick"
    EDIT = "edit"
    PRUNE = "prune"
    UNPRUNE = "unprune"
    BOOKMARK = "bookmark"
    UNBOOKMARK = "unbookmark"
    TAG = "tag"
    UNTAG = "untag"
    ACCEPT = "accept"  # a continuation taken into its source (a note, a thread)
    REGENERATE = "regenerate"


HUMAN = "human"
MODEL = "model"


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


@dataclasses.dataclass(frozen=True)
class Author:
    """Who wrote a node: a person, or a model with its sampling settings."""

    kind: str = HUMAN  # "human" or "model"
    name: str = ""  # a person's name, or the model's
    settings: dict[str, Any] | None = None  # sampling settings, for model text

    @property
    def is_model(self) -> bool:
        return self.kind == MODEL

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.settings:
            d["settings"] = self.settings
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Author:
        return cls(kind=d.get("kind", HUMAN), name=d.get("name", ""), settings=d.get("settings"))


@dataclasses.dataclass(frozen=True)
class Node:
    id: str
    tree_id: str
    parent_id: str | None
    text: str
    author: Author
    status: Status
    created_at: float
    updated_at: float
    offer_id: str | None = None
    branch: int | None = None  # index within its offer
    bookmarked: bool = False
    tags: tuple[str, ...] = ()
    tokens: tuple[Token, ...] | None = None
    provenance: dict[str, Any] | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self, tokens: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "tree_id": self.tree_id,
            "parent_id": self.parent_id,
            "text": self.text,
            "author": self.author.as_dict(),
            "status": str(self.status),
            "offer_id": self.offer_id,
            "branch": self.branch,
            "bookmarked": self.bookmarked,
            "tags": list(self.tags),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "meta": self.meta,
        }
        if tokens:
            d["tokens"] = [t.as_dict() for t in self.tokens] if self.tokens is not None else None
            d["provenance"] = self.provenance
        return d


@dataclasses.dataclass(frozen=True)
class Tree:
    id: str
    root_id: str
    title: str
    source: str  # where it comes from: "cli", "ui", "loom", "note:<path>", "discord:<server>/<channel>", ...
    created_at: float
    updated_at: float
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    scope: str = "cli"  # the wall it stands behind (ambient/scopes.py): "notes", "discord:<server>", ...

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Offer:
    """N continuations offered at one node."""

    id: str
    tree_id: str
    parent_id: str
    state: OfferState
    settings: dict[str, Any]
    created_at: float
    finished_at: float | None = None
    error: str | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    node_ids: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["state"] = str(self.state)
        d["node_ids"] = list(self.node_ids)
        return d


@dataclasses.dataclass(frozen=True)
class Revision:
    node_id: str
    rev: int
    text: str
    edited_at: float


@dataclasses.dataclass(frozen=True)
class NewBranch:
    """A continuation about to be stored as a node of an offer."""

    text: str
    tokens: list[Token] | None = None
    finish_reason: str = "length"
    meta: dict[str, Any] | None = None  # facts of this branch kept in its node's meta (e.g. its adapter)
