"""Reading a note safely, and finding where the person was writing.

:func:`read_note` refuses, with :class:`NoteUnreadable` and a one-line reason,
what is not a note: a link whose real target is outside the watched folders
(when it is given them), a file over the size limit, binary data (NUL bytes),
invalid UTF-8, something that is not a regular file (a FIFO is never waited
on), a symlink loop, a file deleted or renamed while being read, or one it has
no permission to read. Callers skip such a file with one log line. Links are
resolved first and the real file is opened without following a link, so a
link swapped in at the last moment is refused rather than followed.

:func:`find_change` compares two versions of a note: the region of the new
text that differs from the old one, found by the longest common prefix and
suffix (compared in C-speed slices, so a megabyte note costs milliseconds). Its
end is the point where the person was writing: offers continue from there.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from ambient.errors import InvalidInput

SLIDE_LIMIT = 256  # how far an ambiguous insertion may be moved to end at a word boundary


class NoteUnreadable(InvalidInput):
    """A file that cannot be taken as a note; ``str()`` says why and what to do."""

    def __init__(self, path: Path | str, reason: str, *, vanished: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.vanished = vanished


@dataclasses.dataclass(frozen=True)
class NoteText:
    """One version of a note as read from disk."""

    path: Path
    text: str
    sha256: str
    mode: int  # permission bits (stat.S_IMODE)
    mtime_ns: int
    size: int


@dataclasses.dataclass(frozen=True)
class Change:
    """Where two versions differ: ``new[start:end]`` replaced ``old[start:old_end]``."""

    start: int
    end: int  # in the new text: the point where the person was writing
    old_end: int

    @property
    def point(self) -> int:
        return self.end


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _open_note(path: Path) -> BinaryIO:
    """Open for reading without blocking (a FIFO named like a note must not hang the reader), and
    without following a link in the last component (``path`` is already the real path)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    return os.fdopen(fd, "rb")


def within(real: Path, folders: Sequence[Path]) -> bool:
    """Whether the real path ``real`` lies inside one of ``folders`` (real paths themselves)."""
    return any(real != f and real.is_relative_to(f) for f in folders)


def outside_reason(real: Path) -> str:
    return (
        f"it links to {real}, outside the watched folders: a link is followed only to a file inside "
        "sources.notes.folders (move the file into one, or watch its folder)"
    )


def _os_reason(exc: OSError) -> tuple[str, bool]:
    """A one-line reason for an OSError met while reading, and whether the file is simply gone."""
    if isinstance(exc, FileNotFoundError):
        return "it was deleted or renamed before it could be read", True
    if isinstance(exc, PermissionError):
        return "permission denied: give ambient read access, or add it to sources.notes.ignore", False
    if exc.errno == errno.ELOOP:  # a loop, or a link put where the real file was a moment ago
        return "it is a symlink loop, or became a link while being read: fix or remove the link", False
    if isinstance(exc, IsADirectoryError):
        return "it is a folder", False
    return f"cannot be read ({exc.strerror or exc})", False


def read_note(path: Path, max_bytes: int, folders: Sequence[Path] | None = None) -> NoteText:
    """The note's text; raises :class:`NoteUnreadable` for anything that is not a readable note.

    With ``folders`` (real paths), a note whose real path is outside them is refused.
    """
    if not _utf8_name(path):  # the store keeps paths as UTF-8 text
        raise NoteUnreadable(path, "its name is not valid UTF-8: rename it (e.g. with `convmv -t utf-8`)")
    real = Path(os.path.realpath(path))
    if folders is not None and not within(real, folders):
        raise NoteUnreadable(path, outside_reason(real))
    try:
        with _open_note(real) as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise NoteUnreadable(path, "it is not a regular file")
            if st.st_size > max_bytes:
                raise NoteUnreadable(path, _too_large(st.st_size, max_bytes))
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        reason, vanished = _os_reason(exc)
        raise NoteUnreadable(path, reason, vanished=vanished) from None
    if len(data) > max_bytes:
        raise NoteUnreadable(path, _too_large(len(data), max_bytes))
    text = decode_note(path, data)
    return NoteText(Path(path), text, text_sha(text), stat.S_IMODE(st.st_mode), st.st_mtime_ns, len(data))


def _utf8_name(path: Path | str) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as surrogates (os.fsdecode)
        return False
    return True


def decode_note(path: Path | str, data: bytes) -> str:
    if b"\x00" in data:
        raise NoteUnreadable(path, "it looks binary (it has NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteUnreadable(
            path, f"it is not UTF-8 (bad byte at {exc.start}): convert it, e.g. with `iconv -t utf-8`"
        ) from None


def _too_large(size: int, limit: int) -> str:
    return f"it is larger than the limit ({size} > {limit} bytes): raise sources.notes.max_bytes to take it"


# ----------------------------------------------------------------- changes
def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo]; a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def common_suffix(a: str, b: str, limit: int) -> int:
    """Length of the longest common suffix of ``a`` and ``b``, at most ``limit``."""
    la, lb = len(a), len(b)
    limit = max(0, min(limit, la, lb))
    if a[la - limit :] == b[lb - limit :]:
        return limit
    lo, hi = 0, limit  # the last lo characters match; the last hi do not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[la - mid : la - lo] == b[lb - mid : lb - lo]:
            lo = mid
        else:
            hi = mid
    return lo


def find_change(old: str, new: str) -> Change:
    """The region of ``new`` that differs from ``old`` (an empty region at the end if they are equal).

    An insertion next to text it repeats could be placed in several ways ("one\nthree" becoming
    "one\ntwo\nthree" inserted "two\n" or "\ntwo" or "wo\nt"); the point chosen is the last one
    that ends a word (followed by whitespace or the end of the note), else the last one.
    """
    start = common_prefix(old, new)
    suffix = common_suffix(old, new, min(len(old), len(new)) - start)
    change = Change(start=start, end=len(new) - suffix, old_end=len(old) - suffix)
    if change.old_end == change.start and change.end > change.start:
        return _settle_insertion(new, change)
    return change


def _settle_insertion(new: str, change: Change) -> Change:
    start, end = change.start, change.end
    for _ in range(SLIDE_LIMIT):
        if end == len(new) or new[end].isspace():
            return Change(start, end, start)
        if start == 0 or new[start - 1] != new[end - 1]:
            break
        start, end = start - 1, end - 1
    return change


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset`` in ``text``."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col
