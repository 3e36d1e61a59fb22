"""``[sources.speech]``: every option is checked as the table is read, and by validate() in code."""

from __future__ import annotations

from pathlib import Path

import pytest

from ambient import places
from ambient.config import load_config
from ambient.errors import ConfigError
from integrations.speech.options import SpeechOptions


def _read(tmp_path: Path, toml: str) -> SpeechOptions:
    (tmp_path / "ambient.toml").write_text(f"[sources.speech]\n{toml}\n")
    options: SpeechOptions = places.options(
        load_config(env={"AMBIENT_HOME": str(tmp_path)}), places.load("speech")
    )
    return options


@pytest.mark.parametrize(
    ("toml", "line"),
    [
        ("pause_seconds = 0", "sources.speech.pause_seconds must be above 0, got 0.0"),
        ('device = "tpu"', "sources.speech.device must be auto, cpu or cuda, got 'tpu'"),
        (
            'compute_type = "int3"',
            "sources.speech.compute_type must be auto, default, int8, int8_float32, "
            "int8_float16, int8_bfloat16, int16, float16, bfloat16 or float32, got 'int3'",
        ),
        ("vad_threshold = 1", "sources.speech.vad_threshold must be above 0 and below 1, got 1.0"),
        ("stream_window_seconds = 31", "sources.speech.stream_window_seconds must be 1..30, got 31.0"),
        (
            "buffer_seconds = 40",
            "sources.speech.buffer_seconds must be above 0 and at most 30 "
            "(and at least 4 × step_seconds), got 40.0",
        ),
        ("beam_size = 0", "sources.speech.beam_size must be 1 or more, got 0"),
        ("threads = -1", "sources.speech.threads must be 0 or more (0 = CTranslate2's default), got -1"),
        ("min_logprob = 0.5", "sources.speech.min_logprob must be at most 0 (a log-probability), got 0.5"),
        (
            "mic_retry_seconds = -1",
            "sources.speech.mic_retry_seconds must be 0 or more (0 = never), got -1.0",
        ),
        ("no_speech_threshold = 1.2", "sources.speech.no_speech_threshold must be 0..1, got 1.2"),
    ],
)
def test_a_bad_value_is_refused_in_one_line(tmp_path: Path, toml: str, line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _read(tmp_path, toml)
    assert str(caught.value) == f"{line}: fix it in ambient.toml"


def test_edge_values_are_accepted(tmp_path: Path) -> None:
    options = _read(
        tmp_path,
        'device = "cuda"\ncompute_type = "int8_float16"\nstream_window_seconds = 30\nbuffer_seconds = 30\n'
        'commit_margin_seconds = 0\nmic_retry_seconds = 0\nlogprob_threshold = 0\nlanguage = ""',
    )
    assert (options.device, options.compute_type, options.buffer_seconds) == ("cuda", "int8_float16", 30)
    assert options.validate() is options


def test_what_depends_on_two_options_is_checked_by_validate() -> None:
    with pytest.raises(ConfigError, match=r"buffer_seconds must be between 4 × step_seconds and 30"):
        SpeechOptions(step_seconds=2.0, buffer_seconds=6.0).validate()
    with pytest.raises(ConfigError, match=r"^sources.speech.idle_seconds must be above 0, got -1"):
        SpeechOptions(idle_seconds=-1).validate()  # made in code: the same rules
