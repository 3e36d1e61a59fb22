"""Small file-system helpers shared by the CLI and the integrations."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ambient.errors import InvalidInput


def write_atomic(path: Path, body: str, mode: int | None = None) -> None:
    """Write ``body`` to ``path`` through a temporary file, fsync and a rename.

    Readers see the old content or the new one, never a half-written file.
    ``mode`` sets the new file's permission bits (e.g. to keep a note's mode).
    """
    path = path.expanduser()
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder: give a file name")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
