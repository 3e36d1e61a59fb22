"""Watching folders of notes: one "note changed" call per save, whatever the editor does.

Editors save in different ways: writing in place, truncating and writing, or
writing a temporary file and renaming it over the note (vim, VS Code, ...;
vim may also rename the note to ``note~`` first and delete that afterwards).
watchdog reports each as a burst of events; the note itself may appear only as
the destination of a "moved" event. :class:`NoteWatcher`:

* asks watchdog only for created, modified and moved events (and a watched
  folder's own deletion), so opened/closed events are not even produced; any
  that arrive anyway are dropped;
* maps a created or modified note, or a note that is the destination of a
  move, to "this path changed", ignoring folders, hidden files and folders
  (``.git/``), editor temporaries and backups, ambient's own files, and
  anything the globs do not match (:class:`NoteFilter`);
* debounces per path on the asyncio loop (``call_soon_threadsafe`` from the
  observer's thread, then one timer per path): the callback runs once the
  note has been quiet for ``quiet_s``.

A watched folder that disappears is reported with one log line; the others
stay watched. Nothing polls: the observer thread blocks on inotify.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirDeletedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from ambient.errors import AmbientError

_LOGGER = logging.getLogger(__name__)

EVENTS = [FileCreatedEvent, FileModifiedEvent, FileMovedEvent, DirDeletedEvent]
_NOT_CHANGES = frozenset({"opened", "closed", "closed_no_write", "attrib", "deleted"})


class NoteFilter:
    """Which paths are notes: inside a watched folder, matching a glob, and not ignored."""

    def __init__(
        self,
        folders: Sequence[Path],
        globs: Sequence[str],
        ignore: Sequence[str] = (),
        ignore_dirs: Sequence[Path] = (),
    ) -> None:
        self.folders = [Path(f) for f in folders]
        self.globs = tuple(globs)
        self.ignore = tuple(ignore)
        self.ignore_dirs = [Path(d) for d in ignore_dirs]

    def folder_of(self, path: Path) -> Path | None:
        """The watched folder that holds ``path`` (the deepest, if folders nest)."""
        holders = [f for f in self.folders if path.is_relative_to(f) and path != f]
        return max(holders, key=lambda f: len(f.parts)) if holders else None

    def is_note(self, path: str | Path) -> bool:
        p = Path(path)
        folder = self.folder_of(p)
        if folder is None or any(p.is_relative_to(d) for d in self.ignore_dirs):
            return False
        rel = p.relative_to(folder)
        for pattern in self.ignore:
            if "/" in pattern.rstrip("/"):
                if fnmatch.fnmatch(rel.as_posix(), pattern):
                    return False
            elif any(fnmatch.fnmatch(part, pattern.rstrip("/")) for part in rel.parts):
                return False
        return any(fnmatch.fnmatch(p.name, g) for g in self.globs)


class _Handler(FileSystemEventHandler):  # type: ignore[misc]
    def __init__(self, watcher: NoteWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.watcher.from_observer(event)


class NoteWatcher:
    """watchdog observer + per-path debounce; ``on_change(path)`` runs on ``loop``."""

    def __init__(
        self,
        folders: Sequence[Path],
        note_filter: NoteFilter,
        quiet_s: float,
        on_change: Callable[[str], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.folders = [Path(f) for f in folders]
        self.filter = note_filter
        self.quiet_s = quiet_s
        self.on_change = on_change
        self.loop = loop
        self._observer: Any = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.gone: set[str] = set()
        self.raw_events = 0
        self.changes = 0

    # ---------------------------------------------------------------- control
    def start(self) -> None:
        observer = Observer()
        handler = _Handler(self)
        try:
            for folder in self.folders:
                observer.schedule(handler, str(folder), recursive=True, event_filter=EVENTS)
            observer.start()
        except OSError as exc:
            raise AmbientError(_watch_error(exc)) from None
        self._observer = observer

    def stop(self) -> None:
        """Tell the observer to stop and drop pending timers (on the loop; then :meth:`join` elsewhere)."""
        if self._observer is not None:
            self._observer.stop()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the observer's threads to end (blocking: call it in a worker thread)."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout)

    @property
    def alive(self) -> bool:
        return self._observer is not None and bool(self._observer.is_alive())

    @property
    def pending(self) -> int:
        return len(self._timers)

    # ---------------------------------------------------------------- events
    def from_observer(self, event: FileSystemEvent) -> None:
        """Called in the observer's thread for every event: classify, then hop onto the loop."""
        self.raw_events += 1
        try:
            kind, path = self.classify(event)
        except Exception:  # never let one odd event kill the observer thread
            _LOGGER.exception("could not classify %r", event)
            return
        if kind is None:
            return
        callback = self._touch if kind == "changed" else self._folder_gone
        try:
            self.loop.call_soon_threadsafe(callback, path)
        except RuntimeError:  # the loop is closed: we are shutting down
            pass

    def classify(self, event: FileSystemEvent) -> tuple[str | None, str]:
        """("changed", note path), ("gone", folder) or (None, "")."""
        if event.event_type in _NOT_CHANGES and not event.is_directory:
            return None, ""
        if event.is_directory:
            src = _text(event.src_path)
            if event.event_type == "deleted" and Path(src) in self.folders:
                return "gone", src
            return None, ""
        if isinstance(event, FileMovedEvent) or event.event_type == "moved":
            path = _text(event.dest_path)
        elif event.event_type in ("created", "modified"):
            path = _text(event.src_path)
        else:
            return None, ""
        return ("changed", path) if path and self.filter.is_note(path) else (None, "")

    def _touch(self, path: str) -> None:
        handle = self._timers.pop(path, None)
        if handle is not None:
            handle.cancel()
        self._timers[path] = self.loop.call_later(self.quiet_s, self._fire, path)

    def _fire(self, path: str) -> None:
        self._timers.pop(path, None)
        self.changes += 1
        try:
            self.on_change(path)
        except Exception:
            _LOGGER.exception("handling a change of %s failed", path)

    def _folder_gone(self, folder: str) -> None:
        if folder in self.gone:
            return
        self.gone.add(folder)
        _LOGGER.warning(
            "watched folder %s disappeared: its notes are no longer watched; recreate it and restart "
            "ambient to watch it again",
            folder,
        )


def _text(path: bytes | str) -> str:
    return os.fsdecode(path)


def _watch_error(exc: OSError) -> str:
    if exc.errno == 28:  # ENOSPC from inotify_add_watch: the per-user watch limit
        return (
            "cannot watch the notes folders: the inotify watch limit is reached; raise it with "
            "`sysctl fs.inotify.max_user_watches=524288` or watch fewer folders"
        )
    return f"cannot watch the notes folders ({exc.strerror or exc}): check sources.notes.folders"
