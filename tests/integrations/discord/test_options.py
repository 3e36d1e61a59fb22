"""Options: parsing, checks that name the key and the fix, and who may use the bot where."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ambient.config import load_config
from ambient.errors import ConfigError
from integrations.discord.options import DiscordOptions


def test_token_comes_from_the_environment_and_is_never_shown(tmp_path: Path) -> None:
    config = load_config(env={"AMBIENT_HOME": str(tmp_path), "AMBIENT_DISCORD_TOKEN": "s3cret"})
    options = DiscordOptions.from_config(config)
    assert options.token == "s3cret"
    assert "s3cret" not in repr(options)


def test_table_from_toml(tmp_path: Path) -> None:
    (tmp_path / "ambient.toml").write_text(
        "[sources.discord]\nguilds = [1, 2]\nchannels = [10]\nlisten_channels = [10]\n"
        'role = "Thinkers"\nhistory_window = 12\nn = 3\ntemperature = 0.7\n'
    )
    options = DiscordOptions.from_config(load_config(env={"AMBIENT_HOME": str(tmp_path)}))
    assert options.guilds == (1, 2)
    assert options.channels == options.listen_channels == (10,)
    assert (options.role, options.history_window, options.n, options.temperature) == ("Thinkers", 12, 3, 0.7)
    options.check()


def test_fairness_options_and_their_defaults() -> None:
    defaults = DiscordOptions(guilds=(1,))
    assert (defaults.member_pulls, defaults.member_window_s, defaults.server_concurrent_pulls) == (4, 60, 2)
    options = DiscordOptions.from_table(
        {"guilds": [1], "member_pulls": 10, "member_window_s": 300, "server_concurrent_pulls": 4}
    )
    assert (options.member_pulls, options.member_window_s, options.server_concurrent_pulls) == (10, 300, 4)
    options.check()
    with pytest.raises(ConfigError, match="member_pulls"):
        DiscordOptions.from_table({"guilds": [1], "member_pulls": "many"})


def test_ids_as_comma_separated_strings() -> None:
    options = DiscordOptions.from_table({"guilds": "1,2", "channels": "3"})
    assert options.guilds == (1, 2) and options.channels == (3,)


def test_unknown_key_is_rejected_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'sources.discord.chanels'.*channels"):
        DiscordOptions.from_table({"chanels": [1]})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (DiscordOptions(), "sources.discord.guilds is empty"),
        (DiscordOptions(guilds=(1,), history_window=0), "history_window must be 1..200"),
        (DiscordOptions(guilds=(1,), max_n=11), "max_n must be 1..10"),
        (DiscordOptions(guilds=(1,), n=7), r"n must be 0 \(sampling.n\) or 1..6, got 7"),
        (
            DiscordOptions(guilds=(1,), thread_archive_minutes=5),
            r"thread_archive_minutes must be 60, 1440, 4320 or 10080 \(minutes, as Discord allows\), got 5",
        ),
        (DiscordOptions(guilds=(1,), prefix=" "), 'prefix must be a prefix such as "!", got'),
        (DiscordOptions(guilds=(1,), temperature=-1.0), "temperature must be 0..5, got -1.0"),
        (DiscordOptions(guilds=(1,), max_tokens=0), "max_tokens must be 1..4096, got 0"),
        (DiscordOptions(guilds=(-5,)), r"guilds must be a list whose every item is 0..\d+ \(Discord ids\)"),
        (DiscordOptions(guilds=(1,), channels=(10,), listen_channels=(11,)), "11, which is not in"),
        (DiscordOptions(guilds=(1,), member_pulls=-1), r"member_pulls must be 0 \(no limit\) or 1..1000"),
        (DiscordOptions(guilds=(1,), member_window_s=0), "member_window_s must be 1..86400"),
        (DiscordOptions(guilds=(1,), server_concurrent_pulls=0), "server_concurrent_pulls must be 1..16"),
    ],
)
def test_check_names_the_key(options: DiscordOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        options.check()


@pytest.mark.parametrize(
    ("toml", "line"),
    [
        (
            "history_window = 0",
            "sources.discord.history_window must be 1..200, got 0: fix it in ambient.toml",
        ),
        (
            "member_pulls = -1",
            "sources.discord.member_pulls must be 0 (no limit) or 1..1000, got -1: fix it in ambient.toml",
        ),
        (
            "max_n = 3\nn = 4",
            "sources.discord.n must be 0 (sampling.n) or 1..3, got 4: fix it in ambient.toml",
        ),
    ],
)
def test_a_bad_table_is_refused_as_it_is_read(tmp_path: Path, toml: str, line: str) -> None:
    """check()'s rules, applied as the table is read: one line naming key, value and what is allowed."""
    (tmp_path / "ambient.toml").write_text(f"[sources.discord]\nguilds = [1]\n{toml}\n")
    config = load_config(env={"AMBIENT_HOME": str(tmp_path)})
    with pytest.raises(ConfigError) as caught:
        DiscordOptions.from_config(config)
    assert str(caught.value) == line


