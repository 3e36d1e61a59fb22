"""The streaming policy: audio in, committed text out, as a person speaks.

:class:`StreamingPolicy` is pure bookkeeping around a :class:`Recognizer` (Whisper
in production): no threads, no I/O, no clock; feed it samples and it returns what
became final. It combines

* **voice activity detection** with the Silero model faster-whisper ships
  (:class:`VoiceActivity`): Whisper only runs while there is unconfirmed speech,
  and words outside detected speech are dropped;
* **LocalAgreement-2** (Macháček et al., 2023, "Turning Whisper into Real-Time
  Transcription System"): each pass re-transcribes the buffer; a word becomes
  committed once two consecutive passes agree on it (the longest common prefix);
* **a bounded buffer**, trimmed at committed sentence ends (and at pauses), never
  longer than ``buffer_seconds``;
* **guards against invented text**: the segment thresholds in
  :func:`integrations.speech.transcriber.keep_segment` plus the VAD filter;
* **pauses**: once speech has been silent for ``pause_seconds`` the utterance is
  over, the rest of its text is committed, and the update marks the pause.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from integrations.speech.audio import Samples, empty
from integrations.speech.options import SAMPLE_RATE, SpeechOptions
from integrations.speech.transcriber import Segment, Word, join_words

WINDOW = 512  # Silero's window at 16 kHz (32 ms)
CONTEXT = 64
PROMPT_CHARS = 200
PIECE_SECONDS = 0.1  # pauses are seen to within this
_SENTENCE_END = re.compile(r"[.?!…][\"')\]]*$")
_WORD = re.compile(r"[^\w']+")


class Recognizer(Protocol):
    def recognize(self, audio: Samples, prompt: str = "") -> list[Word]:
        """Words in ``audio`` (times in seconds from its start)."""


@dataclasses.dataclass(frozen=True)
class StreamUpdate:
    committed: tuple[Segment, ...] = ()  # newly final text, in order (a new segment after each pause)
    tentative: Segment | None = None  # the unconfirmed tail (shown greyed)
    pauses: tuple[int, ...] = ()  # a pause followed the first k segments of ``committed``, for each k
    time: float = 0.0  # seconds of audio received so far
    passes: int = 0  # Whisper passes this feed ran

    @property
    def pause(self) -> bool:
        """Whether a pause (of ``pause_seconds``, after committed speech) began in this update."""
        return bool(self.pauses)


def normalise(word: str) -> str:
    return _WORD.sub("", word.lower())


def agreed_prefix(previous: Sequence[Word], current: Sequence[Word]) -> int:
    """How many leading words two passes agree on (ignoring case and punctuation)."""
    n = 0
    for a, b in zip(previous, current, strict=False):
        if normalise(a.text) != normalise(b.text):
            break
        n += 1
    return n


def drop_repeated(committed: Sequence[Word], words: Sequence[Word], max_n: int = 5) -> list[Word]:
    """Drop a head of ``words`` that repeats the tail of ``committed`` (1 to ``max_n`` words)."""
    tail = [normalise(w.text) for w in committed[-max_n:]]
    head = [normalise(w.text) for w in words[:max_n]]
    for n in range(min(len(tail), len(head)), 0, -1):
        if tail[-n:] == head[:n]:
            return list(words[n:])
    return list(words)


def to_segment(words: Sequence[Word]) -> Segment | None:
    if not words:
        return None
    return Segment(words[0].start, words[-1].end, join_words(words))


class VoiceActivity:
    """Silero speech probabilities per 32 ms window, each computed once as audio arrives."""

    def __init__(self, threshold: float = 0.5, model: Any = None) -> None:
        if model is None:
            from faster_whisper.vad import get_vad_model

            model = get_vad_model()
        self._session = model.session
        self.threshold = threshold
        self.neg_threshold = max(threshold - 0.15, 0.01)
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = empty()
        self._probs: list[float] = []
        self._first = 0  # absolute index of the window _probs[0] belongs to
        self.last_speech_end: float | None = None  # seconds: end of the last window of speech

    def push(self, samples: Samples) -> None:
        audio = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        whole = len(audio) // WINDOW * WINDOW
        self._pending = audio[whole:].copy()
        if not whole:
            return
        windows = audio[:whole].reshape(-1, WINDOW).astype(np.float32, copy=False)
        contexts = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]], axis=0)
        batch = np.concatenate([contexts, windows], axis=1)
        probs, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = windows[-1, -CONTEXT:].copy()
        new = [float(p) for p in np.asarray(probs).reshape(-1)]
        loud = [i for i, p in enumerate(new) if p >= self.threshold]
        if loud:
            self.last_speech_end = (self._first + len(self._probs) + loud[-1] + 1) * WINDOW / SAMPLE_RATE
        self._probs.extend(new)

    def forget_before(self, seconds: float) -> None:
        """Drop probabilities of windows that end before ``seconds``."""
        cut = min(int(seconds * SAMPLE_RATE) // WINDOW, self._first + len(self._probs)) - self._first
        if cut > 0:
            del self._probs[:cut]
            self._first += cut

    def regions(self, min_silence: float, pad: float, min_speech: float = 0.1) -> list[tuple[float, float]]:
        """Speech as (start, end) seconds, gaps shorter than ``min_silence`` closed, ``pad`` added."""
        raw = self._raw_regions()
        merged: list[list[float]] = []
        for start, end in raw:
            if merged and start - merged[-1][1] < min_silence:
                merged[-1][1] = end
            else:
                merged.append([start, end])
        return [(max(0.0, s - pad), e + pad) for s, e in merged if e - s >= min_speech]

    def _raw_regions(self) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        start: int | None = None
        for i, p in enumerate(self._probs):
            if start is None and p >= self.threshold:
                start = i
            elif start is not None and p < self.neg_threshold:
                out.append((start, i))
                start = None
        if start is not None:
            out.append((start, len(self._probs)))
        step = WINDOW / SAMPLE_RATE
        return [((self._first + s) * step, (self._first + e) * step) for s, e in out]


class StreamingPolicy:
    """Feed 16 kHz float32 audio as it arrives; get back what became final (see the module doc)."""

    def __init__(self, recognizer: Recognizer, options: SpeechOptions, vad: VoiceActivity | None = None):
        self.recognizer = recognizer
        self.options = options
        self.vad = vad if vad is not None else VoiceActivity(options.vad_threshold)
        self.committed: list[Word] = []
        self.passes = 0
        self.max_buffer = 0.0  # the longest the buffer has been, in seconds
        self._buffer = empty()
        self._buffer_start = 0  # absolute sample index of _buffer[0]
        self._received = 0
        self._last_pass = 0  # _received at the last pass
        self._tentative: list[Word] = []
        self._previous_end = 0.0  # seconds of audio the last pass saw
        self._handled_until = 0.0  # speech before this (seconds) needs no more passes
        self._committed_at_pause = 0

    # ------------------------------------------------------------ properties
    @property
    def now(self) -> float:
        return self._received / SAMPLE_RATE

    @property
    def buffer_start(self) -> float:
        return self._buffer_start / SAMPLE_RATE

    @property
    def buffer_seconds(self) -> float:
        return len(self._buffer) / SAMPLE_RATE

    @property
    def committed_end(self) -> float:
        return self.committed[-1].end if self.committed else 0.0

    @property
    def text(self) -> str:
        return join_words(self.committed).strip()

    @property
    def tentative(self) -> Segment | None:
        return to_segment(self._tentative)

    # ------------------------------------------------------------ the API
    def feed(self, samples: Samples) -> StreamUpdate:
        """Take the next audio, of any length; return what became final.

        The audio is taken 0.1 s at a time so that pauses and the buffer bound are seen
        where they happen, but Whisper runs at most once per call (plus once per pause,
        and when the buffer is about to overflow): a caller that fell behind catches up with
        fewer, longer steps instead of falling further behind.
        """
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        piece = int(PIECE_SECONDS * SAMPLE_RATE)
        near_full = self.options.buffer_seconds - self.options.step_seconds
        new: list[Word] = []
        marks: list[int] = []  # positions in ``new`` where a pause began
        passes = 0
        for start in range(0, len(samples), piece):
            self._append(samples[start : start + piece])
            if self._pause_due():
                passes += self._catch_up(new)
                if self._end_pause(new):
                    marks.append(len(new))
            elif start + piece >= len(samples) or self.buffer_seconds > near_full:
                passes += self._step(new)
            self._bound(new)
            self.max_buffer = max(self.max_buffer, self.buffer_seconds)
        return self._update(new, marks, passes)

    def _append(self, piece: Samples) -> None:
        self._buffer = np.concatenate([self._buffer, piece]) if len(self._buffer) else piece.copy()
        self._received += len(piece)
        self.vad.push(piece)

    def _step(self, new: list[Word]) -> int:
        """A pass once ``step_seconds`` arrived since the last one, if speech needs it."""
        if self._received - self._last_pass < self.options.step_seconds * SAMPLE_RATE:
            return 0
        self._last_pass = self._received
        if self._needs_pass():
            self._pass(new)
            return 1
        self._tentative = []
        self._trim_to(self.now - self._keep_seconds())
        return 0

    def _catch_up(self, new: list[Word]) -> int:
        """A pass over audio that arrived since the last one, if speech needs it."""
        if self._received == self._last_pass or not self._needs_pass():
            return 0
        self._last_pass = self._received
        self._pass(new)
        return 1

    def finish(self) -> StreamUpdate:
        """The stream ended: a last pass over unconfirmed speech, then all of it is committed."""
        new: list[Word] = []
        passes = self._catch_up(new)
        new += self._commit(self._tentative)
        marks = [len(new)] if len(self.committed) > self._committed_at_pause else []
        self._end_utterance()
        return self._update(new, marks, passes)

    # ------------------------------------------------------------ passes
    def _needs_pass(self) -> bool:
        if self._tentative:
            return True
        last = self.vad.last_speech_end
        return last is not None and last > max(self._handled_until, self.committed_end + 0.3)

    def _pass(self, new: list[Word]) -> None:
        offset = self.buffer_start
        heard = self.recognizer.recognize(self._buffer, self._prompt())
        self.passes += 1
        words = [dataclasses.replace(w, start=w.start + offset, end=w.end + offset) for w in heard]
        words = self._in_speech([w for w in words if w.start > self.committed_end - 0.1])
        words = drop_repeated(self.committed, words)
        agreed = agreed_prefix(self._tentative, words)
        ripe = self._previous_end - self.options.commit_margin_seconds
        while agreed and self._tentative[agreed - 1].end > ripe:  # it was cut off at the last pass's end
            agreed -= 1
        new += self._commit(words[:agreed])
        self._tentative = words[agreed:]
        self._previous_end = self.now
        self._trim_at_sentence_end()

    def _in_speech(self, words: list[Word]) -> list[Word]:
        """Words that overlap detected speech: Whisper invents text in silence (but also
        stretches a sentence's last word into the silence after it, so overlap is enough)."""
        regions = self.vad.regions(self.options.min_silence_seconds, self.options.speech_pad_seconds)
        return [w for w in words if any(w.start < e and w.end > s for s, e in regions)]

    def _prompt(self) -> str:
        before = [w for w in self.committed if w.end <= self.buffer_start + 0.01]
        return join_words(before)[-PROMPT_CHARS:].strip()

    def _commit(self, words: Sequence[Word]) -> list[Word]:
        self.committed.extend(words)
        return list(words)

    # ------------------------------------------------------------ pauses
    def _pause_due(self) -> bool:
        last = self.vad.last_speech_end
        if last is None or last <= self._handled_until:
            return False
        return self.now - last >= self.options.pause_seconds

    def _end_pause(self, new: list[Word]) -> bool:
        """The utterance is over: its text cannot change any more, so all of it is committed."""
        new += self._commit(self._tentative)
        self._handled_until = self.vad.last_speech_end or self.now
        pause = len(self.committed) > self._committed_at_pause
        self._end_utterance()
        return pause

    def _end_utterance(self) -> None:
        self._tentative = []
        self._committed_at_pause = len(self.committed)
        self._trim_to(self.now - self._keep_seconds())

    def _keep_seconds(self) -> float:
        return self.options.speech_pad_seconds + 0.3

    # ------------------------------------------------------------ the buffer
    def _trim_at_sentence_end(self) -> None:
        for word in reversed(self.committed):
            if word.end <= self.buffer_start:
                return
            if _SENTENCE_END.search(word.text.strip()):
                cut = word.end
                if self._tentative and self._tentative[0].start < cut:
                    cut = self._tentative[0].start
                self._trim_to(cut)
                return

    def _bound(self, new: list[Word]) -> None:
        limit = self.options.buffer_seconds
        if self.buffer_seconds <= limit:
            return
        self._trim_to(self.committed_end)
        if self.buffer_seconds <= limit:
            return
        cut = self.now - limit / 2  # no agreement for too long: the older half becomes final
        old = [w for w in self._tentative if w.end <= cut]
        new += self._commit(old)
        self._tentative = self._tentative[len(old) :]
        self._trim_to(min(cut, self._tentative[0].start) if self._tentative else cut)

    def _trim_to(self, seconds: float) -> None:
        cut = min(int(seconds * SAMPLE_RATE), self._received) - self._buffer_start
        if cut <= 0:
            return
        self._buffer = self._buffer[cut:].copy()
        self._buffer_start += cut
        self.vad.forget_before(self.buffer_start)

    def _update(self, new: list[Word], marks: list[int], passes: int) -> StreamUpdate:
        segments: list[Segment] = []
        pauses: list[int] = []
        start = 0
        for mark in marks:
            if mark > start:
                segments.append(Segment(new[start].start, new[mark - 1].end, join_words(new[start:mark])))
                start = mark
            pauses.append(len(segments))
        if start < len(new):
            segments.append(Segment(new[start].start, new[-1].end, join_words(new[start:])))
        return StreamUpdate(tuple(segments), self.tentative, tuple(pauses), self.now, passes)
