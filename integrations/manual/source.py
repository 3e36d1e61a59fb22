"""The manual source: text a person types or pastes in the web UI.

It watches nothing: text arrives through the daemon's API (a new document, a
continuation written by hand, "more like these" at a node). Each becomes a
:class:`SourceEvent` handed to the hub like any other source's, so it goes
through the same debounce, latest-wins and sampling pipeline. It is never
debounced, because a person asked for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from ambient.errors import InvalidInput
from ambient.offers import Overrides
from ambient.sources import Source, SourceEvent
from ambient.tree import Action, Node, Tree
from ambient.validation import Route
from integrations.manual.routes import ROUTES

TREE_SOURCE = "ui"
SCOPE = "ui"  # a private place
NO_OVERRIDES = Overrides()
MAX_TEXT_CHARS = 200_000


@dataclasses.dataclass(frozen=True)
class ManualOptions:
    """``[sources.manual]``: nothing to configure yet."""


class ManualSource(Source):
    name: ClassVar[str] = "manual"
    options_class: ClassVar[type[Any]] = ManualOptions
    autostart: ClassVar[bool] = True  # the web UI's own input

    @classmethod
    def scope_of(cls, tree_source: str, home: Path) -> str | None:
        return SCOPE if tree_source == TREE_SOURCE else None

    @classmethod
    def routes(cls) -> Sequence[Route]:
        return ROUTES

    def __init__(self, hub: Any, options: Any) -> None:
        super().__init__(hub, options)
        self.submitted = 0

    async def setup(self) -> None:
        """Nothing to check: the input is the API."""

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def paste(
        self, text: str, *, title: str = "", offer: bool = True, overrides: Overrides = NO_OVERRIDES
    ) -> tuple[Tree, Node]:
        """A new document whose root is ``text``; offers continuations of it unless ``offer`` is False."""
        _check_text(text)
        store = self.hub.app.store
        tree, root = await self.hub.run_blocking(
            functools.partial(
                store.create_tree, text, title=title.strip()[:200], source=TREE_SOURCE, scope=SCOPE
            )
        )
        if offer:
            await self._offer_at(root.id, overrides)
        return tree, root

    async def write(
        self, parent_id: str, text: str, *, offer: bool = True, overrides: Overrides = NO_OVERRIDES
    ) -> Node:
        """A continuation written by hand under ``parent_id``, and (unless told not to) an offer at it."""
        _check_text(text)
        store = self.hub.app.store
        node: Node = await self.hub.run_blocking(functools.partial(store.add_node, parent_id, text))
        if offer:
            await self._offer_at(node.id, overrides)
        return node

    async def regenerate(self, node_id: str, overrides: Overrides = NO_OVERRIDES) -> None:
        """More continuations at ``node_id`` ("more like these")."""
        store = self.hub.app.store
        await self.hub.run_blocking(store.record, Action.REGENERATE, node_id, {"via": "ui"})
        await self._offer_at(node_id, overrides)

    async def _offer_at(self, node_id: str, overrides: Overrides) -> None:
        event = SourceEvent(
            source=self.name, key=f"node:{node_id}", parent_id=node_id, overrides=overrides, debounce=False
        )
        await self.hub.submit(event)
        self.submitted += 1

    def status(self) -> dict[str, Any]:
        return {"submitted": self.submitted}


def _check_text(text: str) -> None:
    if not text.strip():
        raise InvalidInput("the text is empty: type or paste something to continue")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(f"the text is longer than {MAX_TEXT_CHARS} characters: split it")
    if "\x00" in text:
        raise InvalidInput("the text contains NUL characters: paste plain text")
