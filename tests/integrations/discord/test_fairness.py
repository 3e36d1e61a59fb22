"""Fairness: a per-member limit on pulls, one pull at a time per member, a cap per server.

A refusal never shows in the channel: slash commands and buttons are answered
ephemerally, ``!continue`` by a direct message, or where the member's DMs are
closed, by a reaction on their command.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ambient.app import App
from ambient.daemon import Daemon
from ambient.offers import Overrides
from ambient.sources import SourceEvent
from ambient.tree import Offer, OfferState, Status
from integrations.discord.bot import AmbientBot
from integrations.discord.fairness import Fairness, Limited
from integrations.discord.options import DiscordOptions
from integrations.discord.replies import DENIED, WAIT
from tests.fakes import FakeSampler
from tests.integrations.discord.conftest import World, make_config
from tests.integrations.discord.harness import OfflineDiscord, StandInInteraction, intents


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ephemeral(interaction: StandInInteraction) -> list[str]:
    assert all(r.ephemeral for r in interaction.replies)  # nothing of it in the channel
    return [r.content for r in interaction.replies if r.content]


def refusal_of(interaction: StandInInteraction) -> str:
    """The one ephemeral answer of a refused interaction (no deferral: nothing was started)."""
    (reply,) = interaction.replies
    assert reply.kind == "message" and reply.ephemeral and reply.content
    return reply.content


async def conversation(world: World) -> None:
    general = world.discord.channel("general")
    await world.discord.say("where shall the story begin?", general, "Alice")
    await world.discord.say("at the harbour, at dawn", general, "Bob")


@pytest.fixture
def clock(world: World) -> Clock:
    clock = Clock()
    world.bot.fairness.clock = clock
    return clock


# ------------------------------------------------------------------ the rules
def test_the_window_slides_and_says_when_to_come_back() -> None:
    clock = Clock()
    fairness = Fairness(clock)
    options = DiscordOptions(guilds=(1,), member_pulls=2, member_window_s=60)
    fairness.admit(options, 1, 7).release()
    clock.now += 20
    fairness.admit(options, 1, 7).release()
    clock.now += 0.5
    with pytest.raises(
        Limited, match=r"you can pull again in 40 s \(each member may start 2 pulls every 60 s"
    ):
        fairness.admit(options, 1, 7)
    fairness.admit(options, 1, 8).release()  # another member
    fairness.admit(options, 2, 7).release()  # the same member in another server
    clock.now += 39.5  # the first pull is 60 s old: it no longer counts
    fairness.admit(options, 1, 7).release()
    with pytest.raises(Limited, match="in 20 s"):
        fairness.admit(options, 1, 7)  # refused pulls were not counted: the second one is next to expire


def test_one_pull_at_a_time_per_member_and_a_cap_per_server() -> None:
    fairness = Fairness(Clock())
    options = DiscordOptions(guilds=(1,), server_concurrent_pulls=2)
    first = fairness.admit(options, 1, 7)
    with pytest.raises(Limited, match="your last pull is still running"):
        fairness.admit(options, 1, 7)
    with fairness.admit(options, 1, 8):
        assert fairness.running(1) == 2
        with pytest.raises(Limited, match="already busy with 2 pulls in this server: try again in a moment"):
            fairness.admit(options, 1, 9)
        fairness.admit(options, 2, 9).release()  # another server has its own cap
    first.release()
    first.release()  # twice is harmless
    assert fairness.running(1) == 0
    with pytest.raises(RuntimeError), fairness.admit(options, 1, 9):
        raise RuntimeError("the pull failed")
    assert fairness.running(1) == 0  # a failed pull gives its slot back


def test_no_member_limit_and_memory_that_stays_small() -> None:
    clock = Clock()
    fairness = Fairness(clock)
    unlimited = DiscordOptions(guilds=(1,), member_pulls=0)
    for _ in range(50):
        fairness.admit(unlimited, 1, 7).release()
    assert fairness._started == {}  # nothing to remember without a limit
    options = DiscordOptions(guilds=(1,), member_window_s=10)
    for member in range(100):
        fairness.admit(options, 1, member).release()
    clock.now += 10
    fairness.admit(options, 1, 1000).release()
    assert list(fairness._started) == [(1, 1000)]  # members whose pulls are all older than the window


# ------------------------------------------------------- through the bot
async def test_slash_over_the_limit_is_refused_ephemerally(world: World, clock: Clock) -> None:
    world.allow(member_pulls=2, member_window_s=60)
    await conversation(world)
    general = world.discord.channel("general")
    for _ in range(2):
        await world.discord.slash(general, "Carol", n=1)
        clock.now += 10
    posted = list(world.discord.sent)
    prompts = len(world.sampler.prompts)
    refused = await world.discord.slash(general, "Carol", n=1)
    assert (
        refusal_of(refused) == "you can pull again in 40 s (each member may start 2 pulls every 60 s here)."
    )
    assert (
        world.discord.sent == posted and len(world.sampler.prompts) == prompts
    )  # nothing posted, nothing sampled
    served = await world.discord.slash(general, "Bob", n=1)  # another member is still served
    assert "1 continuations in" in ephemeral(served)[-1] and len(world.offers()) == 3
    clock.now += 40
    again = await world.discord.slash(general, "Carol", n=1)
    assert "1 continuations in" in ephemeral(again)[-1]


async def test_buttons_that_sample_count_and_pick_does_not(world: World, clock: Clock) -> None:
    world.allow(member_pulls=1)
    await conversation(world)
    await world.discord.slash(world.discord.channel("general"), "Alice", n=2)
    first, second = world.offers()
    posted = len(world.discord.sent)
    for action in ("more", "branch"):
        refused = await world.discord.click(first, action, "Alice")
        assert refusal_of(refused).startswith("you can pull again in 60 s")
    assert len(world.discord.sent) == posted
    picked = await world.discord.click(second, "pick", "Alice")  # a pick samples nothing: not limited
    assert "Picked" in ephemeral(picked)[-1] and world.node(second).status == Status.PICKED
    more = await world.discord.click(first, "more", "Bob")
    assert "more continuations" in ephemeral(more)[-1]


async def test_prefix_over_the_limit_is_told_by_dm(world: World, clock: Clock) -> None:
    world.allow(member_pulls=1, member_window_s=30)
    await conversation(world)
    general = world.discord.channel("general")
    await world.discord.say("!continue 1", general, "Carol")
    posted = list(world.discord.sent)
    clock.now += 5
    command = await world.discord.say("!continue 1", general, "Carol")
    (dm,) = world.discord.dms_to("Carol")
    assert dm == (
        f"Your `!continue` in {general.mention}: you can pull again in 25 s "
        "(each member may start 1 pulls every 30 s here)."
    )
    assert world.discord.sent == posted  # nothing in the channel or the thread
    assert world.discord.reactions_on(command) == []  # the DM got through: no reaction
    await world.discord.say("!continue 1", general, "Alice")  # another member is still served
    assert len(world.offers()) == 2


async def test_dms_closed_the_refusal_is_a_reaction(world: World, clock: Clock) -> None:
    world.allow(member_pulls=1)
    await conversation(world)
    general = world.discord.channel("general")
    world.discord.close_dms("Carol")
    await world.discord.say("!continue 1", general, "Carol")
    posted = list(world.discord.sent)
    command = await world.discord.say("!continue 1", general, "Carol")
    assert world.discord.reactions_on(command) == [WAIT]
    assert world.discord.dms == [] and world.discord.sent == posted
    world.allow(role="Thinkers")  # no role: refused, with another reaction
    denied = await world.discord.say("!continue 1", general, "Carol")
    assert world.discord.reactions_on(denied) == [DENIED] and world.discord.sent == posted


async def test_pulls_over_the_servers_cap_are_refused(world: World) -> None:
    world.allow(server_concurrent_pulls=2)
    await conversation(world)
    general = world.discord.channel("general")
    world.sampler.delay = 0.01  # the first pulls are still sampling when the last one arrives
    interactions = await world.discord.at_once(
        [world.discord.slash_payload(general, who, n=1) for who in ("Alice", "Bob", "Carol")]
    )
    served = [i for i in interactions if i.replies[0].kind == "defer"]
    (refused,) = [i for i in interactions if i.replies[0].kind == "message"]
    assert len(served) == 2 and all("1 continuations in" in ephemeral(i)[-1] for i in served)
    assert refusal_of(refused).startswith("ambient is already busy with 2 pulls in this server")
    assert len(world.offers()) == 2 and len(world.sampler.prompts) == 2
    assert world.bot.fairness.running(world.discord.guild.id) == 0  # done: the slots are free again
    later = await world.discord.slash(general, "Carol", n=1)
    assert "1 continuations in" in ephemeral(later)[-1]


async def test_one_member_one_pull_at_a_time(world: World) -> None:
    await conversation(world)
    general = world.discord.channel("general")
    world.sampler.delay = 0.01
    first, second = await world.discord.at_once(
        [
            world.discord.slash_payload(general, "Alice", n=1),
            world.discord.slash_payload(general, "Alice", n=1),
        ]
    )
    assert "1 continuations in" in ephemeral(first)[-1]
    assert (
        refusal_of(second) == "your last pull is still running: wait for its continuations, then pull again."
    )
    assert len(world.offers()) == 1


# ------------------------------------------------------- beside the notes
async def test_a_flood_of_pulls_leaves_the_daemon_to_the_notes(tmp_path: Path) -> None:
    """Six members pull at once: at most the cap reaches the daemon's queue; a note's offer still comes."""
    config = make_config(tmp_path, server__port=0, server__debounce_ms=0)
    app = App(config, sampler=FakeSampler(delay=0.01))
    async with Daemon(config, app) as daemon:
        in_daemon = Gauge(daemon)
        bot = AmbientBot(daemon, DiscordOptions(guilds=(0,)), intents=intents())
        offline = OfflineDiscord(bot)
        members = ("Alice", "Bob", "Carol", "Dan", "Erin", "Frank")
        await offline.start(members=members)
        world = World(app, daemon, bot, offline)  # type: ignore[arg-type]
        world.allow(server_concurrent_pulls=2)
        general = offline.channel("general")
        await offline.say("the tide is coming in", general, "Alice")
        _, root = await daemon.run_blocking(app.store.create_tree, "A note about tides")
        note = SourceEvent("notes", "tides.md", root.id, overrides=Overrides(n=1), debounce=False)
        flood = asyncio.ensure_future(
            offline.at_once([offline.slash_payload(general, m, n=1) for m in members])
        )
        await asyncio.sleep(0)  # the six arrive before the note's save
        await daemon.submit(note)
        interactions = await flood
        await daemon.idle()
        busy = [i for i in interactions if i.replies[0].kind == "message"]
        assert len(busy) == 4 and all(
            "already busy with 2 pulls" in (i.replies[0].content or "") for i in busy
        )
        assert in_daemon.most == 2  # never more than the cap of Discord pulls queued or sampling
        assert [o.state for o in app.store.offers_at(root.id)] == [OfferState.DONE]  # the note was offered
        assert len(world.offers()) == 2
        await offline.stop()
    app.close()


class Gauge:
    """Counts the Discord pulls inside the daemon (queued or sampling) through its ``offer_now``."""

    def __init__(self, daemon: Daemon) -> None:
        self.now = self.most = 0
        self._offer_now = daemon.offer_now
        daemon.offer_now = self.offer_now  # type: ignore[method-assign]

    async def offer_now(self, event: SourceEvent) -> Offer:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await self._offer_now(event)
        finally:
            self.now -= 1
