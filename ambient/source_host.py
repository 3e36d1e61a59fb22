"""Running the places of one daemon: set up, supervised, unloaded.

The daemon tries every autostarting place and each place with a
``[sources.NAME]`` table (see :func:`ambient.places.configured`). Each is built
with its typed options and set up (a failure is reported in one line and the
place skipped), run under a supervisor that restarts it with backoff when it
crashes, and unloaded at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any

from ambient import places
from ambient.config import Config
from ambient.errors import AmbientError
from ambient.sources import Hub, Source

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass
class _Running:
    source: Source
    task: asyncio.Task[None]
    state: str = "running"  # running, restarting, stopped
    restarts: int = 0
    last_error: str = ""


class SourceHost:
    """Starts the configured sources for a hub and keeps them running."""

    backoff_initial = 1.0
    backoff_max = 60.0

    def __init__(self, hub: Hub, config: Config) -> None:
        self.hub = hub
        self.config = config
        self.running: dict[str, _Running] = {}
        self.problems: dict[str, str] = {}  # name -> one line: why it is not running

    async def start(self) -> None:
        for name in await asyncio.to_thread(places.configured, self.config):  # importing reads files
            await self._start_one(name)

    async def _start_one(self, name: str) -> None:
        try:
            cls = await asyncio.to_thread(places.load, name)
            options = places.options(self.config, cls)
            enabled, why = cls.enabled(options)
            if not enabled:
                self._report(name, f"off: {why}" if why else "off")
                return
            source = cls(self.hub, options)
            await source.setup()
        except AmbientError as exc:
            self._report(name, str(exc))
            return
        except Exception as exc:  # a broken integration must not stop the daemon
            _LOGGER.exception("source %s failed to set up", name)
            self._report(name, f"setup crashed ({type(exc).__name__}: {exc})")
            return
        task = asyncio.get_running_loop().create_task(self._supervise(name, source), name=f"source-{name}")
        self.running[name] = _Running(source, task)

    def _report(self, name: str, message: str) -> None:
        self.problems[name] = message
        _LOGGER.warning("source %s is not running: %s", name, message)

    async def _supervise(self, name: str, source: Source) -> None:
        """Run ``source`` until cancelled; a crash is reported and the source restarted with backoff.

        The delay doubles after each crash (up to ``backoff_max``) and starts over once a run
        has lasted longer than ``backoff_max``.
        """
        delay = self.backoff_initial
        while True:
            began = asyncio.get_running_loop().time()
            try:
                await source.run()
                self.running[name].state = "stopped"
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if asyncio.get_running_loop().time() - began > self.backoff_max:
                    delay = self.backoff_initial
                entry = self.running[name]
                entry.state, entry.restarts = "restarting", entry.restarts + 1
                entry.last_error = f"{type(exc).__name__}: {exc}"
                _LOGGER.warning("source %s crashed (%s); restarting in %.1f s", name, entry.last_error, delay)
                self._publish(name, entry)
            await asyncio.sleep(delay)
            self.running[name].state = "running"
            self._publish(name, self.running[name])
            delay = min(delay * 2, self.backoff_max)

    def _publish(self, name: str, entry: _Running) -> None:
        """Tell the UI (``source_status`` event) that a source crashed or was restarted."""
        data = {
            "name": name,
            "state": entry.state,
            "restarts": entry.restarts,
            "last_error": entry.last_error,
        }
        try:
            self.hub.publish("source_status", data)
        except Exception:  # reporting must never stop the supervisor
            _LOGGER.debug("could not publish the state of source %s", name, exc_info=True)

    def get(self, name: str) -> Source | None:
        entry = self.running.get(name)
        return entry.source if entry is not None else None

    async def stop(self, timeout: float = 10.0) -> None:
        """Cancel every source's run() and unload it."""
        entries = list(self.running.items())
        for _, entry in entries:
            entry.task.cancel()
        await asyncio.gather(*(e.task for _, e in entries), return_exceptions=True)
        for name, entry in entries:
            entry.state = "stopped"
            try:
                await asyncio.wait_for(entry.source.unload(), timeout)
            except Exception as exc:
                _LOGGER.warning("source %s did not unload cleanly: %s", name, exc)
        self.running.clear()

    def status(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, entry in self.running.items():
            detail: dict[str, Any] = {}
            with contextlib.suppress(Exception):
                detail = entry.source.status()
            out[name] = {
                "state": entry.state,
                "restarts": entry.restarts,
                "last_error": entry.last_error,
                "detail": detail,
            }
        for name, message in self.problems.items():
            out[name] = {"state": "failed", "restarts": 0, "last_error": message, "detail": {}}
        return out
