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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from ambient.errors import AmbientError
from ambient.sources import Hub, SourceEvent
from ambient.tree import Node, OfferState, new_id
from integrations.discord import limits
from integrations.discord.branches import ChannelTrees, Place
from integrations.discord.options import MAX_N, DiscordOptions
from integrations.discord.replies import (
    NO_MENTIONS,
    ContextRequester,
    InteractionRequester,
    Refused,
    Requester,
)
from integrations.discord.transcript import ChatLine, clean_name, continuation_prefix, message_line
from integrations.discord.views import BRANCH, BUTTONS, MORE, PICK, offer_view

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

COMMAND = "continue"
CONTEXT_MENU = "Continue from here"

CHAT_TYPES = (discord.MessageType.default, discord.MessageType.reply)
CHANNEL_NEEDS = ("view_channel", "read_message_history", "create_public_threads", "send_messages_in_threads")
THREAD_NEEDS = ("view_channel", "read_message_history", "send_messages_in_threads")
CONNECTION_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError, discord.ConnectionClosed)
EMPTY = "*(empty continuation)*"


def default_intents() -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = True  # privileged: the prefix command and listening read message text
    return intents


def display_text(text: str) -> str:
    return text.strip() or EMPTY


def thread_name(message: discord.Message) -> str:
    line = message_line(message.author.display_name, message.clean_content) or "ambient"
    return limits.truncate(line.strip().replace("\n", " "), limits.THREAD_NAME_LIMIT, "…")


