"""``ambient transcribe AUDIO``: the speech integration's transcript of an audio file.

Offline by default (the whole file at once); with ``--stream`` the file goes
through the streaming policy the daemon uses for live speech, and each segment
is printed with its timestamps as it becomes final.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

from ambient import places
from ambient.app import App
from integrations.speech.audio import DecodedAudio, decode_file
from integrations.speech.options import SAMPLE_RATE, SpeechOptions
from integrations.speech.streaming import StreamingPolicy, StreamUpdate
from integrations.speech.transcriber import Segment, Transcriber, Transcript

CHUNK_SECONDS = 0.1  # a microphone's block


def register(sub: Any) -> None:
    p = sub.add_parser(
        "transcribe",
        help="transcribe an audio file (offline, or as live speech with --stream)",
        description="Transcribe an audio file (any format FFmpeg reads, any rate, mono or stereo) with the "
        "speech model of [sources.speech] (default: Whisper tiny.en). Nothing is stored.",
    )
    p.add_argument("audio", help="the audio file")
    p.add_argument("--stream", action="store_true", help="stream it: print segments as they are committed")
    p.add_argument("--realtime", action="store_true", help="with --stream: at the speed it was spoken")
    p.add_argument(
        "--model", default=None, help="a CTranslate2 Whisper folder (default: sources.speech.model)"
    )
    p.add_argument("--json", action="store_true", help='print {"text", "segments", "duration", "rtf"}')
    p.set_defaults(func=cmd_transcribe)


def speech_options(app: App, model: str | None = None) -> SpeechOptions:
    options: SpeechOptions = places.options(app.config, places.load("speech"))
    if model:
        options = dataclasses.replace(options, model=model)
    return options.validate()


def cmd_transcribe(args: argparse.Namespace, app: App) -> int:
    options = speech_options(app, args.model)
    transcriber = Transcriber(options)
    decoded = decode_file(args.audio)
    for warning in decoded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        if args.stream:
            transcript = stream_file(
                transcriber, decoded, args.realtime, None if args.json else _print_segment
            )
        else:
            transcript = transcriber.transcribe(decoded.samples)
    finally:
        transcriber.close()
    if args.json:
        print(json.dumps(transcript.as_dict(), ensure_ascii=False, indent=2))
    elif not args.stream:
        print(transcript.text)
    return 0


def stream_file(
    transcriber: Transcriber,
    decoded: DecodedAudio,
    realtime: bool = False,
    on_segment: Any = None,
) -> Transcript:
    """Feed the file to the streaming policy in 0.1 s blocks; the committed segments as a Transcript."""
    policy = StreamingPolicy(transcriber, transcriber.options)
    samples, step = decoded.samples, int(CHUNK_SECONDS * SAMPLE_RATE)
    segments: list[Segment] = []
    compute = 0.0
    begun = time.monotonic()
    for start in range(0, len(samples), step):
        if realtime:
            time.sleep(max(0.0, begun + start / SAMPLE_RATE - time.monotonic()))
        tick = time.perf_counter()
        update = policy.feed(samples[start : start + step])
        compute += time.perf_counter() - tick
        _collect(update, segments, on_segment)
    tick = time.perf_counter()
    _collect(policy.finish(), segments, on_segment)
    compute += time.perf_counter() - tick
    return Transcript(tuple(segments), tuple(policy.committed), decoded.duration, compute)


def _collect(update: StreamUpdate, segments: list[Segment], on_segment: Any) -> None:
    for segment in update.committed:
        segments.append(segment)
        if on_segment is not None:
            on_segment(segment)


def _print_segment(segment: Segment) -> None:
    print(f"[{segment.start:7.2f} → {segment.end:7.2f}] {segment.text.strip()}", flush=True)
