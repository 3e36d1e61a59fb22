"""A daemon child for the crash tests: ``ambient run``'s own ``run_until_stopped()`` with the fake sampler.

Everything but the model is real (config, store, API, sources, shutdown path); the fake sampler
skips loading torch, so one start costs about a second and a test can afford many kill points.
Run as ``python -m tests.reliability.crash_child`` with ``AMBIENT_HOME`` set.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from ambient.app import App
from ambient.commands.daemon import run_until_stopped
from ambient.config import load_config
from tests.fakes import FakeSampler


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = App(load_config(), sampler=FakeSampler(delay=0.004))
    try:
        return asyncio.run(run_until_stopped(app, port=0, browser=False))
    finally:
        app.close()


if __name__ == "__main__":
    sys.exit(main())
