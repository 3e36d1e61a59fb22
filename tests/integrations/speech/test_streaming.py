"""The streaming policy: LocalAgreement, VAD gating, the bounded buffer, pauses (real speech, real model)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from integrations.speech.audio import Samples, decode_file
from integrations.speech.bench import wer
from integrations.speech.options import SAMPLE_RATE, SpeechOptions
from integrations.speech.streaming import (
    StreamingPolicy,
    VoiceActivity,
    agreed_prefix,
    drop_repeated,
    normalise,
)
from integrations.speech.transcriber import Transcriber, Word
from tests.integrations.speech.conftest import Streamed, stream
from tests.integrations.speech.helpers import SENTENCES, TEXT, speak, synth


def w(text: str, start: float = 0.0, end: float = 0.0) -> Word:
    return Word(start, end, text)


# ---------------------------------------------------------------- pure helpers
def test_normalise_ignores_case_and_punctuation() -> None:
    assert normalise(" House.") == normalise("house") == "house"
    assert normalise(" don't,") == "don't"


def test_agreed_prefix_is_the_longest_common_head() -> None:
    a = [w(" The"), w(" quick"), w(" brown")]
    assert agreed_prefix(a, [w(" the"), w(" quick,"), w(" round")]) == 2
    assert agreed_prefix([], a) == 0
    assert agreed_prefix(a, a[:1]) == 1


def test_drop_repeated_removes_a_head_that_repeats_the_committed_tail() -> None:
    committed = [w(" a"), w(" small"), w(" garden")]
    assert [x.text for x in drop_repeated(committed, [w(" garden"), w(" behind")])] == [" behind"]
    assert [x.text for x in drop_repeated(committed, [w(" small"), w(" garden"), w(" x")])] == [" x"]
    assert [x.text for x in drop_repeated(committed, [w(" behind")])] == [" behind"]


# ---------------------------------------------------------------- VAD
def test_voice_activity_is_the_same_pushed_in_any_pieces(speech_16k: Path) -> None:
    samples = decode_file(speech_16k).samples[: 5 * SAMPLE_RATE]
    whole, pieces = VoiceActivity(), VoiceActivity()
    whole.push(samples)
    for size in (300, 1000, 7, 5000, 512) * 40:
        if len(samples) == 0:
            break
        pieces.push(samples[:size])
        samples = samples[size:]
    assert whole.regions(0.3, 0.0) == pieces.regions(0.3, 0.0)
    assert whole.last_speech_end == pieces.last_speech_end


def test_voice_activity_finds_speech_and_not_silence(speech_16k: Path, audio_dir: Path) -> None:
    vad = VoiceActivity()
    vad.push(decode_file(synth(audio_dir / "vad-silence.wav", 2.0, "silence")).samples)
    assert vad.regions(0.3, 0.0) == [] and vad.last_speech_end is None
    vad.push(decode_file(speech_16k).samples)
    regions = vad.regions(0.3, 0.0)
    assert len(regions) == len(SENTENCES)  # the pauses between sentences split it
    assert regions[0][0] == pytest.approx(2.0, abs=0.3)


# ---------------------------------------------------------------- the real model
def test_streaming_transcript_matches_the_spoken_text(streamed_16k: Streamed) -> None:
    assert wer(TEXT, streamed_16k.text) <= 0.15, streamed_16k.text


def test_streaming_and_offline_agree(
    streamed_16k: Streamed, transcriber: Transcriber, speech_16k: Path
) -> None:
    offline = transcriber.transcribe(decode_file(speech_16k).samples)
    assert wer(TEXT, offline.text) <= 0.15, offline.text
    assert wer(offline.text, streamed_16k.text) <= 0.1, (offline.text, streamed_16k.text)


def test_committed_segments_are_in_order_and_a_pause_follows_each_sentence(streamed_16k: Streamed) -> None:
    segments = streamed_16k.segments
    assert all(a.end <= b.start + 0.05 for a, b in itertools.pairwise(segments))
    assert streamed_16k.pauses == len(SENTENCES)  # two pauses between sentences, one at the end


def test_the_buffer_stays_short(streamed_16k: Streamed, options: SpeechOptions) -> None:
    # trimmed at each committed sentence end and at pauses: never near the bound
    assert streamed_16k.policy.max_buffer <= min(options.buffer_seconds, 8.0)


def test_other_rates_and_stereo_stream_as_well(
    transcriber: Transcriber, options: SpeechOptions, speech_44k_stereo: Path
) -> None:
    decoded = decode_file(speech_44k_stereo)
    assert (decoded.report.source_rate, decoded.report.channels) == (44100, 2)
    policy = StreamingPolicy(transcriber, options)
    segments, _ = stream(policy, decoded.samples, chunk=0.1)
    assert wer(TEXT, "".join(s.text for s in segments)) <= 0.15, policy.text


@pytest.mark.parametrize("kind", ["silence", "whitenoise", "pinknoise", "brownnoise"])
def test_silence_and_noise_commit_nothing(
    kind: str, transcriber: Transcriber, options: SpeechOptions, audio_dir: Path
) -> None:
    samples = decode_file(synth(audio_dir / f"{kind}.wav", 6.0, kind)).samples
    policy = StreamingPolicy(transcriber, options)
    segments, pauses = stream(policy, samples, chunk=0.5)
    assert segments == [] and pauses == 0
    assert transcriber.transcribe(samples).text == ""


def test_finish_commits_the_tentative_tail(
    transcriber: Transcriber, options: SpeechOptions, audio_dir: Path
) -> None:
    samples = decode_file(speak(SENTENCES[:1], audio_dir / "one.wav")).samples
    policy = StreamingPolicy(transcriber, options)
    for i in range(0, len(samples), 8000):  # no trailing silence: the last words are still tentative
        policy.feed(samples[i : i + 8000])
    update = policy.finish()
    assert update.pause and update.tentative is None
    assert wer(SENTENCES[0], policy.text) <= 0.15, policy.text


# ---------------------------------------------------------------- the bound, with a scripted recognizer
class Unsure:
    """Hears a different word every 0.4 s on every pass: two passes never agree."""

    def __init__(self) -> None:
        self.calls = 0
        self.longest = 0.0

    def recognize(self, audio: Samples, prompt: str = "") -> list[Word]:
        self.calls += 1
        seconds = len(audio) / SAMPLE_RATE
        self.longest = max(self.longest, seconds)
        return [
            w(f" w{self.calls}x{i}", t, t + 0.3) for i, t in enumerate(np.arange(0.0, seconds - 0.3, 0.4))
        ]


def test_the_buffer_is_bounded_when_passes_never_agree(audio_dir: Path) -> None:
    talk = decode_file(speak(SENTENCES * 3, audio_dir / "talk.wav", pause_ms=0)).samples
    options = SpeechOptions(buffer_seconds=6.0)
    recognizer = Unsure()
    policy = StreamingPolicy(recognizer, options)
    committed, _ = stream(policy, talk, chunk=0.25)
    assert recognizer.longest <= options.buffer_seconds + 0.01
    assert policy.max_buffer <= options.buffer_seconds + 0.01
    assert committed, "without agreement the older half is committed when the buffer is full"
