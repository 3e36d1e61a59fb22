"""The Discord bot: pull N continuations of a conversation into a thread, pick one with a button.

Three ways to pull, one flow: the slash command ``/continue [n] [temperature]``,
the message context menu "Continue from here", and the prefix command
``!continue [n] [temperature]`` (replying to a message continues from it).
The bot opens a thread on the message (or uses the thread it is asked in),
records the chat up to it as lines of the channel's tree, asks the hub for an
offer (the hub samples, with retrieval, and streams it to the web UI), and
posts each continuation as its own numbered message with Pick / More like
this / Branch buttons.

The bot only ever posts in answer to a person: a command, a menu, a button.
Listening (opt-in per channel) stores messages silently.

This module is the client itself: registering the commands, menu and buttons,
the gateway's events (listening, edits, deletions, the connection), indexing
new lines into memory in the background, and status. The rest is mixed into
:class:`AmbientBot` from its own module: what happens for each command and
button (:mod:`~integrations.discord.flows`), reading the chat into the tree
(:mod:`~integrations.discord.chat`), where it may answer
(:mod:`~integrations.discord.access`); posting goes through
:mod:`~integrations.discord.posting`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from ambient.forgetting import Target
from ambient.sources import Hub
from integrations.discord.branches import ChannelTrees, Place
from integrations.discord.chat import COMMAND
from integrations.discord.flows import Flows
from integrations.discord.options import MAX_N, DiscordOptions
from integrations.discord.replies import NO_MENTIONS, ContextRequester
from integrations.discord.views import BUTTONS

__all__ = ["COMMAND", "CONTEXT_MENU", "AmbientBot", "default_intents"]

_LOGGER = logging.getLogger(__name__)

CONTEXT_MENU = "Continue from here"


def default_intents() -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = True  # privileged: the prefix command and listening read message text
    return intents


class AmbientBot(Flows, commands.Bot):  # type: ignore[misc]  # discord.py is skipped by mypy
    """ambient on Discord. Needs the hub (sampling, store) and the typed options.

    Its answers to commands and buttons come from :class:`Flows`, which brings
    :class:`~integrations.discord.chat.ChatReader` and :class:`~integrations.discord.access.Access`.
    """

    def __init__(self, hub: Hub, options: DiscordOptions, *, intents: discord.Intents | None = None) -> None:
        super().__init__(
            command_prefix=options.prefix,
            intents=intents or default_intents(),
            allowed_mentions=NO_MENTIONS,
            help_command=None,
        )
        self.hub = hub
        self.options = options
        self.trees = ChannelTrees(lambda: hub.app.store)
        self._pick_lock = asyncio.Lock()
        self.disconnects = 0
        self.tree.add_command(
            app_commands.Command(
                name=COMMAND, description="Pull continuations of this conversation", callback=slash_continue
            )
        )
        self.tree.add_command(app_commands.ContextMenu(name=CONTEXT_MENU, callback=context_continue))
        self.add_command(commands.Command(prefix_continue, name=COMMAND, ignore_extra=False))

    async def setup_hook(self) -> None:
        """Register the buttons by pattern, so clicks on old messages work after a restart."""
        self.add_dynamic_items(*BUTTONS)

    async def sync_commands(self) -> None:
        """Register the slash command and the menu in each allowed server (instant, unlike global)."""
        for guild_id in self.options.guilds:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)

    # ------------------------------------------------------------- events
    async def on_message(self, message: discord.Message) -> None:
        if self.user is not None and message.author.id == self.user.id:
            return
        place = self.place_of(message.channel)
        if place is None:
            return  # not an allowed channel: silent
        if self.is_command(message):
            await self.process_commands(message)
            return
        parent_id = place.channel_id if place.in_thread else None
        if self.options.listens(place.guild_id, place.timeline_id, parent_id):
            await self._listen(message, place)

    async def _listen(self, message: discord.Message, place: Place) -> None:
        """Store the message as a line of the channel's tree, and remember it by meaning. Silent."""
        line = self.to_line(message, place.timeline_id)
        if line is None:
            return
        try:
            base = await self._thread_anchor(message.channel) if place.in_thread else None
            await self.hub.run_blocking(self.trees.record, place, base, [line], message.id)
        except Exception:
            _LOGGER.exception("Discord: could not store message %s", message.id)
            return
        self.remember_later()

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """An edited message that the tree holds: the node follows (its old text kept as a revision)."""
        place = self.place_of(self.get_channel(payload.channel_id))
        if place is None:
            return
        line = self.to_line(payload.message, place.timeline_id)
        if line is None:
            return
        try:
            edited = await self.hub.run_blocking(self.trees.mark_edited, place, payload.message_id, line.text)
        except Exception:
            _LOGGER.exception("Discord: could not follow the edit of message %s", payload.message_id)
            return
        if edited:
            self.remember_later()

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        place = self.place_of(self.get_channel(payload.channel_id))
        if place is None:
            return
        try:
            node_id = await self.hub.run_blocking(self.trees.node_of, place, payload.message_id)
            if node_id is None:
                return
            await self.hub.forget(Target(node_id=node_id))  # deleted on Discord: forgotten here too
            await self.hub.run_blocking(self.trees.forgotten, place)
        except Exception:
            _LOGGER.exception("Discord: could not forget deleted message %s", payload.message_id)

    async def on_ready(self) -> None:
        _LOGGER.info("Discord: connected as %s to %d server(s)", self.user, len(self.guilds))

    async def on_disconnect(self) -> None:
        self.disconnects += 1
        _LOGGER.warning("Discord: gateway connection lost; discord.py reconnects (picks are already stored)")

    async def on_resumed(self) -> None:
        _LOGGER.info("Discord: gateway session resumed")

    async def on_command_error(self, ctx: commands.Context[Any], error: commands.CommandError) -> None:
        if isinstance(error, commands.CommandNotFound):
            return
        if isinstance(error, commands.UserInputError):
            command = self.options.prefix + COMMAND
            usage = f"usage: `{command} [n] [temperature]`, e.g. `{command} 4 0.8`"
            await ContextRequester(ctx).tell(usage, error=True)
            return
        _LOGGER.error("Discord: command failed: %s", error)

    # ------------------------------------------------------------- memory
    def remember_later(self) -> None:
        """Index the new lines and continuations into memory, in the background (the hub coalesces)."""
        self.hub.schedule_index()

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.is_ready() and not self.is_closed(),
            "servers": len(self.guilds),
            "disconnects": self.disconnects,
        }


