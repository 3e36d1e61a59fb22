"""Run a test's event loop in asyncio debug mode and fail on anything it reports.

Debug mode logs every callback or task step that holds the loop longer than
``slow_callback_duration`` (here 0.1 s: blocking work on the loop), coroutines
never awaited, and raises on loop calls made from other threads. Any such
warning from the ``asyncio`` logger fails the test, with the messages.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator

import pytest

SLOW_CALLBACK_S = 0.1


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
async def strict_loop() -> AsyncIterator[None]:
    # A full garbage collection of the whole test process (torch, chromadb, every earlier test's
    # objects) can stall whichever step happens to run for a quarter of a second: that is the test
    # runner's doing, not the daemon's. Objects alive before the test are frozen out of collection.
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    was_debug, was_slow = loop.get_debug(), loop.slow_callback_duration
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_S
    collect = _Collect()
    logger = logging.getLogger("asyncio")
    logger.addHandler(collect)
    try:
        yield
    finally:
        logger.removeHandler(collect)
        gc.unfreeze()
        loop.set_debug(was_debug)
        loop.slow_callback_duration = was_slow
    assert not collect.messages, "the event loop was blocked or misused:\n" + "\n".join(collect.messages)
