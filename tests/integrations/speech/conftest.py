"""Fixtures for the speech integration: real audio (espeak-ng, sox), the real tiny.en model, a small Hub.

The Whisper model and the audio files are made once per test session; each is
cheap to share because nothing writes to them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ambient.app import App
from ambient.config import load_config
from ambient.offers import Overrides
from integrations.speech.audio import decode_file
from integrations.speech.options import SpeechOptions
from integrations.speech.streaming import StreamingPolicy
from integrations.speech.transcriber import Segment, Transcriber
from tests.fakes import FakeSampler
from tests.hub import TestHub
from tests.integrations.speech.helpers import SENTENCES, sox, speak

T = TypeVar("T")


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[TestHub]:
    config = load_config(env={"AMBIENT_HOME": str(tmp_path / "home")}).replace(memory__enabled=False)
    app = App(config, sampler=FakeSampler())
    yield TestHub(app, defaults=Overrides(n=2, max_tokens=4))
    app.close()


@pytest.fixture(scope="session")
def options() -> SpeechOptions:
    return SpeechOptions()


@pytest.fixture(scope="session")
def transcriber(options: SpeechOptions) -> Iterator[Transcriber]:
    t = Transcriber(options)
    t.model  # noqa: B018 - load once for every test
    yield t
    t.close()


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech-audio")


@pytest.fixture(scope="session")
def speech_22k(audio_dir: Path) -> Path:
    """The three sentences with pauses, as espeak-ng writes them (22.05 kHz mono)."""
    return speak(SENTENCES, audio_dir / "speech-22k.wav")


@pytest.fixture(scope="session")
def speech_16k(audio_dir: Path, speech_22k: Path) -> Path:
    return sox(speech_22k, audio_dir / "speech-16k.wav", rate=16000)


@pytest.fixture(scope="session")
def speech_44k_stereo(audio_dir: Path, speech_22k: Path) -> Path:
    return sox(speech_22k, audio_dir / "speech-44k-stereo.wav", rate=44100, channels=2)


def stream(policy: StreamingPolicy, samples: Any, chunk: float = 0.25) -> tuple[list[Segment], int]:
    """Feed ``samples`` in chunks, then finish; the committed segments and the number of pauses."""
    step = int(chunk * 16000)
    committed: list[Segment] = []
    pauses = 0
    for i in range(0, len(samples), step):
        update = policy.feed(samples[i : i + step])
        committed += update.committed
        pauses += len(update.pauses)
    update = policy.finish()
    return committed + list(update.committed), pauses + len(update.pauses)


@dataclasses.dataclass
class Streamed:
    policy: StreamingPolicy
    segments: list[Segment]
    pauses: int

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()


@pytest.fixture(scope="session")
def streamed_16k(transcriber: Transcriber, options: SpeechOptions, speech_16k: Path) -> Streamed:
    """The 16 kHz clip streamed once through the policy (shared: it costs many Whisper passes)."""
    policy = StreamingPolicy(transcriber, options)
    return Streamed(policy, *stream(policy, decode_file(speech_16k).samples))
