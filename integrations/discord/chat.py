"""Reading the conversation into the channel's tree: which messages are chat, and the history up to one.

A message is a chat line when it is an ordinary message or reply that is not
the prefix command and not the bot's own post (those join the chat only when
picked). Before sampling, the history window before a message is read and
recorded as lines of the channel's tree (:mod:`integrations.discord.branches`);
in a thread, the lines hang below the message the thread was opened on.

:class:`ChatReader` is mixed into :class:`~integrations.discord.bot.AmbientBot`,
which supplies ``hub``, ``options``, ``trees`` and its own ``user``.
"""

from __future__ import annotations

from typing import Any, cast

import discord

from ambient.sources import Hub
from integrations.discord import limits
from integrations.discord.branches import ChannelTrees, Place
from integrations.discord.options import DiscordOptions
from integrations.discord.replies import Refused
from integrations.discord.transcript import ChatLine, clean_name, message_line

COMMAND = "continue"
CHAT_TYPES = (discord.MessageType.default, discord.MessageType.reply)


class ChatReader:
    """Discord messages as chat lines of the channel's tree (part of :class:`AmbientBot`)."""

    hub: Hub
    options: DiscordOptions
    trees: ChannelTrees
    user: Any  # the bot's own user (discord.py's Client.user)

    def is_command(self, message: discord.Message) -> bool:
        words = message.content.strip().split(maxsplit=1)
        return bool(words) and words[0] == self.options.prefix + COMMAND

    def to_line(self, message: discord.Message, timeline_id: int) -> ChatLine | None:
        """The message as a line of the chat; None for what is not conversation."""
        if message.type not in CHAT_TYPES or self.is_command(message):
            return None
        if self.user is not None and message.author.id == self.user.id:
            return None  # the bot's own posts join the chat only when picked
        text = message_line(
            message.author.display_name,
            message.clean_content,
            [a.filename for a in message.attachments],
            [e.title or "" for e in message.embeds],
        )
        if text is None:
            return None
        name = clean_name(message.author.display_name)
        return ChatLine(message.id, timeline_id, name, message.author.id, text)

    async def _history(self, channel: Any, before: discord.Message | None) -> list[discord.Message]:
        """The window of messages before ``before`` (or the latest), oldest first."""
        limit = self.options.history_window - (before is not None)
        try:
            found = [m async for m in channel.history(limit=limit, before=before)] if limit else []
        except discord.Forbidden as exc:
            text = limits.missing_permission_text(["Read Message History"], channel.mention)
            raise Refused(text) from exc
        return sorted(found, key=lambda m: m.id)

    async def _latest(self, channel: Any, before: discord.Message | None = None) -> discord.Message:
        """The latest message that is conversation (not a command, not the bot's own post)."""
        for message in reversed(await self._history(channel, before)):
            if self.to_line(message, channel.id) is not None:
                return message
        raise Refused("there is nothing to continue here yet: say something first.")

    async def _replied_to(self, message: discord.Message) -> discord.Message | None:
        ref = message.reference
        if ref is None or ref.message_id is None:
            return None
        if isinstance(ref.resolved, discord.Message):
            return ref.resolved
        try:
            return cast(discord.Message, await message.channel.fetch_message(ref.message_id))
        except discord.NotFound:
            raise Refused("the message you replied to was deleted.") from None

    async def _sync_channel(self, channel: Any, place: Place, until: discord.Message) -> str:
        messages = [*await self._history(channel, until), until]
        lines = [line for m in messages if (line := self.to_line(m, place.timeline_id)) is not None]
        return await self.hub.run_blocking(self.trees.record, place, None, lines, until.id)

    async def _sync_thread(self, thread: Any, place: Place, until: discord.Message | None) -> str:
        anchor = await self._thread_anchor(thread)
        history = await self._history(thread, until)
        messages = [*history, until] if until is not None else history
        lines = [line for m in messages if (line := self.to_line(m, place.timeline_id)) is not None]
        upto = until.id if until is not None else None
        return await self.hub.run_blocking(self.trees.record, place, anchor, lines, upto)

    async def _thread_anchor(self, thread: Any) -> str:
        """The node the thread branches from: the message it was opened on (same id as the thread)."""
        parent = thread.parent
        channel_place = Place(
            thread.guild.id, thread.parent_id, thread.parent_id, f"#{getattr(parent, 'name', '')}"
        )
        known = await self.hub.run_blocking(self.trees.node_for_message, channel_place, thread.id)
        if known is not None:
            return known
        starter: discord.Message | None = None
        if parent is not None:
            try:
                starter = await parent.fetch_message(thread.id)
            except discord.NotFound:
                starter = None  # deleted, or a thread not opened on a message
        if starter is None:
            return await self.hub.run_blocking(self.trees.latest_before, channel_place, thread.id)
        return await self._sync_channel(parent, channel_place, starter)
