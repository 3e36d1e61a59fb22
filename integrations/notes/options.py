"""``[sources.notes]``: which folders to watch, what counts as a note, and how to offer."""

from __future__ import annotations

import dataclasses

from ambient.errors import ConfigError

DEFAULT_GLOBS = ("*.md", "*.txt")
# Matched (fnmatch) against every part of a note's path relative to its folder, and against
# that whole relative path: hidden files and folders (.git/, .obsidian/), editor backups and
# swap files, and temporary files editors save through.
DEFAULT_IGNORE = (".*", "*~", "*.swp", "*.swx", "*.tmp", "#*#", "4913", "node_modules", "__pycache__")


@dataclasses.dataclass(frozen=True)
class NotesOptions:
    """Options of the notes source, parsed from ``[sources.notes]`` with ``parse_section``."""

    folders: tuple[str, ...] = ()  # folders to watch (recursively); each must exist at start
    globs: tuple[str, ...] = DEFAULT_GLOBS  # what counts as a note (matched on the file name)
    ignore: tuple[str, ...] = DEFAULT_IGNORE  # never notes (see DEFAULT_IGNORE)
    max_bytes: int = 1_000_000  # larger files are skipped with one log line
    quiet_ms: int = 250  # a save is reported once the note has been quiet this long
    n: int | None = None  # continuations per offer (default: sampling.n)
    max_tokens: int | None = None  # tokens per continuation (default: sampling.max_tokens)
    temperature: float | None = None  # default: sampling.temperature
    sidecars: bool = True  # write AMBIENT_HOME/sidecars/.../NOTE.offers.md after each offer
    offer_on_first_sight: bool = True  # offer at the end of a note the first time it is saved

    def __post_init__(self) -> None:
        if not self.globs:
            raise ConfigError('sources.notes.globs is empty: give at least one pattern, e.g. ["*.md"]')
        if self.max_bytes < 1:
            raise ConfigError(f"sources.notes.max_bytes must be 1 or more, got {self.max_bytes}")
        if not 0 <= self.quiet_ms <= 60_000:
            raise ConfigError(f"sources.notes.quiet_ms must be between 0 and 60000, got {self.quiet_ms}")
        if self.n is not None and self.n < 1:
            raise ConfigError(f"sources.notes.n must be 1 or more, got {self.n}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"sources.notes.max_tokens must be 1 or more, got {self.max_tokens}")
        if self.temperature is not None and self.temperature < 0:
            raise ConfigError(f"sources.notes.temperature must be 0 or more, got {self.temperature}")

    @property
    def quiet_s(self) -> float:
        return self.quiet_ms / 1000
