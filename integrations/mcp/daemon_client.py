"""How `ambient mcp` reaches the running daemon: its ``/mcp`` routes over loopback, with a client key.

The daemon is found as `ambient status` finds it: the runtime file in ``AMBIENT_HOME`` names its
port. The file is read again for every request, so a daemon restarted on another port is found;
one that is gone is said so in one line. The key goes only in the ``Authorization`` header, only
to that loopback address.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from ambient.errors import AmbientError
from ambient.security import LOOPBACK_HOSTS
from ambient.server import RUNTIME_FILE

NOT_RUNNING = (
    "ambient is not running for {home}: start it with `ambient run` (with the same AMBIENT_HOME); "
    "ambient mcp talks to the running daemon and loads no model itself"
)
WRONG_KEY = (
    "AMBIENT_KEY is not a client key of this ambient (or the key was removed): make one with "
    "`ambient keys add NAME` and put its secret in the chat app's MCP config as AMBIENT_KEY"
)
NO_ROUTES = "the running ambient has no /mcp routes: restart it (`ambient run`) after upgrading ambient"
READ_TIMEOUT_S = 30.0
OFFER_TIMEOUT_S = 600.0  # sampling n continuations on a CPU can take minutes


class DaemonDown(AmbientError):
    """No daemon answers for this home."""


class KeyRefused(AmbientError):
    """The daemon refused the key."""


class DaemonRefused(AmbientError):
    """The daemon answered with an error (its one-line message is this one's)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class DaemonClient:
    """The daemon's ``/mcp`` routes for one client key. Use ``async with``."""

    def __init__(self, home: Path, secret: str) -> None:
        self.home = Path(home)
        self._secret = secret
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DaemonClient:
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self._secret}"},
            trust_env=False,  # never through a proxy: the daemon is on loopback
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ the routes
    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._call("GET", path, params=params, timeout=READ_TIMEOUT_S)

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", path, body=body, timeout=OFFER_TIMEOUT_S)

    async def check(self) -> None:
        """Raise DaemonDown, KeyRefused or DaemonRefused unless the daemon answers this key."""
        await self.get("/mcp/trees", {"limit": 1})

    # ------------------------------------------------------------------ below
    async def base_url(self) -> str:
        info = await asyncio.to_thread(self._runtime)
        host = str(info.get("host") or "127.0.0.1")
        if host not in LOOPBACK_HOSTS:
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{int(info['port'])}"

    def _runtime(self) -> dict[str, Any]:
        try:
            info = json.loads((self.home / RUNTIME_FILE).read_text(encoding="utf-8"))
            port = int(info["port"])
        except (OSError, ValueError, KeyError, TypeError):
            raise DaemonDown(NOT_RUNNING.format(home=self.home)) from None
        if not 0 < port < 65536:
            raise DaemonDown(NOT_RUNNING.format(home=self.home))
        return dict(info)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        timeout: float,
    ) -> dict[str, Any]:
        assert self._session is not None, "use DaemonClient in `async with`"
        url = await self.base_url() + path
        query = {k: str(v) for k, v in (params or {}).items()}
        try:
            async with self._session.request(
                method,
                url,
                params=query,
                json=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientConnectionError, ConnectionError):
            raise DaemonDown(NOT_RUNNING.format(home=self.home)) from None
        except TimeoutError:
            raise DaemonRefused(
                f"ambient did not answer within {timeout:.0f} s: it may be busy; try again, or ask for "
                "fewer or shorter continuations",
                504,
            ) from None
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if status == 200 and isinstance(data, dict):
            return data
        if status == 401:
            raise KeyRefused(WRONG_KEY)
        message = data.get("error") if isinstance(data, dict) else None
        if status == 404 and not isinstance(message, str):
            raise DaemonRefused(NO_ROUTES, status)
        if not isinstance(message, str) or not message:
            message = f"ambient answered {status} to {method} {path}: its log (`ambient run`) has the details"
        raise DaemonRefused(message, status)
