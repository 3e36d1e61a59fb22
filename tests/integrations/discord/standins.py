"""What the offline Discord records of the bot, and the stand-in interactions (see ``harness.py``).

* :class:`Sent`, :class:`Direct`, :class:`Reaction`: what the bot posted in the
  server, sent by direct message, and reacted with, through the HTTP API;
* :class:`StandInInteraction`: a real :class:`discord.Interaction` parsed from
  a gateway payload whose HTTP replies (defer, answers) are recorded as
  :class:`Reply` instead of sent; one that is not ephemeral is posted in the channel;
* :func:`http_error`: the exception discord.py raises for an HTTP answer.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import discord


@dataclasses.dataclass(frozen=True)
class Sent:
    """A message the bot sent through the HTTP API."""

    at: float  # time.perf_counter()
    channel_id: int
    message_id: int
    content: str
    custom_ids: tuple[str, ...]
    allowed_mentions: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Direct:
    """A direct message the bot sent to a member."""

    at: float
    user_id: int
    content: str


@dataclasses.dataclass(frozen=True)
class Reaction:
    """A reaction the bot added to a message."""

    at: float
    channel_id: int
    message_id: int
    emoji: str


@dataclasses.dataclass(frozen=True)
class Reply:
    """An answer to an interaction (not a channel message unless ``ephemeral`` is False)."""

    at: float
    kind: str  # "defer", "message", "followup"
    content: str | None
    ephemeral: bool


class FakeResponse:
    """Enough of an aiohttp response for discord.HTTPException."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def http_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Exception:
    """The exception discord.py raises for this HTTP answer."""
    response = FakeResponse(status, message, headers)
    data = {"code": code, "message": message}
    kind = {403: discord.Forbidden, 404: discord.NotFound}.get(status, discord.HTTPException)
    error: Exception = kind(response, data)
    return error


class _StandInResponse:
    def __init__(self, interaction: StandInInteraction) -> None:
        self._interaction = interaction
        self._done = False

    def is_done(self) -> bool:
        return self._done

    async def defer(self, *, ephemeral: bool = False, thinking: bool = False) -> None:
        self._acknowledge()
        self._interaction.replies.append(Reply(time.perf_counter(), "defer", None, ephemeral))

    async def send_message(
        self, content: str | None = None, *, ephemeral: bool = False, **kwargs: Any
    ) -> None:
        self._acknowledge()
        self._interaction.replies.append(Reply(time.perf_counter(), "message", content, ephemeral))
        if not ephemeral:
            await self._interaction.channel.send(content, **kwargs)

    def _acknowledge(self) -> None:
        if self._done:
            raise discord.InteractionResponded(self._interaction)
        self._done = True


class _StandInFollowup:
    def __init__(self, interaction: StandInInteraction) -> None:
        self._interaction = interaction

    async def send(self, content: str | None = None, *, ephemeral: bool = False, **kwargs: Any) -> Any:
        if not self._interaction.response.is_done():
            raise RuntimeError("a followup needs the interaction acknowledged first")
        self._interaction.replies.append(Reply(time.perf_counter(), "followup", content, ephemeral))
        if not ephemeral:
            return await self._interaction.channel.send(content, **kwargs)
        return None


class StandInInteraction(discord.Interaction):  # type: ignore[misc]
    """A real Interaction parsed from a gateway payload; its HTTP replies are recorded, not sent."""

    def __init__(self, *, data: dict[str, Any], state: Any) -> None:
        super().__init__(data=data, state=state)
        self.created = time.perf_counter()
        self.replies: list[Reply] = []
        self._standin_response = _StandInResponse(self)
        self._standin_followup = _StandInFollowup(self)

    @property
    def response(self) -> Any:
        return self._standin_response

    @property
    def followup(self) -> Any:
        return self._standin_followup

    def texts(self) -> list[str]:
        return [r.content for r in self.replies if r.content]
