"""What happens when a person asks: /continue, "Continue from here", !continue, and the three buttons.

Every entry first checks who asks where (:mod:`integrations.discord.access`)
and, for a pull, whether it is fair now (:mod:`integrations.discord.fairness`),
acknowledges an interaction at once (Discord allows 3 s), then runs its flow;
whatever goes wrong, a refusal included, is told to that person alone in one
line (:mod:`integrations.discord.replies`: never in the channel), never a crash.

- **pull** (the slash command, the menu, ``!continue``): open a thread on the
  message (or use the thread asked in), record the chat up to it, ask the hub
  for N continuations and post each with its buttons. ``!continue`` continues
  from the message it replies to, else from the latest chat message.
- **Pick**: store the pick first, then post its text as the thread's next line
  (a failed post is retried by pressing Pick again; a posted pick is not
  posted twice).
- **More like this**: sample again from the same point, with that offer's settings.
- **Branch**: continue from that continuation, without picking it.

:class:`Flows` is mixed into :class:`~integrations.discord.bot.AmbientBot`,
which supplies ``hub``, ``options``, ``trees``, the pick lock and
``remember_later``; it keeps its own :class:`~integrations.discord.fairness.Fairness`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord.ext import commands

from ambient.errors import AmbientError
from ambient.offers import Overrides
from ambient.sources import SourceEvent
from ambient.tree import Node, OfferState, new_id
from integrations.discord import posting
from integrations.discord.access import CHANNEL_NEEDS, THREAD_NEEDS, Access
from integrations.discord.chat import ChatReader
from integrations.discord.fairness import Fairness, Limited
from integrations.discord.posting import CONNECTION_ERRORS, display_text
from integrations.discord.replies import (
    DENIED,
    WAIT,
    WARNING,
    ContextRequester,
    InteractionRequester,
    Refused,
    Requester,
)
from integrations.discord.views import BRANCH, MORE, PICK

_LOGGER = logging.getLogger(__name__)


class Flows(ChatReader, Access):
    """The answers to a person's command, menu or button (part of :class:`AmbientBot`)."""

    _pick_lock: asyncio.Lock

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # discord.py waits out rate limits up to this long; a longer one is told to the person (posting)
        kwargs.setdefault("max_ratelimit_timeout", posting.LONGEST_WAIT_S)
        super().__init__(*args, **kwargs)
        self.fairness = Fairness()  # who may start a pull now (kept across option changes)

    def remember_later(self) -> None:
        """Index new lines into memory in the background: :meth:`AmbientBot.remember_later`."""
        raise NotImplementedError

    # ------------------------------------------------------------ entries
    async def on_slash(
        self, interaction: discord.Interaction[Any], n: int | None, temperature: float | None
    ) -> None:
        await self._answer(
            interaction, lambda r: self.pull(interaction.channel, None, n, temperature, r), pull=True
        )

    async def on_context_menu(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        await self._answer(
            interaction, lambda r: self.pull(message.channel, message, None, None, r), pull=True
        )

    async def on_button(self, action: str, interaction: discord.Interaction[Any], node_id: str) -> None:
        handlers = {PICK: self.pick, MORE: self.more, BRANCH: self.branch}
        channel, user = interaction.channel, interaction.user
        work = handlers[action]
        await self._answer(
            interaction, lambda r: work(channel, node_id, user, r), pull=action in (MORE, BRANCH)
        )

    async def on_prefix(self, ctx: commands.Context[Any], n: int | None, temperature: float | None) -> None:
        requester = ContextRequester(ctx)
        refusal = self.refusal(ctx.guild, ctx.channel, ctx.author)
        if refusal is not None:
            await self._tell(requester, refusal, DENIED)
            return
        try:
            slot = self._admit(ctx.guild, ctx.author, pull=True)
        except Limited as exc:
            await self._tell(requester, str(exc), exc.reaction)
            return

        async def work(r: Requester) -> None:
            target = await self._replied_to(ctx.message)
            if target is None and not isinstance(ctx.channel, discord.Thread):
                target = await self._latest(ctx.channel, before=ctx.message)
            async with ctx.typing():
                await self.pull(ctx.channel, target, n, temperature, r)

        with slot:
            await self._guarded(work, requester)

    async def _answer(
        self,
        interaction: discord.Interaction[Any],
        work: Callable[[Requester], Awaitable[None]],
        *,
        pull: bool = False,
    ) -> None:
        """Check who asks where (and, for a pull, fairness); acknowledge at once (Discord allows 3 s); work.

        A refusal is the interaction's own ephemeral answer: nothing shows in the channel.
        """
        refusal = self.refusal(interaction.guild, interaction.channel, interaction.user)
        if refusal is not None:
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        try:
            slot = self._admit(interaction.guild, interaction.user, pull=pull)
        except Limited as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        with slot:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await self._guarded(work, InteractionRequester(interaction))

    def _admit(self, guild: Any, user: Any, *, pull: bool) -> contextlib.AbstractContextManager[Any]:
        """A fairness slot held while a pull runs (:class:`Limited` if refused); nothing for other work."""
        if not pull:
            return contextlib.nullcontext()
        return self.fairness.admit(self.options, guild.id, user.id)

    async def _guarded(self, work: Callable[[Requester], Awaitable[None]], requester: Requester) -> None:
        """Run ``work``; whatever goes wrong, tell the person in one line (and never crash)."""
        try:
            await work(requester)
        except Refused as exc:
            await self._tell(requester, str(exc), exc.reaction)
        except AmbientError as exc:
            await self._tell(requester, str(exc))
        except discord.Forbidden as exc:
            await self._tell(
                requester,
                f"Discord refused that ({exc.text or 'missing permission'}): "
                "check the bot's permissions in this channel.",
            )
        except discord.NotFound:
            await self._tell(requester, "That message or thread no longer exists (was it deleted?).")
        except (discord.HTTPException, discord.RateLimited) as exc:
            await self._tell_discord_error(requester, exc)
        except CONNECTION_ERRORS as exc:
            _LOGGER.warning("Discord: connection problem: %s", exc)
            await self._tell(requester, "The connection to Discord dropped: try again in a moment.")
        except Exception as exc:
            _LOGGER.exception("Discord: request failed")
            await self._tell(requester, f"Something went wrong ({type(exc).__name__}): see ambient's log.")

    async def _tell_discord_error(self, requester: Requester, exc: Exception) -> None:
        """A rate limit discord.py did not wait out says how long; any other error, its status."""
        wait = posting.rate_limited_for(exc)
        if wait is not None:
            await self._tell(requester, posting.rate_limit_text(wait), WAIT)
        else:
            status = getattr(exc, "status", "?")
            await self._tell(requester, f"Discord answered with an error ({status}): try again.")

    async def _tell(self, requester: Requester, text: str, reaction: str = WARNING) -> None:
        try:
            await requester.tell(text, error=True, reaction=reaction)
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
                message = await posting.post_text(channel, display_text(result.text))
            except (discord.HTTPException, discord.RateLimited, *CONNECTION_ERRORS) as exc:
                _LOGGER.warning("Discord: pick %s stored, posting it failed: %s", node_id, exc)
                await requester.tell(_unposted_pick(exc))
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

    async def _open(self, channel: Any, target: discord.Message | None) -> tuple[Any, str]:
        """The thread to post in, and the node the continuations hang below."""
        place = self._require_place(channel)
        if place.in_thread:
            self._need(channel, THREAD_NEEDS)
            return channel, await self._sync_thread(channel, place, target)
        self._need(channel, CHANNEL_NEEDS)
        if target is None:
            target = await self._latest(channel)
        # first: a deleted message stops here, with nothing stored
        thread = await posting.thread_on(target, self.options.thread_archive_minutes)
        return thread, await self._sync_channel(channel, place, target)

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
            overrides=Overrides(n=n, temperature=temperature, max_tokens=self.options.max_tokens),
            debounce=False,
        )
        offer = await self.hub.offer_now(event)
        if offer.state != OfferState.DONE:
            raise Refused(f"sampling stopped before it finished ({offer.state}): try again.")
        nodes = await self.hub.run_blocking(self.trees.nodes, list(offer.node_ids))
        if not nodes:
            raise Refused("the model gave no continuation: try again.")
        posted = await posting.post_continuations(channel, nodes)
        self.remember_later()
        return posted


def _unposted_pick(exc: Exception) -> str:
    """What to tell the person whose pick is stored but not posted (nothing of it is left in the thread)."""
    wait = posting.rate_limited_for(exc)
    if wait is not None:
        limited = f"Discord is rate-limiting this bot for {posting.wait_text(wait)}"
        return f"Picked and saved, but {limited}: press Pick again then."
    return "Picked and saved, but posting it failed: press Pick again to post it."
