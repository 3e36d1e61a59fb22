"""The MCP place: the daemon's ``/mcp`` routes and the `ambient mcp` command.

It watches nothing and never needs to run: its routes (:mod:`.routes`) are served by every
daemon, for client keys only, and `ambient mcp` (:mod:`.commands`) is a separate process that a
chat app starts. The trees `offer_continuations` makes belong to the key's place (``key:NAME``),
not to this one.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from ambient.sources import Source
from ambient.validation import Route
from integrations.mcp import commands
from integrations.mcp.routes import ROUTES


@dataclasses.dataclass(frozen=True)
class McpOptions:
    """``[sources.mcp]``: nothing to configure (what a chat app may see is its key's scope)."""


class McpSource(Source):
    name: ClassVar[str] = "mcp"
    options_class: ClassVar[type[Any]] = McpOptions

    @classmethod
    def routes(cls) -> Sequence[Route]:
        return ROUTES

    @classmethod
    def add_commands(cls, sub: Any) -> None:
        commands.register(sub)

    async def setup(self) -> None:
        """Nothing to check: the routes are served whether or not the place runs."""

    async def run(self) -> None:
        await asyncio.Event().wait()
