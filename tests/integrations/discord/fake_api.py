"""A fake Discord HTTP API on loopback, so discord.py's own HTTP client and rate-limit handling run in tests.

dpytest (``harness.py``) replaces discord.py's HTTP client, so the code that
stands between the bot and Discord in production (``discord.http.HTTPClient``
and its buckets, its 429 handling, the interaction webhooks) never runs there.
Here it does: with ``discord.http.Route.BASE`` pointed at :attr:`FakeDiscord.base`,
an aiohttp app on 127.0.0.1 answers the endpoints a pull uses, with JSON
shaped as Discord's:

* ``GET /users/@me`` and ``GET /oauth2/applications/@me`` (log in);
* a channel's messages: read (``GET``, with ``limit`` and ``before``), post, delete;
* ``POST /channels/{id}/messages/{id}/threads`` (a thread on a message);
* an interaction's answer (``POST /interactions/{id}/{token}/callback``) and
  its followups (``POST /webhooks/{application}/{token}``): what the person is told.

:meth:`FakeDiscord.rate_limit` makes a route answer 429 a number of times
before it lets requests through, with Discord's headers and body: a route's
bucket (``X-RateLimit-*``, ``X-RateLimit-Scope: user``) or the global limit
(``X-RateLimit-Global``); ``Retry-After`` in whole seconds, rounded up, and
the exact wait as ``retry_after`` in the body. Every answer carries ``Via``, as
Discord's do behind its proxy (discord.py takes a 429 without it for a ban).
Every request is kept in :attr:`FakeDiscord.seen`, with the time it arrived.

:meth:`FakeDiscord.guild_payload` is the server as the gateway's GUILD_CREATE
gives it (a channel or two, the bot and some members): fed to discord.py's
own parser, it gives the bot real guild, channel and member objects without a
gateway. Nothing here reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
import json
import math
import re
import time
from typing import Any

from aiohttp import web

API = "/api/v10"
SNOWFLAKES = itertools.count(1_300_000_000_000_000_000)
EPHEMERAL = 64  # message flag
DEFERRED_ANSWER = 5  # interaction callback type: "thinking..."
EVERYONE_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 16) | (1 << 6)  # view, send, read history, add reactions
BOT_PERMISSIONS = EVERYONE_PERMISSIONS | (1 << 35) | (1 << 38)  # + create public threads, send in threads


def snowflake() -> int:
    return next(SNOWFLAKES)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


@dataclasses.dataclass
class Limit:
    """``times`` answers 429 to ``method path`` (a regular expression), after ``after`` went through."""

    method: str
    path: re.Pattern[str]
    times: int
    retry_after: float
    is_global: bool
    after: int = 0

    def takes(self, method: str, path: str) -> bool:
        if self.times <= 0 or method != self.method or not self.path.fullmatch(path):
            return False
        if self.after > 0:
            self.after -= 1
            return False
        self.times -= 1
        return True


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request as the fake Discord received it (``at``: time.perf_counter() on arrival)."""

    at: float
    method: str
    path: str
    status: int
    body: Any


@dataclasses.dataclass(frozen=True)
class Told:
    """An answer to an interaction: what the person who asked sees."""

    content: str | None
    ephemeral: bool
    kind: str  # "defer" or "followup"


