"""The bot with real components: the tiny model, the daemon as the hub, and memory."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ambient.app import App
from ambient.daemon import Daemon
from ambient.errors import AmbientError
from ambient.tree import Status
from integrations.discord.bot import AmbientBot
from integrations.discord.options import DiscordOptions
from tests.fakes import FakeSampler
from tests.integrations.discord.conftest import World, make_config, make_world
from tests.integrations.discord.harness import OfflineDiscord, intents


@pytest.fixture
async def tiny_world(tmp_path: Path, tiny_model_path: Path) -> AsyncIterator[World]:
    config = make_config(
        tmp_path, model__path=str(tiny_model_path), model__device="cpu", sampling__max_tokens=8
    )
    app = App(config)
    world = await make_world(app)
    yield world
    await world.discord.stop()
    app.close()


async def test_tiny_model_thread_continuations_and_pick(tiny_world: World) -> None:
    world = tiny_world
    general = world.discord.channel("general")
    await world.discord.say("The river runs past the old mill.", general, "Alice")
    await world.discord.say("And under the stone bridge.", general, "Bob")
    await world.discord.say("!continue 3 0.9", general, "Carol")
    offers = world.offers()
    assert len(offers) == 3
    thread = world.discord.thread(offers[0].channel_id)
    nodes = [world.node(s) for s in offers]
    assert all(n.author.is_model and n.status == Status.OFFERED for n in nodes)
    assert all(s.content.startswith(f"**{i}.** ") for i, s in enumerate(offers, 1))
    interaction = await world.discord.click(offers[1], "pick", "Alice")
    assert "Picked" in (interaction.replies[-1].content or "")
    assert world.node(offers[1]).status == Status.PICKED
    assert world.discord.sent[-1].channel_id == thread.id


async def test_through_the_daemon(tmp_path: Path) -> None:
    config = make_config(tmp_path, server__port=0, server__debounce_ms=0)
    app = App(config, sampler=FakeSampler())
    async with Daemon(config, app) as daemon:
        subscriber = daemon.subscribe()
        bot = AmbientBot(daemon, DiscordOptions(guilds=(0,)), intents=intents())
        offline = OfflineDiscord(bot)
        await offline.start()
        world = World(app, daemon, bot, offline)  # type: ignore[arg-type]
        world.allow()
        general = offline.channel("general")
        await offline.say("a daemon and a bot walk into a thread", general, "Alice")
        interaction = await offline.slash(general, "Bob", n=2)
        assert "2 continuations" in (interaction.replies[-1].content or "")
        picked = world.offers()[0]
        await offline.click(picked, "pick", "Bob")
        assert world.node(picked).status == Status.PICKED
        kinds = []
        while not subscriber.queue.empty():
            message = subscriber.queue.get_nowait()
            if message is not None:
                kinds.append(json.loads(message)["type"])
        assert "offer_done" in kinds  # the web UI saw the Discord offer stream by
        await _two_people_at_once(world)
        await offline.stop()
    app.close()


async def _two_people_at_once(world: World) -> None:
    """Two requests in one thread: both are honoured (neither cancels the other)."""
    thread = world.discord.thread(world.offers()[0].channel_id)
    world.sampler.delay = 0.01
    before = len(world.offers())
    payloads = [
        world.discord._payload(2, thread, who, {"id": "1", "name": "continue", "type": 1, "options": []})
        for who in ("Alice", "Carol")
    ]
    tasks_before = asyncio.all_tasks()
    interactions = [world.discord.start_dispatch(p) for p in payloads]
    await asyncio.sleep(0)
    await asyncio.gather(*(asyncio.all_tasks() - tasks_before - {asyncio.current_task()}))
    await world.bot.hub.idle()
    assert all("3 continuations" in (i.replies[-1].content or "") for i in interactions)
    assert len(world.offers()) == before + 6


async def test_everything_said_and_offered_is_remembered_by_meaning(tmp_path: Path) -> None:
    config = make_config(tmp_path, memory__enabled=True)
    app = App(config, sampler=FakeSampler())
    try:
        memory = app.memory
    except (ImportError, AmbientError) as exc:
        pytest.fail(f"memory is not available here: {exc}")
    assert memory is not None, f"memory is not available here: {app.memory_warning}"
    world = await make_world(app)
    try:
        world.allow(listen_channels=("general",), channels=("general",))
        general = world.discord.channel("general")
        await world.discord.say("The lighthouse keeper found a letter in a bottle.", general, "Alice")
        await world.discord.say("We should bake bread for the harvest festival.", general, "Bob")
        await world.discord.say("!continue 2", general, "Carol")
        await world.bot.hub.idle()  # the bot asked for indexing after storing: nothing else did
        found = memory.search("a message washed ashore in a glass bottle", k=3)
        assert found and "lighthouse" in found[0].text
        offered = {world.node(s).id for s in world.offers()}
        indexed = {f.node_id for f in memory.search("b0w0 b0w1 b0w2", k=10)}
        assert offered & indexed  # the continuations are remembered too
    finally:
        await world.discord.stop()
        app.close()
