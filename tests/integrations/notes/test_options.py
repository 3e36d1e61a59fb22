"""``[sources.notes]``: every option is checked as the table is read, and when options are made in code."""

from __future__ import annotations

from pathlib import Path

import pytest

from ambient import places
from ambient.config import load_config
from ambient.errors import ConfigError
from integrations.notes.options import DEFAULT_GLOBS, NotesOptions


def _read(tmp_path: Path, toml: str) -> NotesOptions:
    (tmp_path / "ambient.toml").write_text(f"[sources.notes]\nfolders = []\n{toml}\n")
    options: NotesOptions = places.options(
        load_config(env={"AMBIENT_HOME": str(tmp_path)}), places.load("notes")
    )
    return options


@pytest.mark.parametrize(
    ("toml", "line"),
    [
        ("quiet_ms = -1", "sources.notes.quiet_ms must be 0..60000 (milliseconds), got -1"),
        ("quiet_ms = 60001", "sources.notes.quiet_ms must be 0..60000 (milliseconds), got 60001"),
        ("max_bytes = 0", "sources.notes.max_bytes must be 1 or more (bytes), got 0"),
        ("n = 0", "sources.notes.n must be 1..64, got 0"),
        ("n = 65", "sources.notes.n must be 1..64, got 65"),
        ("max_tokens = 4097", "sources.notes.max_tokens must be 1..4096, got 4097"),
        ("temperature = -0.5", "sources.notes.temperature must be 0..5, got -0.5"),
        ("globs = []", 'sources.notes.globs must be at least one pattern, e.g. ["*.md"], got ()'),
    ],
)
def test_a_bad_value_is_refused_in_one_line(tmp_path: Path, toml: str, line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _read(tmp_path, toml)
    assert str(caught.value) == f"{line}: fix it in ambient.toml"


def test_edge_values_are_accepted(tmp_path: Path) -> None:
    options = _read(tmp_path, "quiet_ms = 0\nmax_bytes = 1\nn = 64\nmax_tokens = 1\ntemperature = 0")
    assert (options.quiet_ms, options.max_bytes, options.n, options.max_tokens) == (0, 1, 64, 1)
    assert options.temperature == 0 and options.globs == DEFAULT_GLOBS
    assert _read(tmp_path, "quiet_ms = 60000\nignore = []").ignore == ()
    assert NotesOptions(n=None, max_tokens=None, temperature=None).n is None  # None: the sampling defaults


def test_options_made_in_code_are_checked_too() -> None:
    with pytest.raises(
        ConfigError, match=r"^sources.notes.quiet_ms must be 0..60000 \(milliseconds\), got -5"
    ):
        NotesOptions(quiet_ms=-5)
