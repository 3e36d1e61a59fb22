"""The contract every integration (notes, Discord, speech, the UI's manual input) follows.

An integration is one folder under ``integrations/`` whose ``__init__.py``
exposes ``SOURCE: type[Source]``. The daemon builds it with the hub and its
typed options, then calls, in order:

* ``await setup()``  check everything it needs; raise :class:`AmbientError`
  with a message that names the fix (the daemon reports it and goes on
  without that source);
* ``await run()``    do the work until cancelled (the daemon restarts it with
  backoff if it crashes);
* ``await unload()`` free everything (observers, connections, models).

A source never samples or writes trees on the event loop itself: it hands
:class:`SourceEvent` s to the hub, which debounces them (per ``key``, latest
wins), builds the context, samples and publishes the offer. A source may only
write into its own place (a note, a channel) when a person asks for that very
action.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol, TypeVar

from ambient.app import App
from ambient.tree import Offer

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class SourceEvent:
    """A moment worth offering continuations for."""

    source: str  # integration name: "notes", "discord", "speech", "manual"
    key: str  # what it is about (a note's path, a channel, a session): latest wins per key
    parent_id: str  # the node to offer continuations at (the source stores its text first)
    text: str | None = None  # the text to continue, if not the full text up to parent_id
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    n: int | None = None  # overrides of the configured sampling settings
    temperature: float | None = None
    max_tokens: int | None = None
    signals: bool | None = None  # per-token signals (default: sampling.signals)
    oversample: int | None = None  # sample this many and offer n cluster representatives (0 = off)
    debounce: bool = True  # False: a person asked for it explicitly, sample now


class Hub(Protocol):
    """What the daemon gives each source."""

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


class Source(abc.ABC):
    """One integration."""

    name: ClassVar[str]
    options_class: ClassVar[type[Any]]  # a frozen dataclass parsed with config.parse_section

    def __init__(self, hub: Hub, options: Any) -> None:
        self.hub = hub
        self.options = options

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
