"""Audio in: files (anything PyAV decodes), browser PCM frames and the microphone.

Everything comes out as 16 kHz mono float32 in [-1, 1], the form Whisper and
Silero VAD expect. Problems a person can fix raise :class:`InvalidInput` (or
:class:`MicrophoneUnavailable`) with a message naming the fix; damage that still
leaves audio to transcribe (a truncated or partly corrupt file) is reported as a
warning next to the audio that could be decoded.

``sounddevice`` is an optional extra (``pip install 'ambient[mic]'`` plus
Debian's ``libportaudio2``) and is imported only when the microphone is opened.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from ambient.errors import InvalidInput
from integrations.speech.options import SAMPLE_RATE

_LOGGER = logging.getLogger(__name__)

Samples = npt.NDArray[np.float32]
FORMATS_HINT = "convert it to WAV, FLAC, OGG or MP3 (e.g. `sox in.xyz -r 16000 out.wav`)"
MIN_RATE, MAX_RATE = 4_000, 384_000


class MicrophoneUnavailable(InvalidInput):
    """No PortAudio, no input device, or the device went away."""


@dataclasses.dataclass
class DecodeReport:
    """What decoding a file found out, filled in while its audio is read."""

    path: str
    source_rate: int = 0
    channels: int = 0
    declared_seconds: float | None = None
    decoded_seconds: float = 0.0
    bad_packets: int = 0
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DecodedAudio:
    samples: Samples
    report: DecodeReport

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def warnings(self) -> list[str]:
        return self.report.warnings


def empty() -> Samples:
    return np.zeros(0, dtype=np.float32)


# ------------------------------------------------------------------- files
def decode_file(path: str | Path) -> DecodedAudio:
    """The whole file as 16 kHz mono float32 (blocking: call it in a worker thread)."""
    report = DecodeReport(str(path))
    chunks = list(iter_file(path, report=report))
    samples = np.concatenate(chunks) if chunks else empty()
    return DecodedAudio(samples, report)


def iter_file(
    path: str | Path, chunk_seconds: float = 0.5, report: DecodeReport | None = None
) -> Generator[Samples, None, None]:
    """Yield the file's audio in chunks of ``chunk_seconds`` (16 kHz mono float32).

    Bad packets are skipped and counted; a file that ends before its declared
    length gets a warning in ``report`` once the iteration finishes.
    """
    report = report if report is not None else DecodeReport(str(path))
    file = _check_file(Path(path))
    chunk = max(1, int(chunk_seconds * SAMPLE_RATE))
    pending: list[Samples] = []
    held = 0
    with _open(file) as container:
        stream = _audio_stream(container, file)
        report.source_rate = int(stream.codec_context.sample_rate or 0)
        report.channels = int(stream.codec_context.channels or 0)
        if stream.duration is not None and stream.time_base is not None:
            report.declared_seconds = float(stream.duration * stream.time_base)
        for samples in _decode(container, stream, report):
            pending.append(samples)
            held += len(samples)
            while held >= chunk:
                joined = np.concatenate(pending)
                yield joined[:chunk]
                pending, held = [joined[chunk:]], len(joined) - chunk
    if held:
        yield np.concatenate(pending)
    _finish_report(report, file)


def _check_file(file: Path) -> Path:
    if not file.exists():
        raise InvalidInput(f"{file} does not exist: give the path of an audio file")
    if file.is_dir():
        raise InvalidInput(f"{file} is a folder: give an audio file")
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise InvalidInput(f"cannot read {file} ({exc.strerror}): check its permissions") from None
    if size == 0:
        raise InvalidInput(f"{file} is empty (0 bytes): there is no audio to transcribe")
    return file


def _open(file: Path) -> Any:
    try:
        return av.open(str(file), mode="r", metadata_errors="ignore")
    except PermissionError:
        raise InvalidInput(f"cannot read {file}: permission denied; check its permissions") from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InvalidInput(
            f"{file} is not audio that can be decoded ({_reason(exc)}): it may be corrupt, truncated "
            f"or in an unsupported format; {FORMATS_HINT}"
        ) from None


def _audio_stream(container: Any, file: Path) -> Any:
    if not container.streams.audio:
        raise InvalidInput(
            f"{file} has no audio stream: give a sound file (WAV, FLAC, OGG or MP3, or anything FFmpeg reads)"
        )
    return container.streams.audio[0]


def _decode(container: Any, stream: Any, report: DecodeReport) -> Iterator[Samples]:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, ValueError):
                report.bad_packets += 1
                continue
            for frame in frames:
                yield from _resampled(resampler, frame, report)
        yield from _resampled(resampler, None, report)
    except (av.error.FFmpegError, OSError) as exc:  # the demuxer itself gave up
        report.bad_packets += 1
        _LOGGER.info("decoding %s stopped early: %s", report.path, exc)


def _resampled(resampler: Any, frame: Any, report: DecodeReport) -> Iterator[Samples]:
    for out in resampler.resample(frame):
        samples = np.clip(out.to_ndarray().reshape(-1), -1.0, 1.0).astype(np.float32)  # resampling overshoots
        report.decoded_seconds += len(samples) / SAMPLE_RATE
        yield samples


def _finish_report(report: DecodeReport, file: Path) -> None:
    got = report.decoded_seconds
    if got == 0:
        raise InvalidInput(
            f"no audio could be decoded from {file}: it is empty, truncated or corrupt; {FORMATS_HINT}"
        )
    declared = report.declared_seconds
    if declared is not None and got < declared * 0.97 - 0.1:
        report.warnings.append(
            f"{file} ends at {got:.1f} s of its declared {declared:.1f} s: it looks truncated or corrupt; "
            "transcribing what could be decoded"
        )
    elif _riff_truncated(file):
        report.warnings.append(
            f"{file} is shorter than its WAV header says: it looks truncated; transcribing the "
            f"{got:.1f} s that are there"
        )
    if report.bad_packets:
        report.warnings.append(
            f"{file}: {report.bad_packets} damaged part(s) could not be decoded and were skipped"
        )
    for warning in report.warnings:
        _LOGGER.warning("%s", warning)


def _riff_truncated(file: Path) -> bool:
    """Whether a WAV file is shorter than the size its RIFF header declares."""
    try:
        with file.open("rb") as fh:
            head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        declared = int.from_bytes(head[4:8], "little") + 8
        return declared != 0xFFFFFFFF + 8 and file.stat().st_size < declared
    except OSError:
        return False


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(":")[0].strip() or type(exc).__name__


# ----------------------------------------------------------- PCM from a browser
def pcm16_to_float(frames: bytes) -> Samples:
    """Little-endian signed 16-bit mono PCM to float32."""
    if len(frames) % 2:
        raise InvalidInput(
            f"PCM frames must be 16-bit samples (an even number of bytes), got {len(frames)} bytes"
        )
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


def check_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
        raise InvalidInput(f"sample rate must be a whole number of Hz, got {sample_rate!r}")
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise InvalidInput(
            f"sample rate {sample_rate} Hz is out of range: send {SAMPLE_RATE} Hz mono 16-bit PCM "
            f"(anything from {MIN_RATE} to {MAX_RATE} Hz is resampled)"
        )
    return sample_rate


class Resampler:
    """Streaming mono float32 resampling to 16 kHz (FFmpeg's filter, state kept across calls)."""

    def __init__(self, rate: int) -> None:
        self.rate = check_rate(rate)
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self._pts = 0

    def __call__(self, samples: Samples) -> Samples:
        if self.rate == SAMPLE_RATE or len(samples) == 0:
            return samples.astype(np.float32, copy=False)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += len(samples)
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32, copy=False) if out else empty()


