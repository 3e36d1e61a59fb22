"""The transcript: one line per message, names kept, and which node holds which message."""

from __future__ import annotations

from integrations.discord.transcript import ChatLine, TimelineIndex, clean_name, message_line, window_text


def test_a_line_keeps_the_display_name() -> None:
    assert message_line("Alice", "hello there") == "Alice: hello there\n"
    assert message_line("Bob", "two\r\nlines ") == "Bob: two\nlines\n"


def test_names_fit_on_one_line() -> None:
    assert clean_name("  Dr.\nWho: ") == "Dr. Who"
    assert clean_name(" \n ") == "someone"


def test_empty_messages_say_nothing() -> None:
    assert message_line("Alice", "") is None
    assert message_line("Alice", "   \n ") is None


def test_attachments_and_embeds_become_markers() -> None:
    assert message_line("Alice", "", ["cat.png"]) == "Alice: [attachment: cat.png]\n"
    assert (
        message_line("Alice", "look", ["a.pdf", "b.txt"])
        == "Alice: look [attachment: a.pdf] [attachment: b.txt]\n"
    )
    assert message_line("Bot", "", embeds=["Weather"]) == "Bot: [embed: Weather]\n"
    assert message_line("Bot", "", embeds=[""]) == "Bot: [embed]\n"


def test_window_keeps_the_last_lines() -> None:
    lines = [f"A: {i}\n" for i in range(10)]
    assert window_text(lines, 3) == "A: 7\nA: 8\nA: 9\n"
    assert window_text(["", "A: x\n"], 5) == "A: x\n"
    assert window_text(lines, 0) == ""


def test_index_finds_the_latest_line_before_a_message() -> None:
    index = TimelineIndex()
    index.add(1, 100, "n100")
    index.add(1, 300, "n300")
    index.add(2, 200, "t200")  # another timeline (a thread)
    assert index.latest_before(1, 250) == "n100"
    assert index.latest_before(1, 301) == "n300"
    assert index.latest_before(1, 100) is None
    assert index.latest_before(2, 999) == "t200"
    assert index.latest(1) == "n300" and index.latest(3) is None
    assert index.node_for(300) == "n300" and len(index) == 3


def test_index_rebuilds_from_node_meta() -> None:
    line = ChatLine(123, 7, "Alice", 42, "Alice: hi\n")
    metas = [
        ("n1", line.meta(guild_id=1, channel_id=7)),
        ("root", {}),
        ("other", {"discord": {"guild": "1"}}),
    ]
    index = TimelineIndex.from_metas(metas)
    assert index.node_for(123) == "n1" and len(index) == 1
    assert line.meta(1, 7)["discord"]["message"] == "123"  # ids as strings: safe in JSON for the web UI
