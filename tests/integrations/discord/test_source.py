"""The source contract: no token means off (in one line), setup checks options, run/unload, login errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import discord
import pytest

from ambient import places
from ambient.app import App
from ambient.config import load_config
from ambient.errors import AmbientError, ConfigError
from ambient.source_host import SourceHost
from integrations.discord.bot import AmbientBot
from integrations.discord.options import DiscordOptions
from integrations.discord.source import NO_TOKEN, DiscordSource
from tests.fakes import FakeSampler
from tests.hub import TestHub

USER = {"id": "42", "username": "ambient", "discriminator": "0", "avatar": None, "bot": True}
APP_INFO = {
    "id": "42",
    "name": "ambient",
    "icon": None,
    "description": "",
    "bot_public": False,
    "bot_require_code_grant": False,
    "owner": {"id": "7", "username": "owner", "discriminator": "0", "avatar": None},
    "verify_key": "0" * 64,
    "flags": 0,
}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[TestHub]:
    config = load_config(env={"AMBIENT_HOME": str(tmp_path)}).replace(memory__enabled=False)
    app = App(config, sampler=FakeSampler())
    yield TestHub(app)
    app.close()


def test_the_package_exposes_the_source() -> None:
    assert places.load("discord") is DiscordSource  # through its entry point
    assert DiscordSource.options_class is DiscordOptions


def test_without_a_token_it_does_not_start() -> None:
    assert DiscordSource.enabled(DiscordOptions(guilds=(1,))) == (False, NO_TOKEN)
    assert NO_TOKEN == "Discord: no token (set AMBIENT_DISCORD_TOKEN or sources.discord.token); not starting"
    assert DiscordSource.enabled(DiscordOptions(token="t", guilds=(1,))) == (True, "")


async def test_the_daemon_reports_it_in_one_line(hub: TestHub) -> None:
    host = SourceHost(hub, hub.app.config.replace(sources={"discord": {"guilds": [1]}}))
    await host._start_one("discord")
    assert host.problems["discord"] == f"off: {NO_TOKEN}"
    assert "discord" not in host.running


async def test_setup_checks_the_options(hub: TestHub) -> None:
    with pytest.raises(ConfigError, match="guilds is empty"):
        await DiscordSource(hub, DiscordOptions(token="t")).setup()
    await DiscordSource(hub, DiscordOptions(token="t", guilds=(1,))).setup()


async def test_a_rejected_token_says_what_to_do(hub: TestHub, monkeypatch: pytest.MonkeyPatch) -> None:
    async def static_login(self: Any, token: str) -> Any:
        raise discord.LoginFailure("Improper token has been passed.")

    monkeypatch.setattr(discord.http.HTTPClient, "static_login", static_login)
    source = DiscordSource(hub, DiscordOptions(token="bad", guilds=(1,)))
    await source.setup()
    with pytest.raises(AmbientError, match="rejected the bot token"):
        await source.run()
    await source.unload()
    assert source.bot is not None and source.bot.is_closed()


async def test_run_connects_registers_commands_and_unload_closes(
    hub: TestHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []

    async def static_login(self: Any, token: str) -> Any:
        return USER

    async def application_info(self: Any) -> Any:
        return APP_INFO

    async def connect(self: AmbientBot, *, reconnect: bool = True) -> None:
        assert reconnect  # discord.py reconnects by itself when the gateway drops
        self._ready.set()
        await asyncio.Event().wait()

    async def sync_commands(self: AmbientBot) -> None:
        synced.extend(self.options.guilds)

    monkeypatch.setattr(discord.http.HTTPClient, "static_login", static_login)
    monkeypatch.setattr(discord.http.HTTPClient, "application_info", application_info)
    monkeypatch.setattr(AmbientBot, "connect", connect)
    monkeypatch.setattr(AmbientBot, "sync_commands", sync_commands)
    source = DiscordSource(hub, DiscordOptions(token="t", guilds=(5, 6)))
    await source.setup()
    task = asyncio.create_task(source.run())
    for _ in range(100):
        if synced:
            break
        await asyncio.sleep(0.01)
    assert synced == [5, 6]
    assert source.status()["connected"] is True
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await source.unload()
    assert source.bot is not None and source.bot.is_closed()
    assert source.status()["connected"] is False


async def test_unload_before_run_is_fine(hub: TestHub) -> None:
    source = DiscordSource(hub, DiscordOptions(token="t", guilds=(1,)))
    await source.setup()
    await source.unload()
    assert source.status() == {"connected": False}
