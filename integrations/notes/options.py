"""``[sources.notes]``: which folders to watch, what counts as a note, and how to offer."""

from __future__ import annotations

import dataclasses
from dataclasses import field

from ambient import settings
from ambient.config import MAX_TEMPERATURE, MAX_TOKENS
from ambient.sampling.base import MAX_N
from ambient.settings import free, nonempty, within

DEFAULT_GLOBS = ("*.md", "*.txt")
# Matched (fnmatch) against every part of a note's path relative to its folder, and against
# that whole relative path: hidden files and folders (.git/, .obsidian/), editor backups and
# swap files, and temporary files editors save through.
DEFAULT_IGNORE = (".*", "*~", "*.swp", "*.swx", "*.tmp", "#*#", "4913", "node_modules", "__pycache__")


@dataclasses.dataclass(frozen=True)
class NotesOptions:
    """Options of the notes source, parsed from ``[sources.notes]`` with ``parse_section``.

    What each option allows is declared next to it (:mod:`ambient.settings`) and checked as the
    options are made, from the table or in code.
    """

    folders: tuple[str, ...] = field(  # folders to watch (recursively)
        default=(), metadata=free("folders, each checked to exist when the place starts")
    )
    globs: tuple[str, ...] = field(  # what counts as a note (matched on the file name)
        default=DEFAULT_GLOBS, metadata=nonempty('at least one pattern, e.g. ["*.md"]')
    )
    ignore: tuple[str, ...] = field(  # never notes (see DEFAULT_IGNORE)
        default=DEFAULT_IGNORE, metadata=free("any fnmatch patterns; empty ignores nothing")
    )
    max_bytes: int = field(  # larger files are skipped with one log line
        default=1_000_000, metadata=within(1, note="bytes")
    )
    quiet_ms: int = field(  # a save is reported once the note has been quiet this long
        default=250, metadata=within(0, 60_000, note="milliseconds")
    )
    n: int | None = field(default=None, metadata=within(1, MAX_N))  # continuations per offer (sampling.n)
    max_tokens: int | None = field(  # tokens per continuation (default: sampling.max_tokens)
        default=None, metadata=within(1, MAX_TOKENS)
    )
    temperature: float | None = field(  # default: sampling.temperature
        default=None, metadata=within(0, MAX_TEMPERATURE)
    )
    sidecars: bool = True  # write AMBIENT_HOME/sidecars/.../NOTE.offers.md after each offer
    offer_on_first_sight: bool = True  # offer at the end of a note the first time it is saved

    def __post_init__(self) -> None:
        settings.check(self, "sources.notes")

    @property
    def quiet_s(self) -> float:
        return self.quiet_ms / 1000
