"""Discord's limits: 2,000-character messages with a visible marker, permissions, rate limits."""

from __future__ import annotations

import discord
import pytest

from integrations.discord.limits import (
    CONTINUED,
    TRUNCATED,
    cap_parts,
    discord_len,
    missing_permission_text,
    missing_permissions,
    retry_after,
    split_message,
    truncate,
)
from tests.integrations.discord.harness import http_error


def _rejoin(parts: list[str]) -> str:
    return "".join(p.removesuffix("\n" + CONTINUED) for p in parts)


def test_short_text_is_one_message() -> None:
    assert split_message("hello") == ["hello"]
    assert split_message("") == []
    assert split_message("x" * 2000) == ["x" * 2000]


def test_long_text_splits_on_lines_with_a_marker() -> None:
    text = "".join(f"line {i}: " + "word " * 15 + "\n" for i in range(60))  # about 5,000 characters
    parts = split_message(text)
    assert len(parts) == 3
    assert all(discord_len(p) <= 2000 for p in parts)
    assert all(p.endswith("\n" + CONTINUED) for p in parts[:-1])
    assert not parts[-1].endswith(CONTINUED)
    assert all(p.endswith("\n\n" + CONTINUED) for p in parts[:-1])  # cut after a line break
    assert _rejoin(parts) == text


def test_text_without_breaks_is_cut_anywhere() -> None:
    text = "x" * 4500
    parts = split_message(text)
    assert all(discord_len(p) <= 2000 for p in parts) and _rejoin(parts) == text


def test_wide_characters_count_as_discord_counts_them() -> None:
    text = "😀" * 1500  # 3,000 UTF-16 units
    parts = split_message(text)
    assert len(parts) == 2 and all(discord_len(p) <= 2000 for p in parts) and _rejoin(parts) == text


def test_too_many_parts_are_truncated_visibly() -> None:
    parts = cap_parts(split_message("word " * 3000), most=2)
    assert len(parts) == 2 and parts[-1].endswith(TRUNCATED) and CONTINUED not in parts[-1]


def test_truncate() -> None:
    assert truncate("short", 100) == "short"
    cut = truncate("a long thread name " * 10, 40, "…")
    assert discord_len(cut) <= 40 and cut.endswith("…")


def test_missing_permissions_use_discord_names() -> None:
    granted = discord.Permissions(view_channel=True, read_message_history=True)
    needed = ("view_channel", "read_message_history", "create_public_threads", "send_messages_in_threads")
    missing = missing_permissions(granted, needed)
    assert missing == ["Create Public Threads", "Send Messages in Threads"]
    assert missing_permissions(discord.Permissions(administrator=True), needed) == []
    text = missing_permission_text(missing[:1], "#general")
    assert "'Create Public Threads' permission" in text and "#general" in text


def test_retry_after_reads_the_rate_limit() -> None:
    assert retry_after(http_error(429, 0, "slow down", {"Retry-After": "2.5"})) == 2.5
    assert retry_after(http_error(429, 0, "slow down", {"Retry-After": "999"})) == 30.0
    assert retry_after(http_error(429, 0, "slow down")) == 1.0
    assert retry_after(http_error(500, 0, "oops")) is None
    assert retry_after(ValueError()) is None


@pytest.mark.parametrize("limit", [5, 10])
def test_limit_too_small_for_the_marker(limit: int) -> None:
    with pytest.raises(ValueError, match="no room"):
        split_message("hello world, hello", limit=limit)