# ------------------------------------------------------------------ microphone
def import_sounddevice() -> Any:
    """The sounddevice module, or MicrophoneUnavailable saying what to install."""
    try:
        return importlib.import_module("sounddevice")
    except ImportError:
        raise MicrophoneUnavailable(
            "the microphone needs the optional sounddevice package: pip install 'ambient[mic]' "
            "(or set sources.speech.input to a file, or speak through the web UI)"
        ) from None
    except OSError as exc:
        raise MicrophoneUnavailable(
            f"the microphone needs the PortAudio library ({exc}): install it, e.g. "
            "`apt-get install libportaudio2`, or speak through the web UI"
        ) from None


class Microphone:
    """A blocking microphone reader; open it, then call :meth:`read` from a worker thread."""

    def __init__(self, device: str = "", block_seconds: float = 0.1) -> None:
        self.device: str | int | None = int(device) if device.isdigit() else (device or None)
        self.block_seconds = block_seconds
        self._sd: Any = None
        self._stream: Any = None
        self._resample: Resampler | None = None
        self._lock = threading.Lock()

    def open(self) -> Microphone:
        sd = self._sd = import_sounddevice()
        try:
            self._stream = self._start(SAMPLE_RATE)
        except sd.PortAudioError as exc:  # no device, or no 16 kHz: try the device's own rate
            rate = self._default_rate(exc)
            try:
                self._stream = self._start(rate)
            except sd.PortAudioError as again:
                raise self._unavailable(again) from None
            self._resample = Resampler(rate)
        return self

    def _start(self, rate: int) -> Any:
        sd = self._sd
        try:
            stream = sd.InputStream(
                samplerate=rate,
                channels=1,
                dtype="float32",
                blocksize=int(rate * self.block_seconds),
                device=self.device,
            )
            stream.start()
            return stream
        except ValueError as exc:  # sounddevice: unknown device name
            raise self._unavailable(exc) from None

    def _default_rate(self, first: BaseException) -> int:
        sd = self._sd
        try:
            info = sd.query_devices(self.device, "input")
            rate = int(info["default_samplerate"])
        except (sd.PortAudioError, ValueError, KeyError, TypeError):
            raise self._unavailable(first) from None
        if rate == SAMPLE_RATE:
            raise self._unavailable(first)
        return rate

    def _unavailable(self, exc: BaseException) -> MicrophoneUnavailable:
        which = f"input device {self.device!r}" if self.device is not None else "a default input device"
        return MicrophoneUnavailable(
            f"cannot open {which} ({exc}): plug in a microphone, pick one with sources.speech.mic_device "
            "(`python -m sounddevice` lists them), or speak through the web UI"
        )

    def read(self) -> Samples:
        """The next block of 16 kHz float32; MicrophoneUnavailable when the device went away."""
        with self._lock:
            stream = self._stream
            if stream is None:
                raise MicrophoneUnavailable("the microphone is closed")
            try:
                data, _overflowed = stream.read(int(stream.samplerate * self.block_seconds))
            except (self._sd.PortAudioError, OSError) as exc:
                raise MicrophoneUnavailable(
                    f"the microphone went away ({exc}): the transcript so far is kept; plug it back in "
                    "and ambient listens again"
                ) from None
        samples = np.asarray(data, dtype=np.float32).reshape(-1)
        return self._resample(samples) if self._resample is not None else samples

    def close(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.stop()
            stream.close()
        except Exception as exc:  # a device that vanished may fail to close: nothing to free then
            _LOGGER.debug("closing the microphone: %s", exc)
