"""Fixtures for the Discord integration: a real App over a temporary store, a small Hub, dpytest.

``world`` is one fake server (channels "general" and "random"; members Alice,
Bob and Carol) with the bot in it, sampling with the deterministic FakeSampler.
``allow()`` sets the bot's options with the server's real ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ambient.app import App
from ambient.config import Config, load_config
from ambient.store import TreeStore
from ambient.tree import Node
from integrations.discord.bot import AmbientBot
from integrations.discord.options import DiscordOptions
from tests.fakes import FakeSampler
from tests.hub import TestHub
from tests.integrations.discord.harness import OfflineDiscord, Sent, intents


def make_config(home: Path, **changes: Any) -> Config:
    config = load_config(env={"AMBIENT_HOME": str(home)})
    defaults = {"memory__enabled": False, "sampling__n": 3, "sampling__max_tokens": 5}
    return config.replace(**{**defaults, **changes})


@dataclasses.dataclass
class World:
    app: App
    hub: TestHub
    bot: AmbientBot
    discord: OfflineDiscord

    @property
    def store(self) -> TreeStore:
        return self.app.store

    @property
    def sampler(self) -> FakeSampler:
        sampler = self.app.sampler
        assert isinstance(sampler, FakeSampler)
        return sampler

    def allow(self, **options: Any) -> DiscordOptions:
        """Set the bot's options; channel names are turned into ids."""
        for key in ("channels", "listen_channels"):
            if key in options:
                options[key] = tuple(self.discord.channel(name).id for name in options[key])
        self.bot.options = DiscordOptions(guilds=(self.discord.guild.id,), **options)
        self.bot.options.check()
        return self.bot.options

    def offers(self) -> list[Sent]:
        """Messages the bot posted with buttons (the continuations)."""
        return [s for s in self.discord.sent if s.custom_ids]

    def node(self, sent: Sent) -> Node:
        node_id = sent.custom_ids[0].rsplit(":", 1)[1]
        return self.store.get_node(node_id)


async def make_world(app: App) -> World:
    hub = TestHub(app)
    bot = AmbientBot(hub, DiscordOptions(guilds=(0,)), intents=intents())
    offline = OfflineDiscord(bot)
    await offline.start()
    world = World(app, hub, bot, offline)
    world.allow()
    return world


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    app = App(make_config(tmp_path), sampler=FakeSampler())
    yield app
    app.close()


@pytest.fixture
async def world(app: App) -> AsyncIterator[World]:
    world = await make_world(app)
    yield world
    await world.discord.stop()
