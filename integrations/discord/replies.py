"""Answering the person who asked: ephemerally for interactions, by a reply for the prefix command."""

from __future__ import annotations

from typing import Any

import discord
from discord.ext import commands

from integrations.discord import limits

NO_MENTIONS = discord.AllowedMentions.none()


class Refused(Exception):
    """A request that cannot be done; the message tells the person why and what to do."""


class Requester:
    """The person who asked: how to tell them something."""

    async def tell(self, text: str, *, error: bool = False) -> None:
        raise NotImplementedError


class InteractionRequester(Requester):
    """A slash command, menu or button: every answer is ephemeral (only they see it)."""

    def __init__(self, interaction: discord.Interaction[Any]) -> None:
        self.interaction = interaction

    async def tell(self, text: str, *, error: bool = False) -> None:
        text = limits.truncate(text, limits.MESSAGE_LIMIT)
        if not self.interaction.response.is_done():
            await self.interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await self.interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


class ContextRequester(Requester):
    """A prefix command: problems are answered with a reply; success shows in the thread itself."""

    def __init__(self, ctx: commands.Context[Any]) -> None:
        self.ctx = ctx

    async def tell(self, text: str, *, error: bool = False) -> None:
        if error:
            text = limits.truncate(text, limits.MESSAGE_LIMIT)
            await self.ctx.reply(text, mention_author=False, allowed_mentions=NO_MENTIONS)
