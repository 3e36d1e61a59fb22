"""``ambient transcribe`` and the speech benchmark's bookkeeping."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from ambient import cli
from integrations.speech import bench
from integrations.speech.audio import Samples, decode_file
from integrations.speech.bench import wer
from integrations.speech.options import SAMPLE_RATE, SpeechOptions
from integrations.speech.streaming import StreamingPolicy
from integrations.speech.transcriber import Word
from tests.integrations.speech.helpers import TEXT


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``ambient ARGS`` through the CLI (the speech place adds ``transcribe``)."""
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path))

    def go(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


def test_transcribe_prints_the_transcript(run: Any, speech_16k: Path) -> None:
    code, out, _ = run("transcribe", str(speech_16k))
    assert code == 0 and wer(TEXT, out) <= 0.15, out


def test_transcribe_json(run: Any, speech_44k_stereo: Path) -> None:
    code, out, _ = run("transcribe", str(speech_44k_stereo), "--json")
    data = json.loads(out)
    assert code == 0 and set(data) == {"text", "segments", "duration", "rtf"}
    assert wer(TEXT, data["text"]) <= 0.15
    assert all(set(s) == {"start", "end", "text"} for s in data["segments"])
    assert data["duration"] == pytest.approx(data["segments"][-1]["end"], abs=1.5)


def test_transcribe_stream_prints_timestamped_segments_as_they_commit(run: Any, speech_16k: Path) -> None:
    code, out, _ = run("transcribe", str(speech_16k), "--stream")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) > 3
    starts = [float(line[1:8]) for line in lines]
    assert starts == sorted(starts)
    assert wer(TEXT, " ".join(line.split("] ", 1)[1] for line in lines)) <= 0.15, out


def test_transcribe_bad_input(run: Any, tmp_path: Path) -> None:
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"RIFF")
    code, _, err = run("transcribe", str(bad))
    assert code == 2 and "WAV, FLAC, OGG or MP3" in err
    code, _, err = run("transcribe", str(bad), "--model", "tiny.en")
    assert code == 2 and "would need a download" in err


# ---------------------------------------------------------------- the benchmark's clock
class Slow:
    """Hears one word per second of audio (ending at k + 0.6 s); each pass takes 0.2 s."""

    def __init__(self, policy_start: Any) -> None:
        self.start = policy_start

    def recognize(self, audio: Samples, prompt: str = "") -> list[Word]:
        time.sleep(0.2)
        offset = self.start()
        end = offset + len(audio) / SAMPLE_RATE
        return [
            Word(k + 0.2 - offset, k + 0.6 - offset, f" w{k}")
            for k in range(int(offset), int(end))
            if offset <= k + 0.2 and k + 0.6 <= end
        ]


def test_simulated_live_clock_counts_compute(speech_16k: Path) -> None:
    samples = decode_file(speech_16k).samples[: 4 * SAMPLE_RATE]
    holder: list[StreamingPolicy] = []
    policy = StreamingPolicy(Slow(lambda: holder[0].buffer_start), SpeechOptions())
    holder.append(policy)
    streamed = bench.simulate_live(policy, samples)
    assert streamed.passes >= 3 and streamed.compute >= 0.2 * streamed.passes
    assert len(streamed.commit_times) == len(streamed.words)
    truth = tuple(Word(k + 0.2, k + 0.6, f" w{k}") for k in range(4))
    assert [w.text for w in streamed.words][:3] == [" w0", " w1", " w2"]
    latencies = bench.commit_latencies(streamed, truth)
    assert len(latencies) == len(streamed.words)
    assert min(latencies) >= 0.2  # final only after a pass (0.2 s of compute) confirmed it


def test_markdown_has_the_table() -> None:
    s = {
        "window_s": 10.0,
        "rtf": 0.2,
        "wer": 0.03,
        "wer_vs_offline": 0.0,
        "passes": 40,
        "max_buffer_s": 5.1,
        "latency_p50_s": 1.1,
        "latency_p95_s": 1.9,
        "latency_max_s": 2.3,
        "words": 60,
    }
    result = {
        "model": "/m/model",
        "device": "cpu (int8)",
        "threads": 2,
        "cpus": 2,
        "load_average": 0.5,
        "audio_seconds": 30.0,
        "reference_words": 60,
        "offline": {"rtf": 0.05, "wer": 0.0, "seconds": 1.5},
        "streaming": s,
        "full_window": {**s, "window_s": 30.0},
        "target_p50_s": 2.0,
    }
    markdown = bench.to_markdown(result)
    assert "| streaming (default) | 10 s | 0.2 |" in markdown and "**met**" in markdown
    assert bench.wer("a b c d", "a x c") == pytest.approx(0.5)