def test_edge_values_are_accepted() -> None:
    table = {"guilds": [1], "n": 10, "max_n": 10, "history_window": 200, "member_pulls": 0}
    options = DiscordOptions.from_table({**table, "member_window_s": 86_400, "thread_archive_minutes": 60})
    options.check()
    assert (options.n, options.member_pulls, options.thread_archive_minutes) == (10, 0, 60)


def test_allowlists() -> None:
    options = DiscordOptions(guilds=(1,), channels=(10,), listen_channels=(10,))
    assert options.allows_channel(1, 10)
    assert options.allows_channel(1, 99, parent_id=10)  # a thread of an allowed channel
    assert not options.allows_channel(1, 11)
    assert not options.allows_channel(2, 10)  # another server
    assert not options.allows_channel(None, 10)  # a direct message
    assert options.listens(1, 10) and options.listens(1, 99, parent_id=10)
    assert not options.listens(1, 11)


def test_no_channel_list_means_every_channel_of_the_servers() -> None:
    options = DiscordOptions(guilds=(1,))
    assert options.allows_channel(1, 12345)
    assert not options.listens(1, 12345)  # listening is opt-in


def test_role_by_name_or_id() -> None:
    assert DiscordOptions(guilds=(1,)).allows_roles([])
    options = DiscordOptions(guilds=(1,), role="Thinkers")
    assert options.allows_roles([(5, "thinkers")])
    assert not options.allows_roles([(5, "Lurkers")])
    assert DiscordOptions(guilds=(1,), role="5").allows_roles([(5, "Whatever")])


def test_refusal_says_why() -> None:
    options = DiscordOptions(guilds=(1,), channels=(10,), role="Thinkers")
    assert options.refusal(1, 10, None, [(5, "Thinkers")]) is None
    assert "direct messages" in (options.refusal(None, 10, None, []) or "")
    assert "not enabled in this channel" in (options.refusal(1, 11, None, []) or "")
    assert "role 'Thinkers' to use ambient here: ask a moderator for it" in (
        options.refusal(1, 10, None, []) or ""
    )


def test_send_retries_of_earlier_versions_still_loads_and_the_log_says_to_delete_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rate limits are discord.py's now: an old table keeps loading, and the log names the key to delete."""
    (tmp_path / "ambient.toml").write_text("[sources.discord]\nguilds = [1]\nsend_retries = 3\n")
    options = DiscordOptions.from_config(load_config(env={"AMBIENT_HOME": str(tmp_path)}))
    with caplog.at_level(logging.WARNING, logger="integrations.discord.options"):
        options.check()
        DiscordOptions(guilds=(1,)).check()  # without the key: nothing to say
    assert [r.getMessage() for r in caplog.records] == [
        "sources.discord.send_retries is no longer used: discord.py waits out Discord's rate limits itself "
        "(up to 30 s; a longer one is told to the person who asked): delete it from ambient.toml"
    ]
