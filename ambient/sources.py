"""The place contract: what a place (notes, Discord, speech, the UI's typed text, or another package's)
implements to plug into ambient.

A place is a subclass of :class:`Source`, registered under the entry-point group
``ambient.sources`` (the built-in places register the same way, in ambient's own
``pyproject.toml``)::

    [project.entry-points."ambient.sources"]
    echo = "ambient_echo:EchoSource"

**Options.** ``options_class`` is a frozen dataclass read from ``[sources.NAME]`` with
:func:`ambient.config.parse_section` (unknown keys are refused, each key is typed, and each field
declares its allowed values with the rules of :mod:`ambient.settings`).

**Lifecycle.** The daemon builds the place with the hub and its options, then calls,
in order:

* ``await setup()``  check everything it needs; raise :class:`AmbientError` with a
  message that names the fix (the daemon reports it in one line and goes on
  without that place);
* ``await run()``    do the work until cancelled (restarted with backoff if it crashes);
* ``await unload()`` free everything (observers, connections, models);

and asks ``status()`` for ``ambient status`` and the UI.

**Walls.** ``scope_of()`` says which scope each of its trees stands in, and so what
its offers may retrieve (:mod:`ambient.scopes`).

**Surfaces.** Class-level, so that they exist whether or not the place runs in this
process: ``routes()`` adds HTTP routes to the daemon's API (they appear in its
OpenAPI document); ``socket_handler`` takes WebSocket messages of the types it
names; ``add_commands()`` adds ``ambient`` subcommands; ``benchmarks()`` adds
``ambient bench`` names.

A place never samples or writes trees on the event loop itself: it hands
:class:`SourceEvent` s to the hub, which debounces them (per ``key``, latest wins),
builds the context, samples and publishes the offer. A place may only write into
its own place (a note, a channel) when a person asks for that very action.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from ambient.app import App
from ambient.forgetting import Report, Target
from ambient.offers import Overrides
from ambient.store import Forgotten
from ambient.tree import Offer, Tree
from ambient.validation import Route

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class SourceEvent:
    """A moment worth offering continuations for."""

    source: str  # the place's name: "notes", "discord", "speech", "manual", ...
    key: str  # what it is about (a note's path, a channel, a session): latest wins per key
    parent_id: str  # the node to offer continuations at (the place stores its text first)
    text: str | None = None  # the text to continue, if not the full text up to parent_id
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Changes to the configured sampling settings for this offer.
    overrides: Overrides = dataclasses.field(default_factory=Overrides)
    debounce: bool = True  # False: a person asked for it explicitly, sample now
    memory: bool = True  # False: nothing is retrieved into the prompt (the text is all of it: an app's own)

    def source_info(self) -> dict[str, Any]:
        """What the offer records as its source."""
        return {"kind": self.source, "key": self.key, **self.meta}


class Hub(Protocol):
    """What the daemon gives each place."""

    app: App

    async def submit(self, event: SourceEvent) -> None:
        """Queue an event (debounced per key; a newer one cancels the older one's sampling)."""

    async def offer_now(self, event: SourceEvent) -> Offer:
        """Sample for ``event`` right away (a person asked) and return the finished offer."""

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (files, SQLite, torch) in a worker thread."""

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send a live event to every UI subscriber."""

    def on_offer(self, callback: Callable[[Offer], Awaitable[None] | None]) -> None:
        """Be told when any offer is finished (e.g. to rewrite a sidecar)."""

    def schedule_index(self) -> None:
        """Ask for the memory index to catch up with the store soon (in the background)."""

    async def forget(self, target: Target) -> Report:
        """Forget ``target`` everywhere ambient keeps it (e.g. a message its author deleted)."""


class SocketPeer(Protocol):
    """What a place's socket handler gets from the server: one WebSocket, and the place's state."""

    async def send(self, kind: str, data: dict[str, Any]) -> None:
        """Send ``{"type": kind, "data": data}`` to this socket only."""

    async def error(self, message: str) -> None:
        """Tell this socket's client what went wrong; the socket stays open."""

    def running(self) -> Source | None:
        """The place, when it runs in this daemon."""

    def problem(self) -> str | None:
        """Why the place does not run (its setup failed, or it is off), if it was tried."""


class SocketHandler:
    """One WebSocket's conversation with one place; a new handler per socket.

    ``message_types`` are the ``type`` values of the JSON text messages it takes;
    ``binary`` says it takes the socket's binary frames (one place at most).
    """

    message_types: ClassVar[tuple[str, ...]] = ()
    binary: ClassVar[bool] = False

    def __init__(self, peer: SocketPeer) -> None:
        self.peer = peer

    async def message(self, message: dict[str, Any]) -> None:
        """A JSON text message whose ``type`` is one of ``message_types``."""

    async def frames(self, data: bytes) -> None:
        """A binary frame (only when ``binary``)."""

    async def close(self) -> None:
        """The socket closed: end what it started."""


class Source(abc.ABC):
    """One place."""

    name: ClassVar[str]
    options_class: ClassVar[type[Any]]  # a frozen dataclass parsed with config.parse_section
    # Tried even without a [sources.NAME] table, so that `ambient run` says in one line why it is off.
    autostart: ClassVar[bool] = False
    # Earlier names of its [sources.*] table, still read (with a warning saying the new name).
    aliases: ClassVar[tuple[str, ...]] = ()
    socket_handler: ClassVar[type[SocketHandler] | None] = None

    def __init__(self, hub: Hub, options: Any) -> None:
        self.hub = hub
        self.options = options

    # ------------------------------------------------------------ surfaces
    @classmethod
    def routes(cls) -> Sequence[Route]:
        """HTTP routes this place adds to the daemon's API (each under ``/api/``)."""
        return ()

    @classmethod  # noqa: B027 - optional
    def add_commands(cls, sub: Any) -> None:
        """Add ``ambient`` subcommands to ``sub`` (argparse's subparsers); each sets ``func``."""

    @classmethod
    def benchmarks(cls) -> Mapping[str, str]:
        """``ambient bench`` names this place adds, each the module that implements it.

        A benchmark module has ``run(config, **options) -> dict`` and ``to_markdown(result) -> str``.
        """
        return {}

    @classmethod
    def scope_of(cls, tree_source: str, home: Path) -> str | None:
        """The scope (:mod:`ambient.scopes`) of a tree this place makes, from the tree's ``source``.

        None: not one of this place's trees. A private place answers a bare name (the person's
        private places see one another); a place shared with other people answers ``kind:id``,
        a wall of its own. The place creates its trees with this scope. ``home`` is the
        AMBIENT_HOME asked about, for a place whose answer is kept there (a client key's scope).
        """
        return None

    @classmethod
    def forgotten(cls, app: App, forgotten: Forgotten, trees: Sequence[Tree]) -> list[str]:
        """Nodes or trees were forgotten (``trees``: the trees removed whole, as they were).

        Remove what this place derived from them (e.g. files it wrote) and say what, one
        line each. Blocking; runs in a worker thread or the CLI.
        """
        return []

    # ----------------------------------------------------------- lifecycle
    @classmethod
    def enabled(cls, options: Any) -> tuple[bool, str]:
        """Whether to start with these options; the reason is printed in one line when not."""
        return True, ""

    @abc.abstractmethod
    async def setup(self) -> None:
        """Check connections and folders; raise AmbientError naming the fix."""

    @abc.abstractmethod
    async def run(self) -> None:
        """Work until cancelled."""

    async def unload(self) -> None:  # noqa: B027 - optional
        """Free everything."""

    def status(self) -> dict[str, Any]:
        """A small dict for `ambient status` and the UI."""
        return {}
