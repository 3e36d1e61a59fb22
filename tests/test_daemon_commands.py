"""`ambient run` and `ambient status`: a real process, a real signal, a clean stop."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ambient.cli import main
from ambient.store import TreeStore
from ambient.tree import OfferState

REPO = Path(__file__).resolve().parent.parent
# `ambient run` with the fake sampler registered as a backend, so no model loads.
RUN = """
import sys
from ambient.sampling.registry import register_backend
from tests.fakes import FakeSampler
register_backend("fake", lambda config: FakeSampler(delay=0.02))
from ambient.cli import main
sys.exit(main(["run", "--port", "0", "--no-browser"]))
"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBIENT_")}
    env.update(
        AMBIENT_HOME=str(home),
        AMBIENT_MODEL_BACKEND="fake",
        AMBIENT_MEMORY_ENABLED="false",
        AMBIENT_SAMPLING_MAX_TOKENS="400",
        PYTHONPATH=str(REPO),
    )
    return env


def _read_url(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("ambient is running: "):
                return line.split(": ", 1)[1].strip()
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    raise AssertionError("ambient run did not print its URL")


def _call(url: str, token: str, method: str = "GET", body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_prints_its_url_and_stops_cleanly_on_a_signal(
    tmp_path: Path, sig: signal.Signals, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN], env=_env(tmp_path), cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = _read_url(proc)
        base, token = url.split("/#token=")  # the token in the fragment, which browsers never send
        assert base.startswith("http://127.0.0.1:") and token == (tmp_path / "token").read_text().strip()

        monkeypatch.setenv("AMBIENT_HOME", str(tmp_path))
        assert main(["status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert (
            status["running"] is True and status["pid"] == proc.pid and status["model"]["sampler"] == "fake"
        )
        assert status["url"] == url
        assert main(["status"]) == 0
        assert f"ambient is running: {url}\n" in capsys.readouterr().out

        made = _call(f"{base}/api/trees", token, "POST", {"text": "Once upon a time"})
        deadline = time.monotonic() + 10
        while _call(f"{base}/api/status", token)["queue"]["in_flight"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None and "stopped" in proc.stderr.read()
    assert not (tmp_path / "daemon.json").exists()
    with TreeStore(tmp_path / "ambient.sqlite3") as store:
        (offer,) = store.offers_at(made["root"]["id"])
        assert offer.state == OfferState.CANCELLED and offer.node_ids
    assert main(["status"]) == 1
    assert "not running" in capsys.readouterr().out


def test_status_says_when_no_daemon_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path))
    assert main(["status", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "running": False,
        "personal_model": {"active": None, "latest": None},  # no adapter tuned yet
    }
    (tmp_path / "daemon.json").write_text('{"port": 1}')  # stale: nothing listens there
    assert main(["status"]) == 1
    assert "not running" in capsys.readouterr().out


def test_status_says_which_personal_adapter_writes_and_why_one_was_refused() -> None:
    from ambient.commands.daemon import _adapter_lines

    assert _adapter_lines({"name": None, "share": 0.0, "problem": None}) == []
    assert _adapter_lines({"name": "personal-003", "share": 0.5, "problem": None}) == [
        "  personal adapter in use: personal-003 (50% of each offer's branches)"
    ]
    refused = "adapter personal-002 cannot be read (tune again) (sampling with the base model only)"
    assert _adapter_lines({"name": None, "share": 0.0, "problem": refused}) == [
        f"  personal adapter refused: {refused}"
    ]
