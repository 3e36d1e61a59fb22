"""Real servers the tests start on loopback: a free port, waiting until one answers, `chroma run`."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMA = Path(sys.executable).parent / "chroma"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(
    request: str | urllib.request.Request,
    proc: subprocess.Popen[bytes],
    what: str,
    *,
    timeout: float = 90.0,
    log: Path | None = None,
) -> None:
    """Return once ``request`` gets a 200; raise, with the log's tail, if ``proc`` exits or time runs out."""
    url = request.full_url if isinstance(request, urllib.request.Request) else request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log is not None else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer at {url} within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def chroma(folder: Path) -> Iterator[str]:
    """A real Chroma server (`chroma run`) on 127.0.0.1 storing under ``folder``; yields its URL."""
    if not CHROMA.exists():
        pytest.fail(f"the chroma command is not installed at {CHROMA} (chromadb's CLI): run `make setup`")
    folder.mkdir(parents=True, exist_ok=True)
    port, log_path = free_port(), folder / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(CHROMA), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(folder / "data")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_serving(url + "/api/v2/heartbeat", proc, "chroma run", log=log_path)
            yield url
        finally:
            stop(proc)