class FakeDiscord:
    """One server ("general" and "random"; Alice and Bob; the bot) behind a fake Discord API."""

    def __init__(self) -> None:
        self.guild_id = snowflake()
        self.bot_role_id = snowflake()
        self.bot = user(snowflake(), "ambient", bot=True)
        self.people = {name: user(snowflake(), name) for name in ("Alice", "Bob")}
        self.channels: dict[int, dict[str, Any]] = {}
        for name in ("general", "random"):
            channel = text_channel(snowflake(), self.guild_id, name)
            self.channels[int(channel["id"])] = channel
        self.messages: dict[int, list[dict[str, Any]]] = {cid: [] for cid in self.channels}
        self.seen: list[Seen] = []
        self.told: list[Told] = []
        self.limited = asyncio.Event()  # set when a 429 was answered
        self._limits: list[Limit] = []
        self._interactions: dict[str, int] = {}  # token -> channel id, for followups
        self._runner: web.AppRunner | None = None
        self.base = ""

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> FakeDiscord:
        app = web.Application(middlewares=[self._edge])
        self._routes(app.router)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}{API}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -------------------------------------------------------------- scripts
    def rate_limit(
        self,
        method: str,
        path: str,
        *,
        times: int = 1,
        retry_after: float,
        is_global: bool = False,
        after: int = 0,
    ) -> None:
        """Answer ``times`` 429s to ``method path`` (a regular expression over the path after /api/v10)."""
        self._limits.append(Limit(method, re.compile(path), times, retry_after, is_global, after))

    def channel_id(self, name: str) -> int:
        return next(cid for cid, data in self.channels.items() if data["name"] == name)

    def say(self, channel_id: int, person: str, content: str) -> dict[str, Any]:
        """A person posts ``content`` (stored; the bot reads it through the API)."""
        return self._store(message(snowflake(), channel_id, self.people[person], content))

    def in_channel(self, channel_id: int) -> list[dict[str, Any]]:
        """The messages there now, oldest first."""
        return list(self.messages.get(channel_id, []))

    def requests(self, method: str, path: str) -> list[Seen]:
        pattern = re.compile(path)
        return [s for s in self.seen if s.method == method and pattern.fullmatch(s.path)]

    # ------------------------------------------------------------- payloads
    def guild_payload(self) -> dict[str, Any]:
        """The server as the gateway's GUILD_CREATE gives it."""
        everyone = role(self.guild_id, "@everyone", EVERYONE_PERMISSIONS, 0)
        members = [member(self.bot, [str(self.bot_role_id)])]
        members += [member(person, []) for person in self.people.values()]
        return {
            "id": str(self.guild_id),
            "name": "Fake Server",
            "owner_id": self.people["Alice"]["id"],
            "icon": None,
            "features": [],
            "roles": [everyone, role(self.bot_role_id, "ambient", BOT_PERMISSIONS, 1)],
            "channels": list(self.channels.values()),
            "threads": [],
            "members": members,
            "member_count": len(members),
            "emojis": [],
            "stickers": [],
            "large": False,
            "unavailable": False,
            "preferred_locale": "en-US",
            "premium_tier": 0,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "system_channel_flags": 0,
        }

    def slash_payload(self, channel_id: int, person: str, name: str = "continue") -> dict[str, Any]:
        """The INTERACTION_CREATE payload of ``/name`` typed by ``person`` in the channel."""
        token = f"token-{snowflake()}"
        self._interactions[token] = channel_id
        asker = member(self.people[person], [])
        return {
            "id": str(snowflake()),
            "application_id": self.bot["id"],
            "type": 2,
            "token": token,
            "version": 1,
            "guild_id": str(self.guild_id),
            "channel_id": str(channel_id),
            "channel": self.channels[channel_id],
            "member": {**asker, "permissions": str(EVERYONE_PERMISSIONS)},
            "app_permissions": str(BOT_PERMISSIONS),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(self.guild_id)},
            "context": 0,
            "attachment_size_limit": 8_000_000,
            "data": {"id": str(snowflake()), "name": name, "type": 1, "options": []},
        }

    # ---------------------------------------------------------------- edge
    @web.middleware
    async def _edge(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every request: a scripted 429, or the endpoint's answer; both kept in :attr:`seen`."""
        arrived = time.perf_counter()
        body = await request.json() if request.content_type == "application/json" else None
        path = request.path.removeprefix(API)
        limit = next((lim for lim in self._limits if lim.takes(request.method, path)), None)
        response = too_many(limit, bucket=path) if limit is not None else await handler(request)
        if limit is None:
            response.headers.update(bucket_headers(path, remaining=4))
        response.headers["Via"] = "1.1 google"
        self.seen.append(Seen(arrived, request.method, path, response.status, body))
        if limit is not None:
            self.limited.set()
        return response

    def _routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(f"{API}/users/@me", self._me)
        router.add_get(f"{API}/oauth2/applications/@me", self._application)
        router.add_get(API + "/channels/{channel}/messages", self._history)
        router.add_post(API + "/channels/{channel}/messages", self._post)
        router.add_get(API + "/channels/{channel}/messages/{message}", self._message)
        router.add_delete(API + "/channels/{channel}/messages/{message}", self._delete)
        router.add_post(API + "/channels/{channel}/messages/{message}/threads", self._thread)
        router.add_post(API + "/interactions/{interaction}/{token}/callback", self._answer)
        router.add_post(API + "/webhooks/{application}/{token}", self._followup)

    # ------------------------------------------------------------ endpoints
    async def _me(self, request: web.Request) -> web.Response:
        return answer({**self.bot, "verified": True, "mfa_enabled": False, "flags": 0})

    async def _application(self, request: web.Request) -> web.Response:
        owner = self.people["Alice"]
        return answer(
            {
                "id": self.bot["id"],
                "name": "ambient",
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": owner,
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
            }
        )

    async def _history(self, request: web.Request) -> web.Response:
        found = self._messages_of(request)
        before = int(request.query.get("before", 0)) or None
        limit = int(request.query.get("limit", 50))
        newest_first = [m for m in reversed(found) if before is None or int(m["id"]) < before]
        return answer(newest_first[:limit])

    async def _message(self, request: web.Request) -> web.Response:
        found = self._find(request)
        return answer(found) if found is not None else unknown_message()

    async def _post(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel"])
        if channel_id not in self.messages:
            return error(404, 10003, "Unknown Channel")
        payload = await request.json()
        sent = message(snowflake(), channel_id, self.bot, payload.get("content") or "")
        sent["components"] = payload.get("components") or []
        return answer(self._store(sent))

    async def _delete(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if found is None:
            return unknown_message()
        self.messages[int(found["channel_id"])].remove(found)
        return web.Response(status=204)

    async def _thread(self, request: web.Request) -> web.Response:
        parent = int(request.match_info["channel"])
        if self._find(request) is None:
            return unknown_message()
        thread_id = int(request.match_info["message"])
        if thread_id in self.channels:
            return error(400, 160004, "A thread has already been created for this message")
        payload = await request.json()
        thread = thread_channel(thread_id, self.guild_id, parent, self.bot, payload)
        self.channels[thread_id] = thread
        self.messages[thread_id] = []
        return answer(thread, status=201)

    async def _answer(self, request: web.Request) -> web.Response:
        payload = await request.json()
        data = payload.get("data") or {}
        ephemeral = bool(int(data.get("flags") or 0) & EPHEMERAL)
        kind = "defer" if payload.get("type") == DEFERRED_ANSWER else "message"
        self.told.append(Told(data.get("content"), ephemeral, kind))
        loading = payload.get("type") == DEFERRED_ANSWER
        answered = {
            "id": request.match_info["interaction"],
            "type": 2,
            "response_message_loading": loading,
            "response_message_ephemeral": ephemeral,
        }
        return answer({"interaction": answered})

    async def _followup(self, request: web.Request) -> web.Response:
        payload = await request.json()
        ephemeral = bool(int(payload.get("flags") or 0) & EPHEMERAL)
        self.told.append(Told(payload.get("content"), ephemeral, "followup"))
        channel_id = self._interactions.get(request.match_info["token"], 0)
        followup = message(snowflake(), channel_id, self.bot, payload.get("content") or "")
        followup["flags"] = int(payload.get("flags") or 0)
        followup["webhook_id"] = request.match_info["application"]
        return answer(followup)

    # -------------------------------------------------------------- helpers
    def _store(self, data: dict[str, Any]) -> dict[str, Any]:
        self.messages.setdefault(int(data["channel_id"]), []).append(data)
        return data

    def _messages_of(self, request: web.Request) -> list[dict[str, Any]]:
        return self.messages.get(int(request.match_info["channel"]), [])

    def _find(self, request: web.Request) -> dict[str, Any] | None:
        wanted = request.match_info["message"]
        return next((m for m in self._messages_of(request) if m["id"] == wanted), None)


# ------------------------------------------------------------------ answers
def too_many(limit: Limit, *, bucket: str) -> web.Response:
    """Discord's 429: the global limit, or a route's bucket (``X-RateLimit-Scope: user``)."""
    body = {
        "message": "You are being rate limited.",
        "retry_after": limit.retry_after,
        "global": limit.is_global,
    }
    headers = {"Retry-After": str(math.ceil(limit.retry_after))}
    if limit.is_global:
        headers.update({"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"})
    else:
        headers.update(bucket_headers(bucket, remaining=0, reset_after=limit.retry_after))
        headers["X-RateLimit-Scope"] = "user"
    return answer(body, status=429, headers=headers)


def bucket_headers(path: str, *, remaining: int, reset_after: float = 1.0) -> dict[str, str]:
    """The ``X-RateLimit-*`` headers Discord sends with every answer of a route."""
    route = re.sub(r"\d{15,}", "{id}", path)  # a bucket is per route; the channel is a major parameter
    return {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": f"{abs(hash(route)):x}",
    }


def answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON as Discord sends it: ``Content-Type: application/json`` exactly (discord.py reads no other)."""
    headers = {**(headers or {}), "Content-Type": "application/json"}
    return web.Response(status=status, body=json.dumps(data).encode(), headers=headers)


def error(status: int, code: int, text: str) -> web.Response:
    return answer({"message": text, "code": code}, status=status)


def unknown_message() -> web.Response:
    return error(404, 10008, "Unknown Message")


# ------------------------------------------------------------------ objects
def user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name.lower(),
        "global_name": name,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


def member(person: dict[str, Any], roles: list[str]) -> dict[str, Any]:
    return {
        "user": person,
        "nick": None,
        "roles": roles,
        "joined_at": now_iso(),
        "deaf": False,
        "mute": False,
        "flags": 0,
    }


def role(role_id: int, name: str, permissions: int, position: int) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": name,
        "permissions": str(permissions),
        "position": position,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def text_channel(channel_id: int, guild_id: int, name: str) -> dict[str, Any]:
    return {
        "id": str(channel_id),
        "guild_id": str(guild_id),
        "type": 0,
        "name": name,
        "position": 0,
        "permission_overwrites": [],
        "parent_id": None,
        "nsfw": False,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
    }


def thread_channel(
    thread_id: int, guild_id: int, parent_id: int, owner: dict[str, Any], payload: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": str(thread_id),
        "guild_id": str(guild_id),
        "parent_id": str(parent_id),
        "owner_id": owner["id"],
        "name": payload.get("name", ""),
        "type": 11,
        "last_message_id": None,
        "message_count": 0,
        "member_count": 1,
        "rate_limit_per_user": payload.get("rate_limit_per_user") or 0,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": payload.get("auto_archive_duration", 1440),
            "archive_timestamp": now_iso(),
            "locked": False,
        },
    }


def message(message_id: int, channel_id: int, author: dict[str, Any], content: str) -> dict[str, Any]:
    """A message as the REST API gives it (no ``guild_id``: discord.py takes the server from the channel)."""
    return {
        "id": str(message_id),
        "channel_id": str(channel_id),
        "author": author,
        "content": content,
        "timestamp": now_iso(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        "flags": 0,
        "components": [],
    }
