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
from collections.abc import Mapping
from typing import Any, ClassVar

from ambient.errors import InvalidInput
from ambient.sources import Source, SourceEvent
from ambient.tree import Action, Node, Tree

TREE_SOURCE = "ui"
MAX_TEXT_CHARS = 200_000


@dataclasses.dataclass(frozen=True)
class ManualOptions:
    """``[sources.manual]``: nothing to configure yet."""


_OVERRIDES = ("n", "temperature", "max_tokens", "signals", "oversample")


class ManualSource(Source):
    name: ClassVar[str] = "manual"
    options_class: ClassVar[type[Any]] = ManualOptions

    def __init__(self, hub: Any, options: Any) -> None:
        super().__init__(hub, options)
        self.submitted = 0

    async def setup(self) -> None:
        """Nothing to check: the input is the API."""

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def paste(
        self, text: str, *, title: str = "", offer: bool = True, sampling: Mapping[str, Any] | None = None
    ) -> tuple[Tree, Node]:
        """A new document whose root is ``text``; offers continuations of it unless ``offer`` is False."""
        _check_text(text)
        store = self.hub.app.store
        tree, root = await self.hub.run_blocking(
            functools.partial(store.create_tree, text, title=title.strip()[:200], source=TREE_SOURCE)
        )
        if offer:
            await self._offer_at(root.id, sampling)
        return tree, root

    async def write(
        self, parent_id: str, text: str, *, offer: bool = True, sampling: Mapping[str, Any] | None = None
    ) -> Node:
        """A continuation written by hand under ``parent_id``, and (unless told not to) an offer at it."""
        _check_text(text)
        store = self.hub.app.store
        node: Node = await self.hub.run_blocking(functools.partial(store.add_node, parent_id, text))
        if offer:
            await self._offer_at(node.id, sampling)
        return node

    async def regenerate(self, node_id: str, sampling: Mapping[str, Any] | None = None) -> None:
        """More continuations at ``node_id`` ("more like these")."""
        store = self.hub.app.store
        await self.hub.run_blocking(store.record, Action.REGENERATE, node_id, {"via": "ui"})
        await self._offer_at(node_id, sampling)

    async def _offer_at(self, node_id: str, sampling: Mapping[str, Any] | None) -> None:
        overrides = {k: v for k, v in (sampling or {}).items() if k in _OVERRIDES}
        event = SourceEvent(
            source=self.name, key=f"node:{node_id}", parent_id=node_id, debounce=False, **overrides
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


SOURCE = ManualSource
