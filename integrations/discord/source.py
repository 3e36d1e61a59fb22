"""The Discord source: runs the bot inside the daemon (setup / run / unload)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import discord

from ambient.errors import AmbientError
from ambient.sources import Hub, Source
from integrations.discord.bot import AmbientBot
from integrations.discord.branches import scope_of_source
from integrations.discord.options import DiscordOptions

_LOGGER = logging.getLogger(__name__)

NO_TOKEN = "Discord: no token (set AMBIENT_DISCORD_TOKEN or sources.discord.token); not starting"


class DiscordSource(Source):
    """Pulls continuations of Discord conversations into threads; listens where allowed."""

    name: ClassVar[str] = "discord"
    options_class: ClassVar[type[Any]] = DiscordOptions
    autostart: ClassVar[bool] = True  # without a token, `ambient run` says how to turn it on

    @classmethod
    def scope_of(cls, tree_source: str, home: Path) -> str | None:
        return scope_of_source(tree_source)  # discord:<server>: each server is a wall of its own

    @classmethod
    def benchmarks(cls) -> Mapping[str, str]:
        return {"discord": "integrations.discord.bench"}

    def __init__(self, hub: Hub, options: DiscordOptions) -> None:
        super().__init__(hub, options)
        self.options: DiscordOptions = options
        self.bot: AmbientBot | None = None
        self._sync_task: asyncio.Task[None] | None = None

    @classmethod
    def enabled(cls, options: Any) -> tuple[bool, str]:
        if not getattr(options, "token", ""):
            return False, NO_TOKEN
        return True, ""

    async def setup(self) -> None:
        """Check the options (no network: the token is checked when the bot logs in)."""
        if not self.options.token:
            raise AmbientError(NO_TOKEN)
        self.options.check()

    async def run(self) -> None:
        """Log in and stay connected; discord.py reconnects by itself when the gateway drops."""
        bot = self.bot = AmbientBot(self.hub, self.options)
        async with bot:
            try:
                await bot.login(self.options.token)
            except discord.LoginFailure as exc:
                raise AmbientError(
                    "Discord rejected the bot token: copy it again from the Developer Portal "
                    "(Bot, Reset Token) into AMBIENT_DISCORD_TOKEN"
                ) from exc
            self._sync_task = asyncio.create_task(self._sync_when_ready(bot))
            try:
                await bot.connect(reconnect=True)
            except discord.PrivilegedIntentsRequired as exc:
                raise AmbientError(
                    "Discord refused the Message Content intent: turn it on in the Developer Portal "
                    "(Bot, Privileged Gateway Intents)"
                ) from exc
            finally:
                self._sync_task.cancel()

    async def _sync_when_ready(self, bot: AmbientBot) -> None:
        await bot.wait_until_ready()
        try:
            await bot.sync_commands()
        except discord.HTTPException as exc:
            _LOGGER.warning(
                "Discord: could not register /continue (%s): invite the bot with the "
                "applications.commands scope; the %scontinue command works meanwhile",
                exc,
                self.options.prefix,
            )

    async def unload(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sync_task
        if self.bot is not None and not self.bot.is_closed():
            await self.bot.close()

    def status(self) -> dict[str, Any]:
        return self.bot.status() if self.bot is not None else {"connected": False}
