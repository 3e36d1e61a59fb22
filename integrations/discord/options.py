"""Typed options of the Discord source (``[sources.discord]`` in ambient.toml), and who may use it.

The token comes from ``AMBIENT_DISCORD_TOKEN`` or ``sources.discord.token``,
never from the repository. The allowlists are plain ids; the checks below are
pure functions of ids and role names so they can be tested without Discord.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ambient.config import Config, parse_section
from ambient.errors import ConfigError

ARCHIVE_MINUTES = (60, 1440, 4320, 10080)  # the thread auto-archive durations Discord accepts
MAX_N = 10
MAX_MEMBER_PULLS = 1000
MAX_WINDOW_S = 86_400  # a day
MAX_CONCURRENT_PULLS = 16  # the daemon's queue holds 32 jobs of every place


@dataclasses.dataclass(frozen=True)
class DiscordOptions:
    """``[sources.discord]``."""

    token: str = dataclasses.field(default="", repr=False)  # or AMBIENT_DISCORD_TOKEN; never logged
    guilds: tuple[int, ...] = ()  # server ids the bot answers in (required)
    channels: tuple[int, ...] = ()  # channel ids it answers in (and their threads); empty = all of them
    listen_channels: tuple[int, ...] = ()  # channels whose messages are stored and remembered (opt-in)
    role: str = ""  # role name or id needed to use the bot; empty = every member
    prefix: str = "!"  # prefix of the fallback message command, e.g. "!continue 4 0.8"
    history_window: int = 30  # messages of chat history in the context
    n: int = 0  # continuations per pull; 0 = sampling.n
    temperature: float | None = None  # None = sampling.temperature
    max_tokens: int | None = None  # None = sampling.max_tokens
    max_n: int = 6  # most continuations one pull may ask for (each is a message)
    thread_archive_minutes: int = 1440
    send_retries: int = 3  # attempts per message when Discord rate-limits the bot
    # Fairness: a pull is /continue, the menu, !continue, More like this or Branch (anything that samples).
    member_pulls: int = 4  # pulls one member may start per member_window_s; 0 = no limit
    member_window_s: int = 60  # the sliding window of member_pulls, in seconds
    server_concurrent_pulls: int = 2  # pulls running or waiting in the daemon at once, per server

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
        if not self.prefix.strip():
            raise ConfigError('sources.discord.prefix is empty: use a prefix such as "!"')
        if not 1 <= self.history_window <= 200:
            raise ConfigError(f"sources.discord.history_window must be 1..200, got {self.history_window}")
        if not 1 <= self.max_n <= MAX_N:
            raise ConfigError(f"sources.discord.max_n must be 1..{MAX_N}, got {self.max_n}")
        if not 0 <= self.n <= self.max_n:
            raise ConfigError(f"sources.discord.n must be 0 (sampling.n) or 1..{self.max_n}, got {self.n}")
        if self.thread_archive_minutes not in ARCHIVE_MINUTES:
            raise ConfigError(
                f"sources.discord.thread_archive_minutes must be one of {ARCHIVE_MINUTES}, "
                f"got {self.thread_archive_minutes}"
            )
        if not 1 <= self.send_retries <= 10:
            raise ConfigError(f"sources.discord.send_retries must be 1..10, got {self.send_retries}")
        self._check_fairness()
        stray = sorted(set(self.listen_channels) - set(self.channels)) if self.channels else []
        if stray:
            raise ConfigError(
                f"sources.discord.listen_channels has {stray[0]}, which is not in sources.discord.channels: "
                "add it there too, or stop listening to it"
            )

    def _check_fairness(self) -> None:
        if not 0 <= self.member_pulls <= MAX_MEMBER_PULLS:
            raise ConfigError(
                f"sources.discord.member_pulls must be 0 (no limit) or 1..{MAX_MEMBER_PULLS}, "
                f"got {self.member_pulls}"
            )
        if not 1 <= self.member_window_s <= MAX_WINDOW_S:
            raise ConfigError(
                f"sources.discord.member_window_s must be 1..{MAX_WINDOW_S} (seconds), "
                f"got {self.member_window_s}"
            )
        if not 1 <= self.server_concurrent_pulls <= MAX_CONCURRENT_PULLS:
            raise ConfigError(
                f"sources.discord.server_concurrent_pulls must be 1..{MAX_CONCURRENT_PULLS} (each one waits "
                f"in the daemon's queue, which the other places share), got {self.server_concurrent_pulls}"
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
