"""Posting to Discord, retried while rate limited: continuations, picked text, threads on messages.

Every message the bot posts goes through :func:`post` and every thread it
opens through :func:`thread_on`; both go through :func:`retrying`, which
waits and tries again while Discord answers 429 with a wait it allows, up to
``attempts`` tries (the ``send_retries`` option). Text longer than a message
is split into parts (:mod:`integrations.discord.limits`); a continuation's
buttons ride on its last part. Mentions are never sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import aiohttp
import discord

from ambient.tree import Node
from integrations.discord import limits
from integrations.discord.replies import NO_MENTIONS, Refused
from integrations.discord.transcript import continuation_prefix, message_line
from integrations.discord.views import offer_view

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

CONNECTION_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError, discord.ConnectionClosed)
EMPTY = "*(empty continuation)*"
THREAD_EXISTS = 160004  # Discord's code for "a thread has already been created for this message"


def display_text(text: str) -> str:
    return text.strip() or EMPTY


def thread_name(message: discord.Message) -> str:
    line = message_line(message.author.display_name, message.clean_content) or "ambient"
    return limits.truncate(line.strip().replace("\n", " "), limits.THREAD_NAME_LIMIT, "…")


async def thread_on(message: discord.Message, archive_minutes: int, *, attempts: int) -> Any:
    """The thread on ``message``: the one already there, or a new one."""
    existing = message.guild.get_thread(message.id) if message.guild is not None else None
    if existing is not None:
        return existing
    minutes = cast(Any, archive_minutes)
    try:
        return await retrying(
            lambda: message.create_thread(name=thread_name(message), auto_archive_duration=minutes), attempts
        )
    except discord.Forbidden as exc:
        text = limits.missing_permission_text(["Create Public Threads"], message.channel.mention)
        raise Refused(text) from exc
    except discord.NotFound as exc:
        raise Refused("that message was deleted before I could open a thread on it.") from exc
    except discord.HTTPException as exc:
        if exc.code != THREAD_EXISTS:
            raise
        return await message.guild.fetch_channel(message.id)


async def post_continuation(channel: Any, index: int, node: Node, *, attempts: int) -> Any:
    """Post continuation number ``index`` with its buttons; returns the message that carries them."""
    parts = limits.cap_parts(limits.split_message(continuation_prefix(index) + display_text(node.text)))
    for part in parts[:-1]:
        await post(channel, part, attempts=attempts)
    return await post(channel, parts[-1], offer_view(node.id), attempts=attempts)


async def post_text(channel: Any, text: str, *, attempts: int) -> Any:
    """Post ``text`` (split at 2,000 characters); returns the last message."""
    parts = limits.cap_parts(limits.split_message(text))
    message = None
    for part in parts:
        message = await post(channel, part, attempts=attempts)
    return message


async def post(channel: Any, content: str, view: discord.ui.View | None = None, *, attempts: int) -> Any:
    """One message (with ``view``'s buttons, if any), mentioning no one."""
    if view is None:
        return await retrying(lambda: channel.send(content, allowed_mentions=NO_MENTIONS), attempts)
    return await retrying(lambda: channel.send(content, view=view, allowed_mentions=NO_MENTIONS), attempts)


async def retrying(call: Callable[[], Awaitable[T]], attempts: int) -> T:
    """``call()``, waiting and trying again when Discord answers 429 (rate limited)."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except discord.HTTPException as exc:
            wait = limits.retry_after(exc)
            if wait is None or attempt == attempts:
                raise
            _LOGGER.info("Discord: rate limited; trying again in %.1f s", wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")
