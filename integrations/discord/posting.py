"""Posting to Discord: continuations, picked text, threads on messages; a request's messages all or none.

Rate limits are discord.py's to handle, not ambient's: its HTTP client waits
out a 429 for as long as Discord's answer says (a route's bucket or the global
limit) and tries again, up to five tries in all, and it retries 500, 502, 504
and 524 the same way. ambient adds no retry of its own. The bot's client is made
with ``max_ratelimit_timeout`` = :data:`LONGEST_WAIT_S`: when Discord asks for a
longer wait, discord.py does not wait but raises :class:`discord.RateLimited`
at once; a limit that outlasts the five tries ends in a
:class:`discord.HTTPException` with status 429. :func:`rate_limited_for` reads
how long either asks for, and :func:`rate_limit_text` says it to the person.

A dropped connection is not retried, by discord.py (on Linux) or here: Discord
may have posted the message before the connection dropped, and posting it
again would show it twice. The person is told to try again.

The messages of one request (a pull's N continuations, a long text's parts)
go through one :class:`Batch`: when one of them fails, those already posted
are deleted, so a thread never shows half a pull or a continuation cut off
after its first part. Text longer than a message is split into parts
(:mod:`integrations.discord.limits`); a continuation's buttons ride on its last
part. Mentions are never sent.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from types import TracebackType
from typing import Any, cast

import aiohttp
import discord

from ambient.tree import Node
from integrations.discord import limits
from integrations.discord.replies import NO_MENTIONS, Refused
from integrations.discord.transcript import continuation_prefix, message_line
from integrations.discord.views import offer_view

_LOGGER = logging.getLogger(__name__)

CONNECTION_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError, discord.ConnectionClosed)
EMPTY = "*(empty continuation)*"
THREAD_EXISTS = 160004  # Discord's code for "a thread has already been created for this message"
# discord.py waits out a rate limit up to this long; a longer one raises RateLimited at once.
# 30 s is the least discord.py allows (it raises a smaller max_ratelimit_timeout to 30).
LONGEST_WAIT_S = 30.0


def display_text(text: str) -> str:
    return text.strip() or EMPTY


def thread_name(message: discord.Message) -> str:
    line = message_line(message.author.display_name, message.clean_content) or "ambient"
    return limits.truncate(line.strip().replace("\n", " "), limits.THREAD_NAME_LIMIT, "…")


def rate_limited_for(exc: BaseException) -> float | None:
    """Seconds Discord asks the bot to wait when discord.py gave up on a rate limit; None for other errors."""
    if isinstance(exc, discord.RateLimited):
        return float(exc.retry_after)
    return limits.retry_after(exc) if isinstance(exc, discord.HTTPException) else None


def wait_text(seconds: float) -> str:
    """A wait as the person reads it: whole seconds, rounded up (``37 s``)."""
    return f"{max(1, math.ceil(seconds))} s"


def rate_limit_text(seconds: float) -> str:
    return f"Discord is rate-limiting this bot for {wait_text(seconds)}: try again then."


async def thread_on(message: discord.Message, archive_minutes: int) -> Any:
    """The thread on ``message``: the one already there, or a new one."""
    existing = message.guild.get_thread(message.id) if message.guild is not None else None
    if existing is not None:
        return existing
    minutes = cast(Any, archive_minutes)
    try:
        return await message.create_thread(name=thread_name(message), auto_archive_duration=minutes)
    except discord.Forbidden as exc:
        text = limits.missing_permission_text(["Create Public Threads"], message.channel.mention)
        raise Refused(text) from exc
    except discord.NotFound as exc:
        raise Refused("that message was deleted before I could open a thread on it.") from exc
    except discord.HTTPException as exc:
        if exc.code != THREAD_EXISTS:
            raise
        return await message.guild.fetch_channel(message.id)


async def post_continuations(channel: Any, nodes: Sequence[Node]) -> list[Any]:
    """Post the continuations, numbered from 1, each with its buttons: all of them, or none.

    Returns the messages that carry the buttons.
    """
    async with Batch() as batch:
        return [await _post_continuation(batch, channel, i, node) for i, node in enumerate(nodes, 1)]


async def post_text(channel: Any, text: str) -> Any:
    """Post ``text`` (split at 2,000 characters): every part, or none. Returns the last message."""
    parts = limits.cap_parts(limits.split_message(text))
    message = None
    async with Batch() as batch:
        for part in parts:
            message = await batch.post(channel, part)
    return message


async def post(channel: Any, content: str, view: discord.ui.View | None = None) -> Any:
    """One message (with ``view``'s buttons, if any), mentioning no one."""
    if view is None:
        return await channel.send(content, allowed_mentions=NO_MENTIONS)
    return await channel.send(content, view=view, allowed_mentions=NO_MENTIONS)


async def _post_continuation(batch: Batch, channel: Any, index: int, node: Node) -> Any:
    parts = limits.cap_parts(limits.split_message(continuation_prefix(index) + display_text(node.text)))
    for part in parts[:-1]:
        await batch.post(channel, part)
    return await batch.post(channel, parts[-1], offer_view(node.id))


class Batch:
    """The messages of one request: when posting one of them fails, those already posted are deleted.

    The failure goes on (to be told to the person); a message that cannot be
    deleted (the connection is gone too) is logged.
    """

    def __init__(self) -> None:
        self.posted: list[Any] = []

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, Exception) and self.posted:
            await self.retract()

    async def post(self, channel: Any, content: str, view: discord.ui.View | None = None) -> Any:
        message = await post(channel, content, view)
        self.posted.append(message)
        return message

    async def retract(self) -> None:
        """Delete what was posted, newest first."""
        while self.posted:
            message = self.posted.pop()
            try:
                await message.delete()
            except (discord.HTTPException, discord.RateLimited, *CONNECTION_ERRORS) as exc:
                _LOGGER.warning("Discord: could not delete message %s of a failed post: %s", message.id, exc)
