"""The chat transcript as tree nodes: one line per message, and which node holds which message.

A channel's tree holds its conversation as human nodes, one per message, each
``"DisplayName: text\\n"``. A thread is a branch: its lines hang below the node
of the message the thread was opened on (a thread opened on a message has that
message's id). A *timeline* is a channel or one thread; within one, each new
line goes below the latest line already known before it.

Pure functions and plain data: no discord.py objects here.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

META_KEY = "discord"
_SPACES = re.compile(r"\s+")


@dataclasses.dataclass(frozen=True)
class ChatLine:
    """One message, ready to become a node."""

    message_id: int
    timeline_id: int  # the channel, or the thread, it was said in
    author: str
    author_id: int
    text: str  # the node's text: "Name: content\n"

    def meta(self, guild_id: int, channel_id: int) -> dict[str, Any]:
        return {
            META_KEY: {
                "message": str(self.message_id),
                "timeline": str(self.timeline_id),
                "channel": str(channel_id),
                "guild": str(guild_id),
                "author_id": str(self.author_id),
            }
        }


def clean_name(name: str) -> str:
    """A display name that fits on one line of the transcript."""
    cleaned = _SPACES.sub(" ", name).strip().replace(":", "")
    return cleaned or "someone"


def message_line(
    author: str,
    content: str,
    attachments: Sequence[str] = (),
    embeds: Sequence[str] = (),
) -> str | None:
    """``"Name: text\\n"`` for a message; None when it says nothing (empty, or only a sticker).

    Attachments and embeds have no text of their own: they appear as
    ``[attachment: name]`` and ``[embed: title]`` so the line still says something happened.
    """
    body = content.replace("\r\n", "\n").replace("\r", "\n").strip()
    extras = [f"[attachment: {a}]" for a in attachments if a]
    extras += [f"[embed: {e}]" if e else "[embed]" for e in embeds]
    if extras:
        body = " ".join([body, *extras]) if body else " ".join(extras)
    if not body:
        return None
    return f"{clean_name(author)}: {body}\n"


def window_text(texts: Iterable[str], window: int) -> str:
    """The last ``window`` non-empty lines, joined: the chat the model continues."""
    lines = [t for t in texts if t]
    return "".join(lines[-window:]) if window > 0 else ""


def continuation_prefix(index: int) -> str:
    return f"**{index}.** "


@dataclasses.dataclass
class TimelineIndex:
    """Which node holds which Discord message, per timeline."""

    _nodes: dict[int, str] = dataclasses.field(default_factory=dict)
    _order: dict[int, list[int]] = dataclasses.field(default_factory=dict)

    def add(self, timeline_id: int, message_id: int, node_id: str) -> None:
        if message_id in self._nodes:
            return
        self._nodes[message_id] = node_id
        bisect.insort(self._order.setdefault(timeline_id, []), message_id)

    def node_for(self, message_id: int) -> str | None:
        return self._nodes.get(message_id)

    def latest_before(self, timeline_id: int, message_id: int) -> str | None:
        """The node of the latest known message of ``timeline_id`` said before ``message_id``."""
        ids = self._order.get(timeline_id, [])
        at = bisect.bisect_left(ids, message_id)
        return self._nodes[ids[at - 1]] if at else None

    def latest(self, timeline_id: int) -> str | None:
        ids = self._order.get(timeline_id, [])
        return self._nodes[ids[-1]] if ids else None

    def __len__(self) -> int:
        return len(self._nodes)

    @classmethod
    def from_metas(cls, metas: Iterable[tuple[str, dict[str, Any]]]) -> TimelineIndex:
        """Rebuild from ``(node_id, node.meta)`` pairs (after a restart)."""
        index = cls()
        for node_id, meta in metas:
            info = meta.get(META_KEY)
            if not isinstance(info, dict) or "message" not in info or "timeline" not in info:
                continue
            index.add(int(info["timeline"]), int(info["message"]), node_id)
        return index


def is_deleted(meta: dict[str, Any]) -> bool:
    info = meta.get(META_KEY)
    return isinstance(info, dict) and bool(info.get("deleted"))
