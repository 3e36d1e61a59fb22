"""Rate limits through discord.py's own HTTP client, against a fake Discord on loopback (``fake_api.py``).

The bot logs in over HTTP, gets its server from discord.py's own GUILD_CREATE
parser, and answers ``/continue`` as in production: a real
:class:`discord.Interaction`, its acknowledgement and followups, the thread,
the history and the posts all go through ``discord.http.HTTPClient`` to
127.0.0.1. The fake answers 429s with Discord's headers and body; what is
measured is what discord.py did with them (when each try arrived) and what the
bot did after (what it told the person, what it left in the thread).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import discord
import discord.http
import pytest

from ambient.app import App
from integrations.discord import posting
from integrations.discord.bot import AmbientBot
from integrations.discord.options import DiscordOptions
from tests.hub import TestHub
from tests.integrations.discord.fake_api import FakeDiscord, Seen, Told

WAIT_S = 0.3  # a short limit, which discord.py waits out


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as api:
        monkeypatch.setattr(discord.http.Route, "BASE", api.base)  # every route of discord.py, webhooks too
        yield api


@pytest.fixture
async def bot(app: App, fake: FakeDiscord) -> AsyncIterator[AmbientBot]:
    bot = AmbientBot(TestHub(app), DiscordOptions(guilds=(fake.guild_id,)))
    await bot.login("fake-token")  # GET /users/@me and /oauth2/applications/@me, through HTTPClient
    bot._connection.parse_guild_create(fake.guild_payload())  # the server, as the gateway would give it
    yield bot
    await bot.close()


async def slash(bot: AmbientBot, fake: FakeDiscord, channel_id: int, person: str) -> Told:
    """``/continue`` typed by ``person``; returns the last thing the person was told."""
    interaction = discord.Interaction(data=fake.slash_payload(channel_id, person), state=bot._connection)
    await bot.on_slash(interaction, None, None)
    return fake.told[-1]


def statuses(seen: list[Seen]) -> list[int]:
    return [s.status for s in seen]


def gaps(seen: list[Seen]) -> list[float]:
    return [later.at - earlier.at for earlier, later in itertools.pairwise(seen)]


async def test_a_pull_goes_through_after_429s_waited_as_discord_said(
    bot: AmbientBot, fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    general = fake.channel_id("general")
    said = fake.say(general, "Alice", "The tide is coming in.")
    in_thread = rf"/channels/{said['id']}/messages"  # the thread opened on a message has the message's id
    fake.rate_limit("POST", in_thread, times=2, retry_after=WAIT_S)
    told = await slash(bot, fake, general, "Bob")
    assert told == Told(f"3 continuations in <#{said['id']}>: pick one with its button.", True, "followup")
    tries = fake.requests("POST", in_thread)
    assert statuses(tries) == [429, 429, 200, 200, 200]  # two 429s, then the three continuations
    waited = gaps(tries)[:2]
    # discord.py slept the body's retry_after (0.3 s), not the whole seconds of the Retry-After header (1)
    assert all(WAIT_S <= gap < 1.0 for gap in waited), waited
    posted = fake.in_channel(int(said["id"]))
    assert [m["content"].split(" ", 1)[0] for m in posted] == ["**1.**", "**2.**", "**3.**"]
    assert all(m["components"] for m in posted)  # each with its buttons
    warnings = [r for r in caplog.records if r.name == "discord.http" and "rate limited" in r.getMessage()]
    assert len(warnings) == 2  # discord.py's own retry, once per 429
    assert not [r for r in caplog.records if r.name.startswith("integrations.discord")]  # no second layer


async def test_a_limit_that_lasts_is_told_at_once_and_leaves_nothing_half_posted(
    bot: AmbientBot, fake: FakeDiscord
) -> None:
    assert bot.http.max_ratelimit_timeout == posting.LONGEST_WAIT_S == 30.0
    general = fake.channel_id("general")
    said = fake.say(general, "Alice", "The tide is coming in.")
    in_thread = rf"/channels/{said['id']}/messages"
    fake.rate_limit("POST", in_thread, retry_after=36.4, after=1)  # the second continuation: over 30 s
    started = time.perf_counter()
    told = await slash(bot, fake, general, "Bob")
    took = time.perf_counter() - started
    assert told == Told("Discord is rate-limiting this bot for 37 s: try again then.", True, "followup")
    assert took < 5.0, took  # told at once, not after 36 s
    assert statuses(fake.requests("POST", in_thread)) == [200, 429]  # the 429 was tried again by no one
    assert statuses(fake.requests("DELETE", in_thread + r"/\d+")) == [204]  # the first one, taken back
    assert fake.in_channel(int(said["id"])) == []


async def test_when_discord_py_gives_up_after_five_429s_the_bot_tells_and_tries_no_more(
    bot: AmbientBot, fake: FakeDiscord
) -> None:
    general = fake.channel_id("general")
    said = fake.say(general, "Alice", "The tide is coming in.")
    in_thread = rf"/channels/{said['id']}/messages"
    fake.rate_limit("POST", in_thread, times=6, retry_after=0.05)
    told = await slash(bot, fake, general, "Bob")
    assert statuses(fake.requests("POST", in_thread)) == [429] * 5  # discord.py's five tries, none after
    assert told == Told("Discord is rate-limiting this bot for 1 s: try again then.", True, "followup")
    assert fake.in_channel(int(said["id"])) == []


@pytest.mark.parametrize("is_global", [False, True], ids=["route", "global"])
async def test_a_route_limit_holds_its_channel_and_the_global_limit_every_channel(
    bot: AmbientBot, fake: FakeDiscord, is_global: bool
) -> None:
    general, elsewhere = (bot.get_channel(fake.channel_id(name)) for name in ("general", "random"))
    fake.rate_limit("POST", rf"/channels/{general.id}/messages", retry_after=0.5, is_global=is_global)
    first = asyncio.create_task(posting.post_text(general, "first"))
    await asyncio.wait_for(fake.limited.wait(), 5.0)  # discord.py has its 429 and is waiting
    await posting.post_text(elsewhere, "second")
    await first
    limited = fake.requests("POST", rf"/channels/{general.id}/messages")[0]
    second = fake.requests("POST", rf"/channels/{elsewhere.id}/messages")[0]
    held = second.at - limited.at >= 0.5
    assert held is is_global, second.at - limited.at
    assert [m["content"] for m in fake.in_channel(general.id)] == ["first"]


async def test_a_long_text_cut_by_a_lasting_limit_leaves_none_of_its_parts(
    bot: AmbientBot, fake: FakeDiscord
) -> None:
    general = bot.get_channel(fake.channel_id("general"))
    path = rf"/channels/{general.id}/messages"
    fake.rate_limit("POST", path, retry_after=60.0, after=2)  # the third of three parts
    with pytest.raises(discord.RateLimited) as raised:
        await posting.post_text(general, "word " * 1000)
    assert raised.value.retry_after == 60.0
    assert statuses(fake.requests("POST", path)) == [200, 200, 429]
    assert statuses(fake.requests("DELETE", path + r"/\d+")) == [204, 204]
    assert fake.in_channel(general.id) == []
