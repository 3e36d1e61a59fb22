"""Audio in: any PyAV format and rate to 16 kHz mono; bad files and missing microphones say what to do."""

from __future__ import annotations

import importlib.abc
import sys
import types
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from ambient.errors import InvalidInput
from integrations.speech import audio
from integrations.speech.audio import MicrophoneUnavailable, decode_file
from integrations.speech.bench import wer
from integrations.speech.options import SAMPLE_RATE
from integrations.speech.transcriber import Transcriber
from tests.integrations.speech.helpers import TEXT, sox


def encode(samples: np.ndarray, out: Path, codec: str, container: str, rate: int = 16000) -> Path:
    """Write 16 kHz mono float samples with PyAV (``codec`` in ``container``)."""
    with av.open(str(out), "w", format=container) as file:
        stream = file.add_stream(codec, rate=rate, layout="mono")
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        fmt = stream.codec_context.format.name
        resampler = av.AudioResampler(
            format=fmt, layout="mono", rate=rate, frame_size=stream.codec_context.frame_size or None
        )
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            file.mux(stream.encode(chunk))
        file.mux(stream.encode(None))
    return out


@pytest.fixture(scope="module")
def clean(speech_16k: Path) -> np.ndarray:
    return decode_file(speech_16k).samples


@pytest.fixture(scope="module")
def formats(tmp_path_factory: pytest.TempPathFactory, speech_22k: Path, clean: np.ndarray) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("formats")
    return {
        "wav 16 kHz": sox(speech_22k, d / "16k.wav", rate=16000),
        "wav 22.05 kHz": speech_22k,
        "wav 44.1 kHz stereo": sox(speech_22k, d / "44k-stereo.wav", rate=44100, channels=2),
        "wav 48 kHz 24-bit": sox(speech_22k, d / "48k-24bit.wav", "gain", "-1", rate=48000),
        "flac": encode(clean, d / "speech.flac", "flac", "flac"),
        "ogg opus": encode(clean, d / "speech.ogg", "libopus", "ogg", rate=48000),
        "mp3": encode(clean, d / "speech.mp3", "libmp3lame", "mp3", rate=44100),
    }


# ---------------------------------------------------------------- good files
@pytest.mark.parametrize(
    "name",
    ["wav 16 kHz", "wav 22.05 kHz", "wav 44.1 kHz stereo", "wav 48 kHz 24-bit", "flac", "ogg opus", "mp3"],
)
def test_every_format_and_rate_decodes_to_16k_mono(
    name: str, formats: dict[str, Path], clean: np.ndarray
) -> None:
    decoded = decode_file(formats[name])
    samples = decoded.samples
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(decoded.duration - len(clean) / SAMPLE_RATE) < 0.12
    assert float(np.abs(samples).max()) <= 1.0
    assert decoded.warnings == []
    # the same sound: the loudness envelope matches the 16 kHz original
    n = min(len(samples), len(clean)) // 1600 * 1600
    a, b = (np.abs(x[:n]).reshape(-1, 1600).mean(axis=1) for x in (samples, clean))
    assert np.corrcoef(a, b)[0, 1] > 0.9


@pytest.mark.parametrize("name", ["wav 22.05 kHz", "wav 44.1 kHz stereo", "ogg opus", "mp3"])
def test_offline_transcript_of_each_format(
    name: str, formats: dict[str, Path], transcriber: Transcriber
) -> None:
    transcript = transcriber.transcribe(decode_file(formats[name]).samples)
    assert wer(TEXT, transcript.text) <= 0.15, transcript.text
    assert transcript.segments and transcript.words
    assert 0 < transcript.rtf < 5


def test_iter_file_yields_chunks_of_the_asked_size(formats: dict[str, Path]) -> None:
    chunks = list(audio.iter_file(formats["flac"], chunk_seconds=0.5))
    assert {len(c) for c in chunks[:-1]} == {8000}
    assert 0 < len(chunks[-1]) <= 8000


# ---------------------------------------------------------------- bad files
def test_missing_empty_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        decode_file(tmp_path / "nope.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(InvalidInput, match=r"empty \(0 bytes\)"):
        decode_file(tmp_path / "empty.wav")
    with pytest.raises(InvalidInput, match="is a folder"):
        decode_file(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"hello, this is a text file\n", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, bytes(4096)],
    ids=["text", "png", "zeros"],
)
def test_unsupported_formats_say_how_to_convert(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "thing.wav"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match="WAV, FLAC, OGG or MP3"):
        decode_file(path)


def test_a_header_without_audio_is_refused(tmp_path: Path, formats: dict[str, Path]) -> None:
    path = tmp_path / "head.wav"
    path.write_bytes(formats["wav 16 kHz"].read_bytes()[:30])
    with pytest.raises(InvalidInput, match="corrupt"):
        decode_file(path)


