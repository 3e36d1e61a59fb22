"""Small file-system helpers shared by the CLI and the integrations: atomic and checked writes, locks.

:func:`write_atomic` writes through a temporary file, fsync and a rename. Given
``unchanged`` (the SHA-256 of the content the caller checked), it replaces the
file only if that is what it replaces, even against a writer that takes no lock
(an editor saving by rename): the content is hashed just before the swap, the
swap is Linux ``renameat2(RENAME_EXCHANGE)`` so the replaced file comes out
under the temporary name and can be compared, and if a save slipped in it is
put back and :class:`ChangedWhileWriting` is raised. :func:`locked` is an
advisory lock file (``flock``) for writers that do take one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ambient.errors import Conflict, InvalidInput

_LOGGER = logging.getLogger(__name__)

AT_FDCWD = -100
RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}
PUT_BACK_TRIES = 100  # exchanges while putting back a save, if saves keep landing meanwhile


class ChangedWhileWriting(Conflict):
    """The file was saved by someone else while it was being replaced; their save was kept."""

    def __init__(self, path: Path, kept: Path | None = None) -> None:
        where = f" (a save that could not be put back is in {kept})" if kept else ""
        super().__init__(
            f"{path} changed while it was being replaced: it was left as it was saved, nothing was "
            f"lost{where}; try again"
        )
        self.path = path
        self.kept = kept


def write_atomic(
    path: Path,
    body: str,
    mode: int | None = None,
    *,
    unchanged: str | None = None,
    owner: tuple[int, int] | None = None,
) -> None:
    """Write ``body`` to ``path`` through a temporary file, fsync and a rename; then fsync the folder.

    Readers see the old content or the new one, never a half-written file.
    ``mode`` sets the new file's permission bits (e.g. to keep a note's mode), ``owner`` its
    (uid, gid) when that can be kept. ``unchanged``: replace only a file whose content has this
    SHA-256, else raise :class:`ChangedWhileWriting` and leave the file as it is.
    """
    path = path.expanduser()
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder: give a file name")
    tmp = _write_temp(path, body, mode, owner)
    kept: Path | None = None
    try:
        if unchanged is None:
            os.replace(tmp, path)
        else:
            _replace_checked(path, tmp, unchanged)
    except ChangedWhileWriting as exc:
        kept = exc.kept
        raise
    finally:
        if kept is None:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)


def _write_temp(path: Path, body: str, mode: int | None, owner: tuple[int, int] | None) -> Path:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(body)
            fh.flush()
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            if owner is not None and owner != (os.getuid(), os.getgid()):
                _chown(fh.fileno(), owner, path)
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _chown(fd: int, owner: tuple[int, int], path: Path) -> None:
    try:
        os.fchown(fd, *owner)
    except OSError as exc:
        _LOGGER.warning("could not keep the owner of %s (%s)", path, exc.strerror)


def _replace_checked(path: Path, tmp: Path, unchanged: str) -> None:
    """Swap ``tmp`` in for ``path`` if ``path`` holds the content ``unchanged``; else keep what is there."""
    if sha256_of(path) != unchanged:
        raise ChangedWhileWriting(path)
    with _held(tmp) as ours:
        try:
            swapped = exchange(tmp, path)
        except FileNotFoundError:  # the file went away just now (an editor saving in two steps)
            raise ChangedWhileWriting(path) from None
        if not swapped:
            # renameat2(RENAME_EXCHANGE) is missing (not Linux, an old kernel, or a file system that
            # refuses it): fall back to the hash-checked rename. A save landing in the microseconds
            # between the check above and this rename would then be replaced without being seen.
            os.replace(tmp, path)
            return
        if sha256_of(tmp) == unchanged:  # what came out is what was checked: done
            return
        _put_back(tmp, path, ours)
    raise ChangedWhileWriting(path)


def _put_back(tmp: Path, path: Path, ours: int) -> None:
    """After a swap took out a save that slipped in: exchange again until the newest save is in place.

    After each exchange, what comes out under ``tmp`` is what was at ``path`` just before: if that
    is what we had put there, nothing landed meanwhile and ``path`` now holds the newest save; if it
    is a newer save (an editor renamed over ``path`` meanwhile), it goes back with the next exchange.
    Each file compared is held open, so its inode number cannot be reused meanwhile.
    """
    with contextlib.ExitStack() as stack:
        expect = _identity(ours)
        for _ in range(PUT_BACK_TRIES):
            back = stack.enter_context(_held(tmp))
            try:
                exchange(tmp, path)
            except FileNotFoundError:  # nothing at path (an editor saving in two steps, or a deletion):
                with contextlib.suppress(FileExistsError):  # link the save back, unless a newer one is there
                    os.link(tmp, path)
                return
            if _identity(os.lstat(tmp)) == expect:
                return
            expect = _identity(back)
    raise ChangedWhileWriting(path, kept=tmp)


@contextlib.contextmanager
def _held(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _identity(what: int | os.stat_result) -> tuple[int, int]:
    st = os.fstat(what) if isinstance(what, int) else what
    return st.st_dev, st.st_ino


def sha256_of(path: Path) -> str | None:
    """SHA-256 of the file at ``path`` (its last component not followed if a link); None if none is there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link where a file was: not the content checked
            return None
        raise
    with os.fdopen(fd, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap the directory entries ``a`` and ``b`` (Linux ``renameat2(RENAME_EXCHANGE)``).

    False where the system or the file system cannot (the caller falls back); OSError otherwise.
    """
    call = _renameat2()
    if call is None:
        return False
    if call(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(b))


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # a libc older than glibc 2.28
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems cannot fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the lock file ``path`` (made 0600 if missing; its folder must exist).

    The lock belongs to this open of the file, so it excludes other threads of this process as
    well as other processes; it is let go when the block ends or the process dies.
    """
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
