"""The notes source: a folder of notes, watched; offers beside each note as it is saved.

On each save (one per save, after a quiet window: :mod:`integrations.notes.watcher`)
the note is read safely (:mod:`integrations.notes.notes`), recorded as the
newest version in its tree, and the place where the person was writing becomes
a point node (:mod:`integrations.notes.history`). An event for that point goes
to the hub, which builds the context (the note up to the point, plus
retrieval) and samples N continuations; a newer save of the same note cancels
the older sampling (events are keyed by the note's path). The watcher already
waited for the note to be quiet, so the event asks the hub not to debounce it
again.

When an offer for a note finishes, its sidecar is rewritten
(:mod:`integrations.notes.sidecar`). The source never writes a note: only
:meth:`NotesSource.accept` does, when a person asks (:mod:`integrations.notes.accept`).
A save that is ambient's own accept is recognised and offers nothing. A link
whose real target is outside the watched folders is never read
(:mod:`integrations.notes.walls`): skipped with one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ambient.app import App
from ambient.errors import AmbientError
from ambient.offers import Overrides
from ambient.sources import Hub, Source, SourceEvent
from ambient.store import Forgotten
from ambient.tree import Offer, Tree
from ambient.validation import Route
from integrations.notes import sidecar
from integrations.notes.accept import Accepted, accept_node
from integrations.notes.history import SCOPE, SOURCE_PREFIX, NoteHistory, Recorded, is_note_tree
from integrations.notes.notes import NoteText, NoteUnreadable, read_note
from integrations.notes.options import NotesOptions
from integrations.notes.walls import LOCK_DIR, Walls, config_base, folder_path
from integrations.notes.watcher import NoteFilter, NoteWatcher

_LOGGER = logging.getLogger(__name__)

OWN_DIRS = ("sidecars", "models", "memory", LOCK_DIR)  # ambient's own folders under AMBIENT_HOME, never notes


@dataclasses.dataclass
class _Counts:
    changes: int = 0
    offers: int = 0
    unchanged: int = 0
    own_writes: int = 0
    skipped: int = 0


class NotesSource(Source):
    name: ClassVar[str] = "notes"
    options_class: ClassVar[type[Any]] = NotesOptions
    aliases: ClassVar[tuple[str, ...]] = ("files",)  # the table's name before 0.2
    options: NotesOptions

    @classmethod
    def scope_of(cls, tree_source: str, home: Path) -> str | None:
        return SCOPE if tree_source.startswith(SOURCE_PREFIX) else None

    @classmethod
    def forgotten(cls, app: App, forgotten: Forgotten, trees: Sequence[Tree]) -> list[str]:
        """Sidecars: a removed note's is deleted, a note that lost nodes gets its sidecar rewritten."""
        return sidecar.forget(app.store, app.config.home, forgotten.touched_tree_ids, trees)

    @classmethod
    def routes(cls) -> Sequence[Route]:
        from integrations.notes.routes import ROUTES

        return ROUTES

    @classmethod
    def add_commands(cls, sub: Any) -> None:
        from integrations.notes.commands import register

        register(sub)

    @classmethod
    def benchmarks(cls) -> Mapping[str, str]:
        return {
            "notes": "integrations.notes.bench",
            "load": "integrations.notes.bench_load",
            "soak": "integrations.notes.bench_soak",
        }

    def __init__(self, hub: Hub, options: NotesOptions) -> None:
        super().__init__(hub, options)
        self.folders: list[Path] = []
        self.filter: NoteFilter | None = None
        self.walls = Walls((), Path(hub.app.config.home) / LOCK_DIR, options.max_bytes)
        self.watcher: NoteWatcher | None = None
        self.counts = _Counts()
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._skipped: dict[str, str] = {}  # path -> the reason last logged (one line per new reason)

    @classmethod
    def enabled(cls, options: Any) -> tuple[bool, str]:
        if not options.folders:
            return False, 'no folders to watch: set [sources.notes] folders = ["~/notes"]'
        return True, ""

    # -------------------------------------------------------------- lifecycle
    async def setup(self) -> None:
        config = self.hub.app.config
        base = config_base(config)
        self.folders = [resolve_folder(f, base) for f in self.options.folders]
        self.walls = Walls.of(self.folders, config.home, self.options.max_bytes)
        home = Path(os.path.realpath(config.home))
        self.filter = NoteFilter(
            self.folders, self.options.globs, self.options.ignore, ignore_dirs=[home / d for d in OWN_DIRS]
        )
        self.hub.on_offer(self._on_offer)

    async def run(self) -> None:
        assert self.filter is not None, "setup() first"
        loop = asyncio.get_running_loop()
        watcher = NoteWatcher(self.folders, self.filter, self.options.quiet_s, self._changed, loop)
        await self.hub.run_blocking(watcher.start)
        self.watcher = watcher
        _LOGGER.info("watching %s for notes", ", ".join(map(str, self.folders)))
        try:
            while True:
                path = await self._queue.get()
                self._queued.discard(path)
                await self._handle(path)
        finally:
            await self._stop_watcher()

    async def unload(self) -> None:
        await self._stop_watcher()

    async def _stop_watcher(self) -> None:
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.stop()
            await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, watcher.join))

    def status(self) -> dict[str, Any]:
        watcher = self.watcher
        return {
            "folders": [str(f) for f in self.folders],
            "watching": bool(watcher and watcher.alive),
            "gone": sorted(watcher.gone) if watcher else [],
            "debouncing": watcher.pending if watcher else 0,
            "waiting": self._queue.qsize(),
            **dataclasses.asdict(self.counts),
        }

    # ---------------------------------------------------------------- changes
    def _changed(self, path: str) -> None:
        """A note was saved (on the loop, once per save): queue it once."""
        if path not in self._queued:
            self._queued.add(path)
            self._queue.put_nowait(path)

    async def _handle(self, path: str) -> None:
        try:
            recorded = await self.hub.run_blocking(self.prepare, path)
        except AmbientError as exc:
            _LOGGER.warning("note %s not recorded: %s", path, exc)
            return
        except Exception:
            _LOGGER.exception("note %s could not be handled", path)
            return
        if recorded is None or not recorded.changed:
            return
        self.hub.publish("note_changed", _change_data(path, recorded))
        if recorded.point_node is not None:
            event = await self.hub.run_blocking(self._event, path, recorded)  # reads the store
            await self.hub.submit(event)
            self.counts.offers += 1

    def prepare(self, path: str) -> Recorded | None:
        """Blocking: read the note and record it as a new version (None: skipped or ambient's own write)."""
        real = self.walls.inside(path)  # outside: no lock to take, and _read refuses it
        with self.walls.lock(real) if real is not None else contextlib.nullcontext():
            return self._record(path)

    def _record(self, path: str) -> Recorded | None:
        note = self._read(path)
        if note is None:
            return None
        history = NoteHistory(self.hub.app.store)
        tree = history.find_tree(path)
        if tree is not None and history.is_expected(tree, note.sha256):
            self.counts.own_writes += 1  # an accept is writing this; it records the version itself
            return None
        offer = tree is not None or self.options.offer_on_first_sight
        recorded = history.record(path, note.text, offer=offer, sidecar=self._sidecar_for(path))
        self.counts.changes += recorded.changed
        self.counts.unchanged += not recorded.changed
        return recorded

    def _read(self, path: str) -> NoteText | None:
        try:
            note = read_note(Path(path), self.options.max_bytes, self.walls.folders)
        except NoteUnreadable as exc:
            self.counts.skipped += 1
            if self._skipped.get(path) != exc.reason:
                self._skipped[path] = exc.reason
                level = logging.INFO if exc.vanished else logging.WARNING
                _LOGGER.log(level, "skipped note %s", exc)
            return None
        self._skipped.pop(path, None)
        return note

    def _sidecar_for(self, path: str) -> str | None:
        if not self.options.sidecars or self.filter is None:
            return None
        folder = self.filter.folder_of(Path(path))
        if folder is None:
            return None
        return str(sidecar.sidecar_path(Path(self.hub.app.config.home), folder, Path(path)))

    def _event(self, path: str, recorded: Recorded) -> SourceEvent:
        """Blocking: the event for a recorded version (the text up to its point, from the store)."""
        assert recorded.point_node is not None
        text = "".join(n.text for n in self.hub.app.store.ancestry(recorded.point_node.id))
        return SourceEvent(
            source=self.name,
            key=path,
            parent_id=recorded.point_node.id,
            text=text,
            meta={"path": path, "point": recorded.point, "version": recorded.version},
            overrides=Overrides(
                n=self.options.n, temperature=self.options.temperature, max_tokens=self.options.max_tokens
            ),
            debounce=False,  # the watcher already waited for the note to be quiet
        )

    # ----------------------------------------------------------------- offers
    async def _on_offer(self, offer: Offer) -> None:
        if self.options.sidecars:
            await self.hub.run_blocking(self._rewrite_sidecar, offer.tree_id)

    def _rewrite_sidecar(self, tree_id: str) -> None:
        store = self.hub.app.store
        tree = store.get_tree(tree_id)
        if not is_note_tree(tree):
            return
        try:
            sidecar.rewrite(store, tree)
        except OSError as exc:
            _LOGGER.warning("could not write the sidecar for %s: %s", tree.title, exc)

    async def accept(self, node_id: str) -> Accepted:
        """A person asked to take ``node_id`` into its note (the API's accept route calls this)."""
        work = functools.partial(accept_node, self.hub.app.store, node_id, self.walls)
        result: Accepted = await self.hub.run_blocking(work)
        self.hub.publish("note_accepted", result.as_dict())
        return result


def resolve_folder(raw: str, base: Path) -> Path:
    """A watched folder as an absolute real path; a clear error if it is missing or unreadable."""
    folder = folder_path(raw, base)
    if not folder.exists():
        raise AmbientError(
            f"watched folder {folder} does not exist: create it (mkdir -p {folder}) "
            "or fix sources.notes.folders"
        )
    if not folder.is_dir():
        raise AmbientError(f"watched folder {folder} is not a folder: fix sources.notes.folders")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise AmbientError(f"watched folder {folder} cannot be read: check its permissions")
    return Path(os.path.realpath(folder))


def _change_data(path: str, recorded: Recorded) -> dict[str, Any]:
    return {
        "path": path,
        "tree_id": recorded.tree.id,
        "version": recorded.version,
        "point": recorded.point,
        "point_node_id": recorded.point_node.id if recorded.point_node is not None else None,
    }
