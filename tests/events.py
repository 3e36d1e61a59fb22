"""Waiting for the daemon's published events in tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ambient.events import Subscriber


async def next_event(sub: Subscriber, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """The data of the next event of type ``kind`` that ``sub`` receives (others are skipped)."""

    async def wait() -> dict[str, Any]:
        while True:
            message = await sub.queue.get()
            assert message is not None
            event: dict[str, Any] = json.loads(message)
            if event["type"] == kind:
                return event["data"]

    return await asyncio.wait_for(wait(), timeout)