@pytest.mark.parametrize("name", ["wav 16 kHz", "flac", "mp3"])
def test_truncated_files_keep_what_is_there_with_a_warning(
    name: str, formats: dict[str, Path], tmp_path: Path
) -> None:
    data = formats[name].read_bytes()
    path = tmp_path / f"cut{formats[name].suffix}"
    path.write_bytes(data[: len(data) // 2])
    decoded = decode_file(path)
    full = decode_file(formats[name]).duration
    assert 0.3 * full < decoded.duration < 0.7 * full
    assert any("truncated" in w for w in decoded.warnings), decoded.warnings


def test_corrupt_middle_is_skipped_with_a_warning(formats: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(formats["flac"].read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = np.random.default_rng(0).integers(0, 256, third, dtype=np.uint8).tobytes()
    path = tmp_path / "damaged.flac"
    path.write_bytes(bytes(data))
    decoded = decode_file(path)
    assert decoded.duration > 1.0
    assert decoded.warnings and "corrupt" in " ".join(decoded.warnings)


# ---------------------------------------------------------------- PCM frames
def test_pcm16_frames() -> None:
    pcm = (np.array([0, 16384, -32768, 32767], dtype="<i2")).tobytes()
    assert audio.pcm16_to_float(pcm).tolist() == pytest.approx([0.0, 0.5, -1.0, 32767 / 32768])
    with pytest.raises(InvalidInput, match="even number of bytes"):
        audio.pcm16_to_float(b"\x00\x01\x02")


@pytest.mark.parametrize("rate", [0, 100, 10**7, 16000.5, True])
def test_sample_rates_out_of_range_are_refused(rate: Any) -> None:
    with pytest.raises(InvalidInput, match="sample rate"):
        audio.check_rate(rate)


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_resampler_keeps_duration_and_pitch(rate: int) -> None:
    t = np.arange(rate * 2) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    resample = audio.Resampler(rate)
    out = np.concatenate([resample(tone[i : i + rate // 50]) for i in range(0, len(tone), rate // 50)])
    assert abs(len(out) - 2 * SAMPLE_RATE) < 0.02 * SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(out[4000:20000]))
    assert np.argmax(spectrum) * SAMPLE_RATE / 16000 == pytest.approx(440, abs=2)


# ---------------------------------------------------------------- the microphone, at the edge
def test_no_sounddevice_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(MicrophoneUnavailable, match=r"pip install 'ambient\[mic\]'"):
        audio.Microphone().open()


def test_no_portaudio_library(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoPortAudio(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name == "sounddevice":
                raise OSError("PortAudio library not found")
            return None

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(MicrophoneUnavailable, match="libportaudio2"):
        audio.import_sounddevice()


class FakePortAudioError(Exception):
    pass


def fake_sounddevice(
    *, devices: bool = True, rates: tuple[int, ...] = (16000,), reads_before_unplug: int | None = None
) -> types.ModuleType:
    """A stand-in for the sounddevice module: the edge where PortAudio would be."""
    module = types.ModuleType("sounddevice")

    class InputStream:
        def __init__(self, samplerate: int, channels: int, dtype: str, blocksize: int, device: Any) -> None:
            if not devices:
                raise FakePortAudioError("Error querying device -1")
            if samplerate not in rates:
                raise FakePortAudioError("Invalid sample rate [PaErrorCode -9997]")
            self.samplerate, self.reads, self.closed = samplerate, 0, False

        def start(self) -> None:
            pass

        def read(self, frames: int) -> tuple[np.ndarray, bool]:
            self.reads += 1
            if reads_before_unplug is not None and self.reads > reads_before_unplug:
                raise FakePortAudioError("Stream is stopped: device unavailable [PaErrorCode -9985]")
            return np.full((frames, 1), 0.1, dtype=np.float32), False

        def stop(self) -> None:
            raise FakePortAudioError("device gone")  # closing a vanished device may fail too

        def close(self) -> None:
            self.closed = True

    def query_devices(device: Any, kind: str) -> dict[str, Any]:
        if not devices:
            raise FakePortAudioError("Error querying device -1")
        return {"default_samplerate": float(rates[0])}

    module.PortAudioError = FakePortAudioError  # type: ignore[attr-defined]
    module.InputStream = InputStream  # type: ignore[attr-defined]
    module.query_devices = query_devices  # type: ignore[attr-defined]
    return module


def test_no_input_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(devices=False))
    with pytest.raises(MicrophoneUnavailable, match="plug in a microphone"):
        audio.Microphone().open()


def test_a_device_without_16k_is_resampled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(rates=(48000,)))
    mic = audio.Microphone(block_seconds=0.1).open()
    got = np.concatenate([mic.read() for _ in range(10)])
    assert abs(len(got) - SAMPLE_RATE) < 0.02 * SAMPLE_RATE  # one second, at 16 kHz
    mic.close()


def test_a_microphone_that_disappears(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(reads_before_unplug=3))
    mic = audio.Microphone().open()
    assert [len(mic.read()) for _ in range(3)] == [1600] * 3
    with pytest.raises(MicrophoneUnavailable, match="went away.*transcript so far is kept"):
        mic.read()
    mic.close()  # a failing stop() is not an error
    with pytest.raises(MicrophoneUnavailable, match="closed"):
        mic.read()