def _bot(interaction: discord.Interaction[Any]) -> AmbientBot:
    client = interaction.client
    if not isinstance(client, AmbientBot):
        raise TypeError("the ambient commands only run in an AmbientBot")
    return client


@app_commands.describe(  # type: ignore[untyped-decorator]
    n="how many continuations (default: ambient's setting)",
    temperature="0 = always the likeliest word; 0.7 to 1.0 is usual",
)
async def slash_continue(
    interaction: discord.Interaction[Any],
    n: app_commands.Range[int, 1, MAX_N] | None = None,
    temperature: app_commands.Range[float, 0.0, 2.0] | None = None,
) -> None:
    """/continue [n] [temperature]: continue the conversation in a thread."""
    await _bot(interaction).on_slash(interaction, n, temperature)


async def context_continue(interaction: discord.Interaction[Any], message: discord.Message) -> None:
    """Message menu "Continue from here"."""
    await _bot(interaction).on_context_menu(interaction, message)


async def prefix_continue(ctx: commands.Context[Any], n: int = 0, temperature: float = -1.0) -> None:
    """!continue [n] [temperature]: the fallback when slash commands are not available."""
    bot = ctx.bot
    if isinstance(bot, AmbientBot):
        await bot.on_prefix(ctx, n or None, None if temperature < 0 else temperature)