class AmbientBot(commands.Bot):  # type: ignore[misc]  # discord.py is skipped by mypy
    """ambient on Discord. Needs the hub (sampling, store) and the typed options."""

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
        self._tasks: set[asyncio.Task[Any]] = set()
        self._index_task: asyncio.Task[None] | None = None
        self._index_again = False
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

    # ------------------------------------------------------------- places
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
            await self.hub.run_blocking(self.trees.mark_deleted, place, payload.message_id)
        except Exception:
            _LOGGER.exception("Discord: could not mark message %s deleted", payload.message_id)

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

    # ------------------------------------------------------------ entries
    async def on_slash(
        self, interaction: discord.Interaction[Any], n: int | None, temperature: float | None
    ) -> None:
        await self._answer(interaction, lambda r: self.pull(interaction.channel, None, n, temperature, r))

    async def on_context_menu(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        await self._answer(interaction, lambda r: self.pull(message.channel, message, None, None, r))

    async def on_button(self, action: str, interaction: discord.Interaction[Any], node_id: str) -> None:
        handlers = {PICK: self.pick, MORE: self.more, BRANCH: self.branch}
        channel, user = interaction.channel, interaction.user
        await self._answer(interaction, lambda r: handlers[action](channel, node_id, user, r))

    async def on_prefix(self, ctx: commands.Context[Any], n: int | None, temperature: float | None) -> None:
        requester = ContextRequester(ctx)
        refusal = self.refusal(ctx.guild, ctx.channel, ctx.author)
        if refusal is not None:
            await self._tell(requester, refusal)
            return

        async def work(r: Requester) -> None:
            target = await self._replied_to(ctx.message)
            if target is None and not isinstance(ctx.channel, discord.Thread):
                target = await self._latest(ctx.channel, before=ctx.message)
            async with ctx.typing():
                await self.pull(ctx.channel, target, n, temperature, r)

        await self._guarded(work, requester)

    async def _answer(
        self, interaction: discord.Interaction[Any], work: Callable[[Requester], Awaitable[None]]
    ) -> None:
        """Check who asks where, acknowledge at once (Discord allows 3 s), then do the work."""
        refusal = self.refusal(interaction.guild, interaction.channel, interaction.user)
        if refusal is not None:
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self._guarded(work, InteractionRequester(interaction))

    async def _guarded(self, work: Callable[[Requester], Awaitable[None]], requester: Requester) -> None:
        """Run ``work``; whatever goes wrong, tell the person in one line (and never crash)."""
        try:
            await work(requester)
        except (Refused, AmbientError) as exc:
            await self._tell(requester, str(exc))
        except discord.Forbidden as exc:
            await self._tell(
                requester,
                f"Discord refused that ({exc.text or 'missing permission'}): "
                "check the bot's permissions in this channel.",
            )
        except discord.NotFound:
            await self._tell(requester, "That message or thread no longer exists (was it deleted?).")
        except discord.HTTPException as exc:
            if exc.status == 429:
                await self._tell(
                    requester, "Discord is rate-limiting ambient right now: try again in a minute."
                )
            else:
                await self._tell(requester, f"Discord answered with an error ({exc.status}): try again.")
        except CONNECTION_ERRORS as exc:
            _LOGGER.warning("Discord: connection problem: %s", exc)
            await self._tell(requester, "The connection to Discord dropped: try again in a moment.")
        except Exception as exc:
            _LOGGER.exception("Discord: request failed")
            await self._tell(requester, f"Something went wrong ({type(exc).__name__}): see ambient's log.")

    async def _tell(self, requester: Requester, text: str) -> None:
        try:
            await requester.tell(text, error=True)
        except Exception as exc:
            _LOGGER.warning("Discord: could not answer (%s): %s", exc, text)

    # ------------------------------------------------------------- flows
    async def pull(
        self,
        channel: Any,
        target: discord.Message | None,
        n: int | None,
        temperature: float | None,
        requester: Requester,
    ) -> None:
        """Open (or use) the thread, record the chat up to ``target``, and post N continuations there."""
        n, temperature = self._settings(n, temperature)
        thread, head = await self._open(channel, target)
        posted = await self._offer_and_post(thread, head, n, temperature)
        await requester.tell(f"{len(posted)} continuations in {thread.mention}: pick one with its button.")

    async def pick(self, channel: Any, node_id: str, user: Any, requester: Requester) -> None:
        """Store the pick first, then post the picked text as the thread's next line."""
        place = self._require_place(channel)
        self._need(channel, THREAD_NEEDS if place.in_thread else ("send_messages",))
        by = {"by": getattr(user, "display_name", str(user)), "user_id": str(getattr(user, "id", ""))}
        async with self._pick_lock:
            result = await self.hub.run_blocking(self.trees.pick, node_id, by)
            if result.already_posted:
                await requester.tell("That continuation is already picked: it is in the thread above.")
                return
            try:
                message = await self._post_text(channel, display_text(result.text))
            except (discord.HTTPException, *CONNECTION_ERRORS) as exc:
                _LOGGER.warning("Discord: pick %s stored, posting it failed: %s", node_id, exc)
                await requester.tell("Picked and saved, but posting it failed: press Pick again to post it.")
                return
            await self.hub.run_blocking(self.trees.mark_posted, place, node_id, message.id, message.author.id)
        self.remember_later()
        await requester.tell("Picked: it is now the thread's next line.")

    async def more(self, channel: Any, node_id: str, user: Any, requester: Requester) -> None:
        """Sample again from the same point as this continuation."""
        node = await self.hub.run_blocking(self.trees.node, node_id)
        if node.parent_id is None:
            raise Refused("that is not a continuation")
        n, temperature = await self._settings_of(node)
        await self.hub.run_blocking(self.trees.regenerate, node_id, {"via": "discord"})
        posted = await self._offer_and_post(channel, node.parent_id, n, temperature)
        await requester.tell(f"{len(posted)} more continuations from the same point, below.")

    async def branch(self, channel: Any, node_id: str, user: Any, requester: Requester) -> None:
        """Continue from this continuation (without picking it)."""
        node = await self.hub.run_blocking(self.trees.node, node_id)
        n, temperature = await self._settings_of(node)
        posted = await self._offer_and_post(channel, node.id, n, temperature)
        await requester.tell(f"{len(posted)} continuations of that one, below.")

    # ------------------------------------------------------------ helpers
    def _settings(self, n: int | None, temperature: float | None) -> tuple[int, float | None]:
        n = n or self.options.n or min(self.hub.app.config.sampling.n, self.options.max_n)
        if not 1 <= n <= self.options.max_n:
            raise Refused(
                f"n must be between 1 and {self.options.max_n} here (each continuation is a message)."
            )
        temperature = self.options.temperature if temperature is None else temperature
        if temperature is not None and not 0 <= temperature <= 2:
            raise Refused(f"temperature must be between 0 and 2, got {temperature}.")
        return n, temperature

    async def _settings_of(self, node: Node) -> tuple[int, float | None]:
        settings = await self.hub.run_blocking(self.trees.offer_settings, node)
        n = min(int(settings.get("n") or 0), self.options.max_n) or None
        return self._settings(n, settings.get("temperature"))

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

    async def _open(self, channel: Any, target: discord.Message | None) -> tuple[Any, str]:
        """The thread to post in, and the node the continuations hang below."""
        place = self._require_place(channel)
        if place.in_thread:
            self._need(channel, THREAD_NEEDS)
            return channel, await self._sync_thread(channel, place, target)
        self._need(channel, CHANNEL_NEEDS)
        if target is None:
            target = await self._latest(channel)
        thread = await self._thread_on(target)  # first: a deleted message stops here, with nothing stored
        return thread, await self._sync_channel(channel, place, target)

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

    async def _thread_on(self, message: discord.Message) -> Any:
        """The thread on ``message``: the one already there, or a new one."""
        existing = message.guild.get_thread(message.id) if message.guild is not None else None
        if existing is not None:
            return existing
        minutes = cast(Any, self.options.thread_archive_minutes)
        try:
            return await self._retrying(
                lambda: message.create_thread(name=thread_name(message), auto_archive_duration=minutes)
            )
        except discord.Forbidden as exc:
            text = limits.missing_permission_text(["Create Public Threads"], message.channel.mention)
            raise Refused(text) from exc
        except discord.NotFound as exc:
            raise Refused("that message was deleted before I could open a thread on it.") from exc
        except discord.HTTPException as exc:
            if exc.code != 160004:  # "a thread has already been created for this message"
                raise
            return await message.guild.fetch_channel(message.id)

    async def _offer_and_post(
        self, channel: Any, parent_id: str, n: int, temperature: float | None
    ) -> list[Any]:
        """Ask the hub for N continuations below ``parent_id`` and post each with its buttons."""
        place = self._require_place(channel)
        text = await self.hub.run_blocking(self.trees.window, parent_id, self.options.history_window)
        if not text.strip():
            raise Refused("there is nothing to continue here yet: say something first.")
        event = SourceEvent(
            source="discord",
            key=f"{place.guild_id}/{place.timeline_id}/{new_id()[:8]}",  # one per request: none cancels
            parent_id=parent_id,
            text=text,
            meta={
                "guild": str(place.guild_id),
                "channel": str(place.channel_id),
                "thread": str(place.timeline_id),
            },
            n=n,
            temperature=temperature,
            max_tokens=self.options.max_tokens,
            debounce=False,
        )
        offer = await self.hub.offer_now(event)
        if offer.state != OfferState.DONE:
            raise Refused(f"sampling stopped before it finished ({offer.state}): try again.")
        nodes = await self.hub.run_blocking(self.trees.nodes, list(offer.node_ids))
        if not nodes:
            raise Refused("the model gave no continuation: try again.")
        posted = [await self._post_continuation(channel, i, node) for i, node in enumerate(nodes, 1)]
        self.remember_later()
        return posted

    async def _post_continuation(self, channel: Any, index: int, node: Node) -> Any:
        parts = limits.cap_parts(limits.split_message(continuation_prefix(index) + display_text(node.text)))
        for part in parts[:-1]:
            await self._send(channel, part)
        return await self._send(channel, parts[-1], offer_view(node.id))

    async def _post_text(self, channel: Any, text: str) -> Any:
        """Post ``text`` (split at 2,000 characters); returns the last message."""
        parts = limits.cap_parts(limits.split_message(text))
        message = None
        for part in parts:
            message = await self._send(channel, part)
        return message

    async def _send(self, channel: Any, content: str, view: discord.ui.View | None = None) -> Any:
        if view is None:
            return await self._retrying(lambda: channel.send(content, allowed_mentions=NO_MENTIONS))
        return await self._retrying(lambda: channel.send(content, view=view, allowed_mentions=NO_MENTIONS))

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, waiting and trying again when Discord answers 429 (rate limited)."""
        attempts = self.options.send_retries
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

    # ------------------------------------------------------------- memory
    def remember_later(self) -> None:
        """Index the new lines and continuations into memory, in the background (coalesced)."""
        schedule = getattr(self.hub, "schedule_index", None)
        if callable(schedule):
            schedule()
            return
        if self._index_task is not None and not self._index_task.done():
            self._index_again = True
            return
        self._index_task = self._spawn(self._index_loop())

    async def _index_loop(self) -> None:
        while True:
            self._index_again = False
            try:
                await self.hub.run_blocking(self.hub.app.index_pending)
            except Exception:
                _LOGGER.exception("Discord: remembering new lines failed")
            if not self._index_again:
                return

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait_idle(self) -> None:
        """Wait for background work (indexing) to finish."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await super().close()

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
