"""Shared pieces of the reliability tests: configs, a daemon in its own thread, a daemon subprocess."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from ambient.app import App
from ambient.config import Config, load_config
from ambient.daemon import Daemon
from ambient.sampling.base import Sampler
from ambient.server import Server

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def make_config(home: Path, **changes: Any) -> Config:
    config = load_config(env={"AMBIENT_HOME": str(home)})
    defaults = {
        "memory__enabled": False,
        "server__port": 0,
        "server__debounce_ms": 0,
        "sampling__n": 2,
        "sampling__max_tokens": 3,
    }
    return config.replace(**{**defaults, **changes})


class ThreadedDaemon:
    """A real daemon serving on 127.0.0.1 from its own thread and event loop.

    For clients that block (requests, raw sockets, schemathesis) in the test's thread.
    """

    def __init__(self, config: Config, sampler: Sampler, memory: Any = None) -> None:
        self.config = config
        self.app = App(config, sampler=sampler)
        if memory is not None:
            self.app.__dict__["memory"] = memory
        self.loop = asyncio.new_event_loop()
        self.daemon = Daemon(config, self.app)
        self.server = Server(self.daemon, port=config.server.port)
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="reliability-daemon", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> ThreadedDaemon:
        self._thread.start()
        if not self._ready.wait(60):
            raise TimeoutError("the daemon did not start within 60 s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.app.close()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            self.server.reserve()
            async with self.daemon, self.server:
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def url(self) -> str:
        """The URL ``ambient run`` prints: the page, the token in its fragment."""
        return self.server.url

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.token}"}

    def call(self, coro: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
        """Run ``coro()`` on the daemon's loop and return its result."""
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro(), self.loop)
        return future.result(timeout)

    def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        async def run() -> T:
            return await self.daemon.run_blocking(fn, *args)

        return self.call(run)


def child_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBIENT_")}
    env.update(
        AMBIENT_HOME=str(home),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
    )
    env.update(extra)
    return env


class DaemonProcess:
    """A daemon in a child process (``ambient run`` or a test child); its log goes to a file."""

    def __init__(self, argv: list[str], home: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.log = log
        runtime = home / "daemon.json"
        runtime.unlink(missing_ok=True)
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, env=env or child_env(home), stdout=out, stderr=subprocess.STDOUT, cwd=REPO
            )
        self.port = 0
        self.token = ""

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait for daemon.json (written once the server listens) naming this process."""
        deadline = time.monotonic() + timeout
        runtime = self.home / "daemon.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                info = json.loads(runtime.read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == self.proc.pid:
                self.port = int(info["port"])
                self.token = (self.home / "token").read_text().strip()
                return
            time.sleep(0.05)
        raise TimeoutError(f"the daemon did not start within {timeout} s:\n{self.log.read_text()}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


AMBIENT_CLI = [PYTHON, "-m", "ambient.cli"]
