"""SpeechSource: think aloud; committed speech becomes a tree, pauses become offers.

Audio comes from the configured input (``mic``, a file, or ``none``) and from
browsers through the daemon's WebSocket (:meth:`SpeechSource.feed_pcm16`). Each
input is a *session* with its own :class:`StreamingPolicy` and its own tree
(source ``speech:<session>``); all sessions share one Whisper model on one
worker thread, so the event loop never waits for transcription.

The place starts without a ``[sources.speech]`` table (``autostart``): the web
UI's microphone needs no audio device on the server, only the browser's frames
(input ``none``). Then Whisper is loaded at the first session, not at start, so
a daemon nobody speaks to neither waits for it nor holds it in memory; a mic or
file input loads it at setup.

What it publishes (``hub.publish``):

* ``transcript``: ``{"session", "tree_id", "node_id", "committed": [{"start", "end", "text"}],
  "tentative": str, "time": float, "pause": bool}`` whenever the transcript changes
  (``committed`` holds only the newly final pieces; ``tentative`` is the greyed tail);
* ``speech_status``: ``{"session", "state", "message"}`` with state ``listening``,
  ``ended``, ``warning`` or ``error``.

Committed text is stored as human nodes by ``speaker`` (one node per sentence, or
at a pause); after a pause the hub is asked for an offer at the last node. Nothing
is ever spoken or sent anywhere.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from ambient.errors import AmbientError, InvalidInput, ModelUnavailable
from ambient.sources import SocketHandler, Source, SourceEvent
from ambient.tree import HUMAN, Author
from integrations.speech import audio
from integrations.speech.options import SAMPLE_RATE, SpeechOptions
from integrations.speech.socket import SpeechSocket
from integrations.speech.streaming import StreamingPolicy, StreamUpdate
from integrations.speech.transcriber import Segment, Transcriber

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

SPEAKER = Author(HUMAN, "speaker")
MAX_INBOX_SECONDS = 60.0  # audio waiting for transcription per session before the oldest is dropped
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
_SENTENCE_END = re.compile(r"[.?!…][\"')\]]*$")


@dataclasses.dataclass
class _Session:
    id: str
    kind: str  # "browser", "mic" or "file"
    tree_id: str | None = None
    last_node_id: str | None = None
    offered_node_id: str | None = None
    pending: list[Segment] = dataclasses.field(default_factory=list)  # committed, not yet a node
    inbox: list[audio.Samples] = dataclasses.field(default_factory=list)
    inbox_samples: int = 0
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    ended: bool = False
    resampler: audio.Resampler | None = None
    task: asyncio.Task[None] | None = None
    tentative: str = ""
    behind: bool = False  # audio was dropped since the inbox was last emptied


SOURCE_PREFIX = "speech:"
SCOPE = "speech"  # a private place: what you say sees your notes and typed text, and they see it


class SpeechSource(Source):
    name: ClassVar[str] = "speech"
    options_class: ClassVar[type[Any]] = SpeechOptions
    socket_handler: ClassVar[type[SocketHandler] | None] = SpeechSocket
    autostart: ClassVar[bool] = True  # the browser's microphone works without a [sources.speech] table

    @classmethod
    def scope_of(cls, tree_source: str, home: Path) -> str | None:
        return SCOPE if tree_source.startswith(SOURCE_PREFIX) else None

    @classmethod
    def add_commands(cls, sub: Any) -> None:
        from integrations.speech.commands import register

        register(sub)

    @classmethod
    def benchmarks(cls) -> Mapping[str, str]:
        return {"speech": "integrations.speech.bench"}

    def __init__(self, hub: Any, options: SpeechOptions) -> None:
        super().__init__(hub, options)
        self.options: SpeechOptions = options
        self._transcriber: Transcriber | None = None
        self._whisper = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ambient-speech")
        self._reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ambient-mic")
        self._sessions: dict[str, _Session] = {}
        self._mic: audio.Microphone | None = None
        self._last_error = ""
        self._broken = ""  # why the model could not load at a session's start: no more sessions then

    @classmethod
    def enabled(cls, options: Any) -> tuple[bool, str]:
        if not options.enabled:
            return False, "speech is off (sources.speech.enabled = false)"
        return True, ""

    # ------------------------------------------------------------ lifecycle
    async def setup(self) -> None:
        """Check the options, the model folder and the input; load the model now for a mic or a file.

        With input ``none`` (browser only, the default) the model loads at the first session.
        """
        try:
            options = self.options.validate()
            if options.input == "mic":
                audio.import_sounddevice()
            elif options.input != "none" and not Path(options.input).expanduser().is_file():
                raise InvalidInput(
                    f"sources.speech.input {options.input!r} is not a file: give an audio file, 'mic', "
                    "or 'none' (browser only)"
                )
            self._transcriber = await self._in_whisper(Transcriber, options)
            if options.input != "none":
                await self._in_whisper(lambda: self._require_transcriber().model)
        except BaseException:
            await self.unload()  # the daemon does not unload a source whose setup failed
            raise

    async def run(self) -> None:
        kind = self.options.input
        if kind == "mic":
            await self._run_mic()
        elif kind != "none":
            await self._run_file(Path(kind).expanduser())
        await asyncio.Event().wait()  # browser sessions keep arriving through feed_pcm16

    async def unload(self) -> None:
        for session in list(self._sessions.values()):
            with contextlib.suppress(Exception):
                await self.end_session(session.id)
        if self._mic is not None:
            self._mic.close()
        if self._transcriber is not None:
            self._transcriber.close()
        self._whisper.shutdown(wait=False, cancel_futures=True)
        self._reader.shutdown(wait=False, cancel_futures=True)

    def status(self) -> dict[str, Any]:
        t = self._transcriber
        return {
            "input": self.options.input,
            "model": str(t.model_dir) if t else self.options.model,
            "device": f"{t.device}/{t.compute_type}" if t else self.options.device,
            "loaded": bool(t and t.loaded),  # browser only: Whisper loads at the first session
            "sessions": sorted(self._sessions),
            "error": self._last_error,
        }

    # ------------------------------------------------------------ browser frames
    async def feed_pcm16(self, session_id: str, frames: bytes, sample_rate: int = SAMPLE_RATE) -> None:
        """Queue 16-bit little-endian mono PCM from a browser; returns at once (never waits for Whisper).

        Raises InvalidInput for a bad session id, an odd byte count or a sample rate out of range.
        """
        _check_session_id(session_id)
        samples = audio.pcm16_to_float(frames)
        audio.check_rate(sample_rate)
        session = self._session(session_id, "browser")
        if session.resampler is None or session.resampler.rate != sample_rate:
            session.resampler = audio.Resampler(sample_rate)
        self._queue(session, session.resampler(samples))

    async def end_session(self, session_id: str) -> None:
        """The speaker stopped (button off, socket closed): commit the rest, store it, offer."""
        session = self._sessions.get(session_id)
        if session is None:
            return
        session.ended = True
        session.wake.set()
        if session.task is not None:
            await asyncio.wait({session.task})  # its errors are reported by the task itself

    # ------------------------------------------------------------ sessions
    def _session(self, session_id: str, kind: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None or session.ended:
            self._require_transcriber()
            if self._broken:
                raise ModelUnavailable(self._broken)
            session = _Session(session_id, kind)
            self._sessions[session_id] = session
            session.task = asyncio.get_running_loop().create_task(self._consume(session))
            self._status(session, "listening", f"listening ({kind})")
        return session

    def _queue(self, session: _Session, samples: audio.Samples) -> None:
        session.inbox.append(samples)
        session.inbox_samples += len(samples)
        while session.inbox_samples > MAX_INBOX_SECONDS * SAMPLE_RATE and len(session.inbox) > 1:
            dropped = session.inbox.pop(0)
            session.inbox_samples -= len(dropped)
            if not session.behind:
                session.behind = True
                self._status(session, "warning", "transcription fell behind: the oldest audio was dropped")
        session.wake.set()

    async def _consume(self, session: _Session) -> None:
        """Feed queued audio to the session's policy until the session ends, then finish it."""
        try:
            try:  # on the Whisper thread: the first session loads the model
                policy = await self._in_whisper(self._new_policy)
            except Exception as exc:
                _LOGGER.exception("speech session %s: the speech model did not load", session.id)
                why = str(exc) if isinstance(exc, AmbientError) else f"{type(exc).__name__}: {exc}"
                self._broken = f"speech is off: the speech model did not load ({why})"
                self._error(session, self._broken)
                return
            while not (session.ended and not session.inbox):
                try:
                    await asyncio.wait_for(session.wake.wait(), timeout=self.options.idle_seconds)
                except TimeoutError:
                    session.ended = True  # the browser went away without saying so
                session.wake.clear()
                if session.inbox:
                    chunk = np.concatenate(session.inbox)
                    session.inbox, session.inbox_samples, session.behind = [], 0, False
                    await self._step(session, policy.feed, chunk)
            await self._step(session, policy.finish, final=True)
        finally:
            if self._sessions.get(session.id) is session:
                del self._sessions[session.id]
            self._status(session, "ended", "the session ended; its transcript is kept")

    async def _step(
        self, session: _Session, work: Callable[..., StreamUpdate], *args: Any, final: bool = False
    ) -> None:
        """One call of the policy (on the Whisper thread) and its results; a failure ends nothing."""
        try:
            update = await self._in_whisper(work, *args)
            await self._apply(session, update, final)
        except AmbientError as exc:
            self._error(session, str(exc))
        except Exception as exc:
            _LOGGER.exception("speech session %s: transcription failed", session.id)
            self._error(session, f"transcription failed ({type(exc).__name__}: {exc}); listening on")

    # ------------------------------------------------------------ results
    async def _apply(self, session: _Session, update: StreamUpdate, final: bool = False) -> None:
        """Store what became final (a node per sentence, and at each pause), tell the UI, ask for offers."""
        pause_nodes: list[str | None] = []
        for i in range(len(update.committed) + 1):
            if i in update.pauses:
                await self._flush(session)
                pause_nodes.append(session.last_node_id)
            if i < len(update.committed):
                session.pending.append(update.committed[i])
                if _ends_sentence(update.committed[i].text):
                    await self._flush(session)
        if final:
            await self._flush(session)
        tentative = update.tentative.text.strip() if update.tentative else ""
        if update.committed or update.pauses or tentative != session.tentative:
            session.tentative = tentative
            self.hub.publish("transcript", self._transcript_event(session, update, tentative))
        for node_id in pause_nodes:
            if node_id is not None and node_id != session.offered_node_id:
                session.offered_node_id = node_id
                await self.hub.submit(
                    SourceEvent(
                        source=self.name,
                        key=session.id,
                        parent_id=node_id,
                        meta={"session": session.id, "tree_id": session.tree_id, "pause": True},
                    )
                )

    async def _flush(self, session: _Session) -> None:
        """The committed text not yet in the tree becomes a node (kept in memory if the store fails)."""
        if not session.pending:
            return
        try:
            await self._store(session)
        except AmbientError as exc:
            self._error(session, f"{exc}; the transcript is kept in memory and stored at the next try")

    def _transcript_event(self, session: _Session, update: StreamUpdate, tentative: str) -> dict[str, Any]:
        return {
            "session": session.id,
            "tree_id": session.tree_id,
            "node_id": session.last_node_id,
            "committed": [s.as_dict() for s in update.committed],
            "tentative": tentative,
            "time": round(update.time, 3),
            "pause": update.pause,
            "pauses": len(update.pauses),
        }

    async def _store(self, session: _Session) -> None:
        pieces = list(session.pending)
        text = "".join(p.text for p in pieces).strip()
        meta = {"session": session.id, "start": round(pieces[0].start, 3), "end": round(pieces[-1].end, 3)}
        await self.hub.run_blocking(self._write_node, session, text, meta)
        del session.pending[: len(pieces)]

    def _write_node(self, session: _Session, text: str, meta: dict[str, Any]) -> None:
        store = self.hub.app.store
        if session.tree_id is None:
            tree = store.find_tree(f"speech:{session.id}")
            if tree is not None:
                session.tree_id = tree.id
                spoken = [n for n in store.tree_nodes(tree.id) if n.author.name == SPEAKER.name]
                session.last_node_id = spoken[-1].id if spoken else tree.root_id
        if session.last_node_id is None:
            title = f"Spoken {time.strftime('%Y-%m-%d %H:%M')}: {text[:60]}"
            tree, root = store.create_tree(
                text,
                title=title,
                source=f"{SOURCE_PREFIX}{session.id}",
                scope=SCOPE,
                author=SPEAKER,
                meta={"session": session.id, "input": session.kind},
            )
            session.tree_id, session.last_node_id = tree.id, root.id
            return
        node = store.add_node(session.last_node_id, " " + text, author=SPEAKER, meta=meta)
        session.last_node_id = node.id

    # ------------------------------------------------------------ inputs
    async def _run_file(self, path: Path) -> None:
        session_id = self.options.session or f"file-{_slug(path.stem)}"
        if await self.hub.run_blocking(self._already_done, session_id):
            _LOGGER.info("%s was transcribed before (session %s): not again", path, session_id)
            return
        session = self._session(session_id, "file")
        report = audio.DecodeReport(str(path))
        chunks = audio.iter_file(path, self.options.step_seconds, report)
        started = time.monotonic()
        heard = 0.0
        try:
            while (chunk := await self.hub.run_blocking(next, chunks, None)) is not None:
                self._queue(session, chunk)
                heard += len(chunk) / SAMPLE_RATE
                if self.options.realtime:
                    await asyncio.sleep(max(0.0, started + heard - time.monotonic()))
                else:  # as fast as Whisper goes: wait while it is a step behind
                    while session.inbox_samples > self.options.step_seconds * SAMPLE_RATE:
                        await asyncio.sleep(0.01)
        except AmbientError as exc:
            self._error(session, str(exc))
        finally:
            with contextlib.suppress(ValueError):  # still running in a worker if run() was cancelled
                chunks.close()
        for warning in report.warnings:
            self._status(session, "warning", warning)
        await self.end_session(session.id)
        await self.hub.run_blocking(self._mark_done, session)

    def _already_done(self, session_id: str) -> bool:
        tree = self.hub.app.store.find_tree(f"speech:{session_id}")
        return bool(tree and tree.meta.get("complete"))

    def _mark_done(self, session: _Session) -> None:
        if session.tree_id is not None:
            self.hub.app.store.update_tree_meta(session.tree_id, {"complete": True})

    async def _run_mic(self) -> None:
        session_id = self.options.session or f"mic-{time.strftime('%Y%m%d-%H%M%S')}"
        while True:
            try:
                await self._listen(session_id)
            except audio.MicrophoneUnavailable as exc:
                self._last_error = str(exc)
                _LOGGER.warning("%s", exc)
                self.hub.publish(
                    "speech_status", {"session": session_id, "state": "error", "message": str(exc)}
                )
            finally:
                if self._mic is not None:
                    self._mic.close()
                    self._mic = None
                await self.end_session(session_id)
            if not self.options.mic_retry_seconds:
                return
            await asyncio.sleep(self.options.mic_retry_seconds)

    async def _listen(self, session_id: str) -> None:
        loop = asyncio.get_running_loop()
        mic = audio.Microphone(self.options.mic_device)
        await loop.run_in_executor(self._reader, mic.open)
        self._mic = mic
        session = self._session(session_id, "mic")
        while True:
            self._queue(session, await loop.run_in_executor(self._reader, mic.read))

    # ------------------------------------------------------------ helpers
    def _new_policy(self) -> StreamingPolicy:
        transcriber = self._require_transcriber()
        transcriber.model  # noqa: B018 - loaded once, by the first session
        return StreamingPolicy(transcriber, self.options)

    def _require_transcriber(self) -> Transcriber:
        if self._transcriber is None:
            raise AmbientError("the speech source is not set up: call setup() first")
        return self._transcriber

    async def _in_whisper(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the one thread that uses the Whisper and VAD models."""
        return await asyncio.get_running_loop().run_in_executor(self._whisper, fn, *args)

    def _status(self, session: _Session, state: str, message: str) -> None:
        if state in ("warning", "error"):
            _LOGGER.warning("speech session %s: %s", session.id, message)
        self.hub.publish("speech_status", {"session": session.id, "state": state, "message": message})

    def _error(self, session: _Session, message: str) -> None:
        self._last_error = message
        self._status(session, "error", message)


def _ends_sentence(text: str) -> bool:
    return bool(_SENTENCE_END.search(text.strip()))


def _check_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        raise InvalidInput(
            f"speech session id {session_id!r} is not usable: give 1 to 100 letters, digits, '_', '.', ':' "
            "or '-'"
        )
    return session_id


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "audio"
