"""An offline Discord for the tests and ``ambient bench discord``: dpytest, extended.

dpytest fakes Discord's gateway and HTTP API for message flows. This module
adds what the bot needs beyond that, always at the HTTP edge:

* threads (``start_thread_with_message``), refusing without Create Public Threads;
* the components a message was sent with, kept on the stored message, so a
  button click carries them as Discord's would;
* stand-in interactions (:mod:`~tests.integrations.discord.standins`): real
  :class:`discord.Interaction` objects parsed from gateway payloads and
  dispatched through discord.py's own command tree and view store; only their
  HTTP replies (defer, ephemeral answers) are recorded instead of sent;
* injected failures on the next sends: a rate limit that lasts (discord.py's
  :class:`discord.RateLimited`) or a dropped connection. Rate limits discord.py
  waits out never reach the bot, and dpytest replaces the HTTP client that
  waits: ``test_rate_limits.py`` runs those against a fake Discord on loopback
  (``fake_api.py``), through discord.py's own HTTP client;
* direct messages, recorded apart from what is posted in the server, and a
  member's DMs closed (Discord's 403, code 50007 "Cannot send messages to this
  user"); reactions the bot adds, recorded (refused without Add Reactions).

Needs the dev requirements (dpytest). Nothing here reaches the network.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

import discord
import discord.ext.test as dpytest
from discord.ext.test import backend, factories

from integrations.discord.bot import COMMAND, CONTEXT_MENU, AmbientBot, default_intents
from integrations.discord.replies import CANNOT_DM
from tests.integrations.discord.standins import Direct, Reaction, Reply, Sent, StandInInteraction, http_error

__all__ = [
    "BOT_PERMISSIONS",
    "Direct",
    "OfflineDiscord",
    "Reaction",
    "Reply",
    "Sent",
    "StandInInteraction",
    "http_error",
    "intents",
]

T = TypeVar("T")

BOT_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    read_message_history=True,
    create_public_threads=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
)


def intents() -> discord.Intents:
    """The bot's intents plus the member cache, which dpytest needs to know the bot's own member.

    (On Discord the bot learns its member from GUILD_CREATE without that privileged intent.)
    """
    wanted = default_intents()
    wanted.members = True
    return wanted


class OfflineDiscord:
    """One fake server, its channels and members, around an :class:`AmbientBot`."""

    async def hub_idle(self) -> None:
        """Wait for the hub's background work (indexing): a TestHub and the daemon both have ``idle()``."""
        hub: Any = self.bot.hub
        await hub.idle()

    def __init__(self, bot: AmbientBot) -> None:
        self.bot = bot
        self.sent: list[Sent] = []  # posted in the server (channels and threads); DMs are in ``dms``
        self.dms: list[Direct] = []
        self.reactions: list[Reaction] = []
        self.closed_dms: set[int] = set()  # members who accept no direct message from the bot
        self.send_failures: list[Exception | None] = []  # what each next send raises (None: it goes through)

    async def start(
        self,
        channels: tuple[str, ...] = ("general", "random"),
        members: tuple[str, ...] = ("Alice", "Bob", "Carol"),
        bot_permissions: discord.Permissions = BOT_PERMISSIONS,
    ) -> None:
        bot = self.bot
        await bot._async_setup_hook()
        dpytest.configure(bot, text_channels=list(channels), voice_channels=0, members=list(members))
        self.state._command_tree = bot.tree  # dpytest swaps the state: route app commands like the gateway
        self.state.loop = asyncio.get_running_loop()  # dpytest leaves it unset (typing indicators need it)
        self._patch_http()
        role = backend.make_role("ambient-bot", self.guild, permissions=bot_permissions.value)
        backend.update_member(self.guild.me, roles=[role])
        for channel in self.guild.text_channels:  # dpytest's history fails on a channel nobody spoke in
            backend._cur_config.messages.setdefault(channel.id, [])
        await bot.setup_hook()

    async def stop(self) -> None:
        """Finish background work, empty dpytest's queues and close the bot."""
        await self.hub_idle()
        await dpytest.empty_queue()
        self.bot.ws = None  # dpytest's fake gateway has no socket to close
        await self.bot.close()

    # --------------------------------------------------------------- world
    @property
    def state(self) -> Any:
        return backend.get_state()

    @property
    def guild(self) -> discord.Guild:
        return dpytest.get_config().guilds[0]

    def channel(self, name: str) -> discord.TextChannel:
        found = discord.utils.get(self.guild.text_channels, name=name)
        if found is None:
            raise KeyError(name)
        return found

    def member(self, name: str) -> discord.Member:
        for member in dpytest.get_config().members:
            if member.name == name:
                return member
        raise KeyError(name)

    def thread(self, thread_id: int) -> discord.Thread:
        found = self.guild.get_thread(thread_id)
        if found is None:
            raise KeyError(thread_id)
        return found

    async def say(self, content: str, channel: Any, member: str = "Alice", attachments: Any = None) -> Any:
        """A person posts ``content`` (the bot sees it through the gateway)."""
        message = await dpytest.message(
            content, channel=channel, member=self.member(member), attachments=attachments
        )
        await self.hub_idle()
        return message

    async def reply(self, content: str, to: Any, member: str = "Alice") -> Any:
        """A person replies to the message ``to`` (a reply carries a message reference)."""
        channel = to.channel
        data = factories.make_message_dict(
            channel, self.member(member), content=content, type=19, guild_id=channel.guild.id
        )
        data["message_reference"] = {
            "message_id": str(to.id),
            "channel_id": str(channel.id),
            "guild_id": str(channel.guild.id),
        }
        self.state.parse_message_create(data)
        backend._cur_config.messages.setdefault(channel.id, []).append(data)
        await dpytest.run_all_events()
        await self.hub_idle()
        return self.state._get_message(data["id"])

    async def delete(self, message: Any) -> None:
        """A person deletes ``message``; returns when the bot has handled the event."""
        await message.delete()
        await dpytest.run_all_events()
        await self.hub_idle()

    async def edit(self, message: Any, content: str) -> None:
        """A person edits ``message``: Discord's MESSAGE_UPDATE goes through discord.py's own parser."""
        data = self.raw_message(message.channel.id, message.id)
        data.update(content=content, edited_timestamp=discord.utils.utcnow().isoformat())
        data.pop("member", None)  # optional in an update; dpytest's copy lacks fields discord.py reads
        if getattr(message, "guild", None) is not None:
            data["guild_id"] = str(message.guild.id)
        self.bot._connection.parse_message_update(data)
        await dpytest.run_all_events()
        await self.hub_idle()

    async def say_embed(self, channel: Any, member: str, title: str) -> Any:
        """A message with an embed and no text (as an app or a link preview posts)."""
        message = backend.make_message("", self.member(member), channel, embeds=[discord.Embed(title=title)])
        await dpytest.run_all_events()
        await self.hub_idle()
        return message

    def close_dms(self, member: str) -> None:
        """The member turns off direct messages from server members: a DM to them gets Discord's 403."""
        self.closed_dms.add(self.member(member).id)

    def dms_to(self, member: str) -> list[str]:
        user_id = self.member(member).id
        return [d.content for d in self.dms if d.user_id == user_id]

    def reactions_on(self, message: Any) -> list[str]:
        return [r.emoji for r in self.reactions if r.message_id == message.id]

    def sent_in(self, channel: Any) -> list[Sent]:
        return [s for s in self.sent if s.channel_id == channel.id]

    def raw_message(self, channel_id: int, message_id: int) -> dict[str, Any]:
        for data in backend._cur_config.messages.get(channel_id, []):
            if int(data["id"]) == message_id:
                return dict(data)
        raise KeyError(message_id)

    async def deny_bot(self, channel: Any, **permissions: bool) -> None:
        """Set a permission overwrite for the bot on ``channel`` (e.g. ``create_public_threads=False``).

        (dpytest's own helper writes the overwrite type as a string, which discord.py 2 ignores.)
        """
        allow, deny = discord.PermissionOverwrite(**permissions).pair()
        data = factories.dict_from_channel(channel)
        me = {"id": str(self.guild.me.id), "type": 1, "allow": str(allow.value), "deny": str(deny.value)}
        data["permission_overwrites"] = [me]
        self.state.parse_channel_update(data)
        await dpytest.run_all_events()

    def rate_limit_next(self, retry_after: float = 37.0, after: int = 0) -> None:
        """Discord rate-limits the bot for longer than discord.py waits (its ``max_ratelimit_timeout``).

        After ``after`` more sends go through, the next one raises :class:`discord.RateLimited`, as
        discord.py's HTTP client does (at once, without sending) for a wait longer than that.
        """
        self.send_failures += [None] * after + [discord.RateLimited(retry_after)]

    def still_posted(self, sent: Sent) -> bool:
        """Whether the message the bot sent is still there (not deleted since)."""
        try:
            self.raw_message(sent.channel_id, sent.message_id)
        except KeyError:
            return False
        return True

    async def drop_gateway(self) -> None:
        """The gateway connection drops and discord.py resumes the session."""
        self.bot.dispatch("disconnect")
        await dpytest.run_all_events()
        self.bot.dispatch("resumed")
        await dpytest.run_all_events()

    # -------------------------------------------------------- interactions
    async def slash(self, channel: Any, member: str = "Alice", **options: Any) -> StandInInteraction:
        """``/continue`` with ``options`` (n=..., temperature=...), through the bot's command tree."""
        return await self._dispatch(self.slash_payload(channel, member, **options))

    def slash_payload(self, channel: Any, member: str = "Alice", **options: Any) -> dict[str, Any]:
        """The INTERACTION_CREATE payload of ``/continue`` (for :meth:`at_once`)."""
        data = {
            "id": "1",
            "name": COMMAND,
            "type": 1,
            "guild_id": str(self.guild.id),
            "options": [
                {"name": k, "type": 10 if isinstance(v, float) else 4, "value": v} for k, v in options.items()
            ],
        }
        return self._payload(2, channel, member, data)

    async def at_once(self, payloads: list[dict[str, Any]]) -> list[StandInInteraction]:
        """Several interactions arriving together (each handled before any is done); waits for all."""
        before = asyncio.all_tasks()
        interactions = [self.start_dispatch(p) for p in payloads]
        await asyncio.sleep(0)
        await asyncio.gather(*(asyncio.all_tasks() - before - {asyncio.current_task()}))
        await self.hub_idle()
        await dpytest.run_all_events()
        return interactions

    async def context_menu(self, message: Any, member: str = "Alice") -> StandInInteraction:
        """The message menu "Continue from here" on ``message``."""
        raw = self.raw_message(message.channel.id, message.id)
        data = {
            "id": "2",
            "name": CONTEXT_MENU,
            "type": 3,
            "guild_id": str(self.guild.id),
            "target_id": str(message.id),
            "resolved": {"messages": {str(message.id): raw}},
        }
        return await self._dispatch(self._payload(2, message.channel, member, data))

    async def click(self, sent: Sent, action: str, member: str = "Alice") -> StandInInteraction:
        """Press the button ``action`` ("pick", "more", "branch") under a message the bot sent."""
        custom_id = next(c for c in sent.custom_ids if c.startswith(f"ambient:{action}:"))
        channel = self.bot.get_channel(sent.channel_id) or self.guild.get_thread(sent.channel_id)
        raw = self.raw_message(sent.channel_id, sent.message_id)
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._dispatch(self._payload(3, channel, member, data, message=raw))

    def start_dispatch(self, payload: dict[str, Any]) -> StandInInteraction:
        """Hand the interaction to discord.py as the gateway's INTERACTION_CREATE would."""
        interaction = StandInInteraction(data=payload, state=self.state)
        if payload["type"] == 2:
            self.bot.tree._from_interaction(interaction)
        elif payload["type"] == 3:
            data = payload["data"]
            self.state._view_store.dispatch_view(data["component_type"], data["custom_id"], interaction)
        self.bot.dispatch("interaction", interaction)
        return interaction

    async def _dispatch(self, payload: dict[str, Any]) -> StandInInteraction:
        before = asyncio.all_tasks()
        interaction = self.start_dispatch(payload)
        await asyncio.sleep(0)
        started = asyncio.all_tasks() - before - {asyncio.current_task()}
        await asyncio.gather(*started)
        await self.hub_idle()
        await dpytest.run_all_events()
        return interaction

    def _payload(
        self,
        kind: int,
        channel: Any,
        member: str,
        data: dict[str, Any],
        message: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        person = self.member(member)
        channel_data: dict[str, Any] = {"id": str(channel.id), "type": channel.type.value}
        if isinstance(channel, discord.Thread):
            channel_data["parent_id"] = str(channel.parent_id)
        payload: dict[str, Any] = {
            "id": str(factories.make_id()),
            "application_id": str(self.bot.user.id),
            "type": kind,
            "token": "stand-in",
            "version": 1,
            "guild_id": str(self.guild.id),
            "channel_id": str(channel.id),
            "channel": channel_data,
            "member": {
                **factories.dict_from_member(person),
                "permissions": str(channel.permissions_for(person).value),
            },
            "app_permissions": str(channel.permissions_for(self.guild.me).value),
            "locale": "en-US",
            "attachment_size_limit": 8_000_000,
            "data": data,
        }
        if message is not None:
            payload["message"] = message
        return payload

    # ---------------------------------------------------------- HTTP edge
    def _patch_http(self) -> None:
        http = self.bot.http
        original_send = http.send_message

        async def send_message(channel_id: int, *, params: Any) -> Any:
            channel = backend._get_higher_locs(1).get("channel")  # dpytest reads it from this frame, too
            failure = self.send_failures.pop(0) if self.send_failures else None
            if failure is not None:
                raise failure
            if isinstance(channel, discord.DMChannel):
                self._check_dm(channel)
                data = await original_send(channel_id, params=params)
                content = (params.payload or {}).get("content") or ""
                self.dms.append(Direct(time.perf_counter(), channel.recipient.id, content))
                return data
            data = await original_send(channel_id, params=params)
            self._keep_components(int(channel_id), int(data["id"]), params.payload or {})
            return data

        http.send_message = send_message
        http.start_thread_with_message = self._start_thread
        http.add_reaction = self._add_reaction

    def _check_dm(self, channel: discord.DMChannel) -> None:
        if channel.recipient is not None and channel.recipient.id in self.closed_dms:
            raise http_error(403, CANNOT_DM, "Cannot send messages to this user")

    async def _add_reaction(self, channel_id: int, message_id: int, emoji: str) -> None:
        channel = self.bot.get_channel(int(channel_id)) or self.guild.get_thread(int(channel_id))
        perms = channel.permissions_for(self.guild.me)
        if not (perms.add_reactions and perms.read_message_history) and not perms.administrator:
            raise http_error(403, 50013, "Missing Permissions")
        try:
            self.raw_message(int(channel_id), int(message_id))
        except KeyError:
            raise http_error(404, 10008, "Unknown Message") from None
        self.reactions.append(Reaction(time.perf_counter(), int(channel_id), int(message_id), emoji))

    def _keep_components(self, channel_id: int, message_id: int, payload: dict[str, Any]) -> None:
        components = payload.get("components") or []
        for data in backend._cur_config.messages.get(channel_id, []):
            if int(data["id"]) == message_id:
                data["components"] = components
        custom_ids = tuple(
            child["custom_id"]
            for row in components
            for child in row.get("components", [])
            if "custom_id" in child
        )
        content = payload.get("content") or ""
        mentions = payload.get("allowed_mentions")
        self.sent.append(Sent(time.perf_counter(), channel_id, message_id, content, custom_ids, mentions))

    async def _start_thread(
        self,
        channel_id: int,
        message_id: int,
        *,
        name: str,
        auto_archive_duration: int,
        rate_limit_per_user: int | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        channel = self.bot.get_channel(int(channel_id))
        perms = channel.permissions_for(channel.guild.me)
        if not (perms.create_public_threads or perms.administrator):
            raise http_error(403, 50013, "Missing Permissions")
        if channel.guild.get_thread(int(message_id)) is not None:
            raise http_error(400, 160004, "A thread has already been created for this message")
        try:
            self.raw_message(int(channel_id), int(message_id))
        except KeyError:
            raise http_error(404, 10008, "Unknown Message") from None
        data = {
            "id": str(message_id),
            "guild_id": str(channel.guild.id),
            "parent_id": str(channel_id),
            "owner_id": str(self.bot.user.id),
            "name": name,
            "type": 11,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": rate_limit_per_user or 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": auto_archive_duration,
                "archive_timestamp": discord.utils.utcnow().isoformat(),
                "locked": False,
            },
        }
        self.state.parse_thread_create(data)
        backend._cur_config.messages.setdefault(int(message_id), [])
        return data
