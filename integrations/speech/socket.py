"""Speech from the browser over the daemon's WebSocket: ``speech_start``, binary PCM frames, ``speech_stop``.

One handler per socket (:class:`ambient.sources.SocketHandler`). Every problem
is an ``{"type": "error", "message"}`` to that client only; the socket stays
open. Closing the socket ends its session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, Protocol, cast

from ambient.errors import AmbientError
from ambient.sources import SocketHandler

_LOGGER = logging.getLogger(__name__)

# The speech place runs by default (browser audio needs no device on the server); when it does not,
# `ambient run` said why at start, and the socket says it too.
SPEECH_OFF = "speech is off: the speech place is not running (`ambient status` says why)"


class SpeechInput(Protocol):
    """What the socket needs from the running speech place."""

    async def feed_pcm16(self, session_id: str, frames: bytes, sample_rate: int = 16000) -> None: ...

    async def end_session(self, session_id: str) -> None: ...


class SpeechSocket(SocketHandler):
    """One socket's speech session."""

    message_types: ClassVar[tuple[str, ...]] = ("speech_start", "speech_stop")
    binary: ClassVar[bool] = True

    def __init__(self, peer: Any) -> None:
        super().__init__(peer)
        self.session: str | None = None
        self.sample_rate = 16000
        self._ending: set[asyncio.Task[None]] = set()

    def _source(self) -> SpeechInput | None:
        source = self.peer.running()
        return cast(SpeechInput, source) if source is not None else None

    def _off(self) -> str:
        problem = (self.peer.problem() or "").removeprefix("off: ")
        if not problem:
            return SPEECH_OFF
        return problem if problem.startswith("speech is off") else f"speech is off ({problem})"

    async def message(self, message: dict[str, Any]) -> None:
        if message["type"] == "speech_start":
            await self._start(message)
        else:
            await self._stop(message.get("session"))

    async def _start(self, message: dict[str, Any]) -> None:
        if self._source() is None:
            await self.peer.error(self._off())
            return
        session, rate = message.get("session"), message.get("sample_rate", 16000)
        if not isinstance(session, str) or not session:
            await self.peer.error('speech_start needs "session": a string id')
            return
        if not isinstance(rate, int) or isinstance(rate, bool):
            await self.peer.error(f'speech_start "sample_rate" must be an integer (Hz), got {rate!r}')
            return
        if self.session is not None and self.session != session:
            self._end(self.session)
        self.session, self.sample_rate = session, rate

    async def _stop(self, session: Any) -> None:
        if self.session is None or (session is not None and session != self.session):
            await self.peer.error(f"no speech session {session!r} is running on this socket")
            return
        self._end(self.session)
        self.session = None

    async def frames(self, data: bytes) -> None:
        source = self._source()
        if source is None:
            await self.peer.error(self._off())
            return
        if self.session is None:
            await self.peer.error('send {"type": "speech_start", "session": ID} before audio frames')
            return
        try:
            await source.feed_pcm16(self.session, data, self.sample_rate)
        except AmbientError as exc:
            await self.peer.error(str(exc))

    def _end(self, session: str) -> None:
        """End a session in the background (it waits for the last transcription); the socket goes on."""
        source = self._source()
        if source is None:
            return
        task = asyncio.get_running_loop().create_task(self._end_quietly(source, session))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _end_quietly(self, source: SpeechInput, session: str) -> None:
        try:
            await source.end_session(session)
        except Exception:
            _LOGGER.exception("speech session %s did not end cleanly", session)

    async def close(self) -> None:
        """The socket closed: end its session."""
        if self.session is not None:
            self._end(self.session)
            self.session = None
        if self._ending:
            await asyncio.gather(*self._ending, return_exceptions=True)
