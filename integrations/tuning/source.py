"""The tuning place: the daemon tunes the personal adapter when it is idle, every ``tune.every_picks`` picks.

Off by default (``tune.every_picks = 0``). When on, it looks every ``check_s`` seconds at the
pick log; when at least ``tune.every_picks`` picks are new to the newest adapter and no offer
was made for ``idle_s`` seconds, it runs ``ambient tune`` in a process of its own at the lowest
CPU priority (:mod:`ambient.tuning.background`), so that offers go on while it trains: the
scheduler gives the daemon the cores first. Unloading the place stops it (nothing is written).
The sampler takes up the new adapter at its next offer if it became active
(``model.adapter = "personal"``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import threading
import time
from typing import Any, ClassVar

from ambient.errors import AmbientError, ConfigError
from ambient.settings import within
from ambient.sources import Source
from ambient.tree import Offer

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TuningOptions:
    """``[sources.tuning]``: when the daemon counts as idle (how often to tune is ``tune.every_picks``)."""

    idle_s: float = dataclasses.field(
        default=300.0, metadata=within(0, 86_400, note="seconds without an offer")
    )
    check_s: float = dataclasses.field(
        default=60.0, metadata=within(0.05, 3600, note="seconds between looks")
    )


class TuningSource(Source):
    name: ClassVar[str] = "tuning"
    options_class: ClassVar[type[Any]] = TuningOptions
    autostart: ClassVar[bool] = True  # so that `ambient run` says whether it is on

    def __init__(self, hub: Any, options: Any) -> None:
        super().__init__(hub, options)
        self.last_offer = time.monotonic()
        self.cancel: threading.Event | None = None  # set while a tune runs
        self.runs = 0
        self.last: dict[str, Any] = {}

    async def setup(self) -> None:
        config = self.hub.app.config
        if config.tune.every_picks <= 0:
            raise ConfigError(
                "tuning when idle is off (tune.every_picks = 0): set it to tune every N new picks"
            )
        if config.model.backend != "local":
            raise ConfigError(
                f"tuning when idle needs the local model (model.backend is {config.model.backend!r})"
            )
        self.hub.on_offer(self._offered)

    def _offered(self, _offer: Offer) -> None:
        self.last_offer = time.monotonic()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.options.check_s)
            await self.check()

    async def check(self) -> bool:
        """Tune now if it is due and the daemon is idle; whether a new adapter was written."""
        from ambient.tuning import background
        from ambient.tuning import tune as tuning
        from ambient.tuning.trainer import Interrupted

        app = self.hub.app
        if time.monotonic() - self.last_offer < self.options.idle_s:
            return False
        fresh = await self.hub.run_blocking(tuning.new_picks, app.config, app.store)
        if fresh < app.config.tune.every_picks:
            return False
        self.cancel = threading.Event()
        try:
            manifest = await self.hub.run_blocking(
                functools.partial(background.run, tuning.tune_home, app.config, cancel=self.cancel)
            )
        except (AmbientError, Interrupted, RuntimeError) as exc:
            self.last = {"at": time.time(), "error": str(exc)}
            _LOGGER.info("tuning when idle: %s", exc)
            return False
        finally:
            self.cancel = None
        self.runs += 1
        self.last = {
            "at": time.time(),
            "adapter": manifest["name"],
            "status": manifest["status"],
        }
        self.hub.publish("tuned", {**self.last, "evaluation": manifest.get("evaluation", {})})
        return True

    async def unload(self) -> None:
        if self.cancel is not None:
            self.cancel.set()

    def status(self) -> dict[str, Any]:
        return {"runs": self.runs, "tuning": self.cancel is not None, **self.last}
