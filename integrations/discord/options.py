"""Typed options of the Discord source (``[sources.discord]`` in ambient.toml), and who may use it.

The token comes from ``AMBIENT_DISCORD_TOKEN`` or ``sources.discord.token``,
never from the repository. The allowlists are plain ids; the checks below are
pure functions of ids and role names so they can be tested without Discord.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any

from ambient import settings
from ambient.config import MAX_TEMPERATURE, MAX_TOKENS, Config, parse_section
from ambient.errors import ConfigError
from ambient.settings import each, free, nonempty, one_of, within

_LOGGER = logging.getLogger(__name__)

ARCHIVE_MINUTES = (60, 1440, 4320, 10080)  # the thread auto-archive durations Discord accepts
MAX_N = 10
MAX_MEMBER_PULLS = 1000
MAX_WINDOW_S = 86_400  # a day
MAX_CONCURRENT_PULLS = 16  # the daemon's queue holds 32 jobs of every place
IDS = each(within(0, 2**64 - 1), note="Discord ids")


@dataclasses.dataclass(frozen=True)
class DiscordOptions:
    """``[sources.discord]``."""

    token: str = field(  # or AMBIENT_DISCORD_TOKEN; never logged
        default="", repr=False, metadata=free("a secret, used only to log in to Discord")
    )
    guilds: tuple[int, ...] = field(default=(), metadata=IDS)  # server ids the bot answers in (required)
    channels: tuple[int, ...] = field(  # channel ids it answers in (and their threads); empty = all of them
        default=(), metadata=IDS
    )
    listen_channels: tuple[int, ...] = field(  # channels whose messages are stored and remembered (opt-in)
        default=(), metadata=IDS
    )
    role: str = field(  # role name or id needed to use the bot; empty = every member
        default="", metadata=free("a role name or id; empty = every member")
    )
    prefix: str = field(  # prefix of the fallback message command, e.g. "!continue 4 0.8"
        default="!", metadata=nonempty('a prefix such as "!"')
    )
    history_window: int = field(default=30, metadata=within(1, 200))  # messages of chat history in context
    n: int = field(  # continuations per pull; 0 = sampling.n
        default=0, metadata=within(1, "max_n", off=0, off_means="sampling.n")
    )
    temperature: float | None = field(  # None = sampling.temperature
        default=None, metadata=within(0, MAX_TEMPERATURE)
    )
    max_tokens: int | None = field(default=None, metadata=within(1, MAX_TOKENS))  # None = sampling.max_tokens
    max_n: int = field(  # most continuations one pull may ask for
        default=6, metadata=within(1, MAX_N, note="each is a message")
    )
    thread_archive_minutes: int = field(
        default=1440, metadata=one_of(*ARCHIVE_MINUTES, note="minutes, as Discord allows")
    )
    send_retries: int | None = field(  # no longer used (discord.py waits out rate limits)
        default=None, metadata=free("no longer used; kept so old tables load")
    )
    # Fairness: a pull is /continue, the menu, !continue, More like this or Branch (anything that samples).
    member_pulls: int = field(  # pulls one member may start per member_window_s; 0 = no limit
        default=4, metadata=within(1, MAX_MEMBER_PULLS, off=0, off_means="no limit")
    )
    member_window_s: int = field(  # the sliding window of member_pulls, in seconds
        default=60, metadata=within(1, MAX_WINDOW_S, note="seconds")
    )
    server_concurrent_pulls: int = field(  # pulls running or waiting in the daemon at once, per server
        default=2,
        metadata=within(
            1, MAX_CONCURRENT_PULLS, note="each one waits in the daemon's queue, which the other places share"
        ),
    )

    @classmethod
    def from_config(cls, config: Config) -> DiscordOptions:
        return parse_section(cls, config.sources.get("discord", {}), "sources.discord")

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> DiscordOptions:
        return parse_section(cls, table, "sources.discord")

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the key and the fix for options that cannot work."""
        if not self.guilds:
            raise ConfigError(
                "sources.discord.guilds is empty: list the server ids the bot may answer in "
                "(right-click the server in Discord with developer mode on, Copy Server ID)"
            )
        settings.check(self, "sources.discord")
        self._warn_unused()
        stray = sorted(set(self.listen_channels) - set(self.channels)) if self.channels else []
        if stray:
            raise ConfigError(
                f"sources.discord.listen_channels has {stray[0]}, which is not in sources.discord.channels: "
                "add it there too, or stop listening to it"
            )

    def _warn_unused(self) -> None:
        """Keys of earlier versions still load, and the log says to delete them."""
        if self.send_retries is not None:
            _LOGGER.warning(
                "sources.discord.send_retries is no longer used: discord.py waits out Discord's rate "
                "limits itself (up to 30 s; a longer one is told to the person who asked): "
                "delete it from ambient.toml"
            )

    # ---------------------------------------------------------------- access
    def allows_guild(self, guild_id: int | None) -> bool:
        return guild_id is not None and guild_id in self.guilds

    def allows_channel(self, guild_id: int | None, channel_id: int, parent_id: int | None = None) -> bool:
        """A channel of an allowed server that is listed (a thread counts as its parent channel)."""
        if not self.allows_guild(guild_id):
            return False
        if not self.channels:
            return True
        return channel_id in self.channels or (parent_id is not None and parent_id in self.channels)

    def listens(self, guild_id: int | None, channel_id: int, parent_id: int | None = None) -> bool:
        """Whether messages here are stored (opt-in per channel; threads follow their channel)."""
        if not self.allows_channel(guild_id, channel_id, parent_id):
            return False
        return channel_id in self.listen_channels or (
            parent_id is not None and parent_id in self.listen_channels
        )

    def allows_roles(self, roles: Iterable[tuple[int, str]]) -> bool:
        """Whether a member with these (id, name) roles may use the bot."""
        wanted = self.role.strip()
        if not wanted:
            return True
        return any(str(role_id) == wanted or name.casefold() == wanted.casefold() for role_id, name in roles)

    def refusal(
        self,
        guild_id: int | None,
        channel_id: int,
        parent_id: int | None,
        roles: Iterable[tuple[int, str]],
    ) -> str | None:
        """Why this member may not use the bot here, in one line; None when they may."""
        if guild_id is None:
            return "ambient answers only in the channels of its servers, not in direct messages."
        if not self.allows_channel(guild_id, channel_id, parent_id):
            return "ambient is not enabled in this channel."
        if not self.allows_roles(roles):
            return f"you need the role '{self.role}' to use ambient here: ask a moderator for it."
        return None
