"""Discord's limits, as pure functions: message length, labels, permissions, rate limits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MESSAGE_LIMIT = 2000  # characters per message
THREAD_NAME_LIMIT = 100
CONTINUED = "…(continued)"
TRUNCATED = "…(truncated)"
MAX_PARTS = 5  # a continuation longer than this many messages is truncated (with a marker)

# Permission attribute -> the name Discord shows in the server settings.
PERMISSION_NAMES = {
    "view_channel": "View Channel",
    "read_message_history": "Read Message History",
    "send_messages": "Send Messages",
    "send_messages_in_threads": "Send Messages in Threads",
    "create_public_threads": "Create Public Threads",
}


def discord_len(text: str) -> int:
    """Length as Discord counts it at most (UTF-16 code units; never less than ``len``)."""
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int, marker: str = TRUNCATED) -> str:
    """``text`` if it fits in ``limit``, else its start and a visible ``marker``."""
    if discord_len(text) <= limit:
        return text
    room = limit - discord_len(marker)
    return _prefix_within(text, room).rstrip() + marker


def split_message(text: str, limit: int = MESSAGE_LIMIT, marker: str = CONTINUED) -> list[str]:
    """Split ``text`` into messages of at most ``limit`` characters.

    Every part but the last ends with ``marker`` on its own line. Cuts fall on
    a line break, else a space, else anywhere. Joining the parts without their
    markers gives back ``text``. Empty text gives no parts.
    """
    suffix = "\n" + marker
    room = limit - discord_len(suffix)
    if room < 1:
        raise ValueError(f"limit {limit} leaves no room next to the marker")
    parts: list[str] = []
    rest = text
    while discord_len(rest) > limit:
        head = _prefix_within(rest, room)
        cut = _best_cut(head)
        parts.append(rest[:cut] + suffix)
        rest = rest[cut:]
    if rest:
        parts.append(rest)
    return parts


def cap_parts(parts: list[str], most: int = MAX_PARTS, marker: str = TRUNCATED) -> list[str]:
    """At most ``most`` parts; when some are dropped, the last kept one says so."""
    if len(parts) <= most:
        return parts
    kept = parts[:most]
    last = kept[-1]
    if last.endswith(CONTINUED):
        last = last[: -len(CONTINUED)]
    kept[-1] = last + marker
    return kept


def _prefix_within(text: str, room: int) -> str:
    """The longest prefix of ``text`` whose Discord length is at most ``room``."""
    if discord_len(text) <= room:
        return text
    used = 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > room:
            return text[:i]
    return text


def _best_cut(head: str) -> int:
    """Where to cut a part that may hold ``head``: after a line break, else after a space."""
    for sep in ("\n", " "):
        at = head.rfind(sep)
        if at >= len(head) // 2:
            return at + 1
    return max(len(head), 1)


def missing_permissions(granted: Any, needed: Iterable[str]) -> list[str]:
    """The Discord names of the permissions in ``needed`` that ``granted`` lacks.

    ``granted`` is a :class:`discord.Permissions` (anything with those boolean attributes).
    """
    if getattr(granted, "administrator", False):
        return []
    return [PERMISSION_NAMES.get(name, name) for name in needed if not getattr(granted, name, False)]


def missing_permission_text(missing: list[str], where: str) -> str:
    names = ", ".join(f"'{m}'" for m in missing)
    plural = "permissions" if len(missing) > 1 else "permission"
    return f"I can't do that in {where}: I am missing the {names} {plural}. Ask a server admin to grant it."


def retry_after(exc: Exception, default: float = 1.0, most: float = 30.0) -> float | None:
    """Seconds to wait before retrying after a rate limit (HTTP 429); None for other errors."""
    if getattr(exc, "status", None) != 429:
        return None
    value: Any = getattr(exc, "retry_after", None)
    if value is None:
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        value = headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else default
    except (TypeError, ValueError):
        seconds = default
    return min(max(seconds, 0.0), most)
