"""Where the bot may answer, and for whom: allowed channels as places, refusals, missing permissions.

The bot answers only in the servers and channels the options allow (a thread
counts as its parent channel), and only to people with an allowed role;
anywhere else it stays silent or says why, in one line. Before it posts, it
checks its own Discord permissions there and names any that are missing.

:class:`Access` is mixed into :class:`~integrations.discord.bot.AmbientBot`,
which supplies ``options``.
"""

from __future__ import annotations

from typing import Any

import discord

from integrations.discord import limits
from integrations.discord.branches import Place
from integrations.discord.options import DiscordOptions
from integrations.discord.replies import Refused

CHANNEL_NEEDS = ("view_channel", "read_message_history", "create_public_threads", "send_messages_in_threads")
THREAD_NEEDS = ("view_channel", "read_message_history", "send_messages_in_threads")


class Access:
    """Who may ask where, and what the bot may do there (part of :class:`AmbientBot`)."""

    options: DiscordOptions

    def place_of(self, channel: Any) -> Place | None:
        """The channel's place if the bot may answer there; None elsewhere (it stays silent)."""
        guild = getattr(channel, "guild", None)
        if guild is None:
            return None
        if isinstance(channel, discord.Thread):
            parent_id = channel.parent_id
            parent = channel.parent
            title = f"#{parent.name}" if parent is not None else ""
            allowed = self.options.allows_channel(guild.id, channel.id, parent_id)
            return Place(guild.id, parent_id, channel.id, title) if allowed else None
        if isinstance(channel, discord.TextChannel):
            allowed = self.options.allows_channel(guild.id, channel.id)
            return Place(guild.id, channel.id, channel.id, f"#{channel.name}") if allowed else None
        return None

    def refusal(self, guild: Any, channel: Any, user: Any) -> str | None:
        roles = [(role.id, role.name) for role in getattr(user, "roles", ())]
        parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
        channel_id = channel.id if channel is not None else 0
        return self.options.refusal(guild.id if guild else None, channel_id, parent_id, roles)

    def _require_place(self, channel: Any) -> Place:
        place = self.place_of(channel)
        if place is None:
            raise Refused("ambient is not enabled in this channel.")
        return place

    def _need(self, channel: Any, needed: tuple[str, ...]) -> None:
        me = channel.guild.me
        missing = limits.missing_permissions(channel.permissions_for(me), needed)
        if missing:
            raise Refused(limits.missing_permission_text(missing, channel.mention))
