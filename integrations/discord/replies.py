"""Answering the person who asked, and only them: never in the channel.

Interactions (the slash command, the menu, the buttons) are answered
ephemerally. The prefix command has no private answer of its own, so it is
answered by a direct message; where the member's DMs are closed, by a reaction
on their command (the reaction says what kind of answer it is:
:data:`WARNING`, :data:`WAIT`, :data:`DENIED`).
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord.ext import commands

from integrations.discord import limits

NO_MENTIONS = discord.AllowedMentions.none()
WARNING = "⚠️"  # something went wrong, or cannot be done
WAIT = "⏳"  # over a limit: try again later
DENIED = "🚫"  # not allowed (e.g. a role is needed)
CANNOT_DM = 50007  # Discord's code for "Cannot send messages to this user" (DMs closed)

_LOGGER = logging.getLogger(__name__)


class Refused(Exception):
    """A request that cannot be done; the message tells the person why and what to do."""

    reaction = WARNING  # what a reaction says when the person cannot be told in words


class Requester:
    """The person who asked: how to tell them something."""

    async def tell(self, text: str, *, error: bool = False, reaction: str = WARNING) -> None:
        raise NotImplementedError


class InteractionRequester(Requester):
    """A slash command, menu or button: every answer is ephemeral (only they see it)."""

    def __init__(self, interaction: discord.Interaction[Any]) -> None:
        self.interaction = interaction

    async def tell(self, text: str, *, error: bool = False, reaction: str = WARNING) -> None:
        text = limits.truncate(text, limits.MESSAGE_LIMIT)
        if not self.interaction.response.is_done():
            await self.interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await self.interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


class ContextRequester(Requester):
    """A prefix command: success shows in the thread itself; problems go to the member alone.

    By direct message; where the member's DMs are closed (Discord answers 403),
    by the ``reaction`` on their command.
    """

    def __init__(self, ctx: commands.Context[Any]) -> None:
        self.ctx = ctx

    async def tell(self, text: str, *, error: bool = False, reaction: str = WARNING) -> None:
        if not error:
            return
        try:
            await self.ctx.author.send(self._direct(text), allowed_mentions=NO_MENTIONS)
        except discord.Forbidden as exc:
            _LOGGER.info("Discord: cannot DM %s (%s): reacting instead", self.ctx.author.id, exc.code)
            await self._react(reaction)

    def _direct(self, text: str) -> str:
        """The DM: which command it answers (a DM has no context of its own), then ``text``."""
        ctx = self.ctx
        command = f"{ctx.prefix or ''}{ctx.invoked_with or ''}".strip() or "command"
        where = getattr(ctx.channel, "mention", "the server")
        return limits.truncate(f"Your `{command}` in {where}: {text}", limits.MESSAGE_LIMIT)

    async def _react(self, reaction: str) -> None:
        try:
            await self.ctx.message.add_reaction(reaction)
        except discord.HTTPException as exc:  # deleted meanwhile, or no Add Reactions: nothing is left
            _LOGGER.warning("Discord: could not react to message %s: %s", self.ctx.message.id, exc)
