"""The path a newcomer takes, on the real default model (Gemma 3 270M), as separate processes.

`ambient prepare --demo` (the test model cache stands in for the first
conversion), `ambient run`, a note saved the way editors save (a temporary file
renamed over it), N offers streamed over the WebSocket with real tokens and
logprobs, an accept through the API, and the note holding the text afterwards;
then Ctrl-C stops the daemon cleanly. The browser half of the path (typing in
the UI, offers streaming in, a pick) runs on the real model in
``test_the_ui_on_the_real_model``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ambient.config import load_config
from ambient.models import DEFAULT_MODEL_DIRNAME
from tests.test_web import CHROMIUM, CHROMIUM_ARGS, DaemonThread

AMBIENT = Path(sys.executable).with_name("ambient")
ADDED = "\nShe climbed the stairs and lit the lamp, and far out at sea"


def cli_env(home: Path) -> dict[str, str]:
    return {**os.environ, "AMBIENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture
def home(tmp_path: Path, default_model_path: Path) -> Path:
    """A fresh home whose model folder is the test cache's (prepare finds it ready, as after a first run)."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / DEFAULT_MODEL_DIRNAME).symlink_to(default_model_path, target_is_directory=True)
    return home


@pytest.fixture
def running(home: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    prepared = subprocess.run(
        [str(AMBIENT), "prepare", "--demo", "--json"],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert prepared.returncode == 0, prepared.stderr
    proc = subprocess.Popen(
        [str(AMBIENT), "run", "--port", "0", "--no-browser"],
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = _url(proc)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def _url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if found := re.search(r"ambient is running: (\S+)", line):
            return found.group(1)
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"ambient run did not start: {proc.stderr.read() if proc.stderr else ''}")


def save_like_an_editor(note: Path, text: str) -> None:
    """Write a temporary file beside the note and rename it over the note (vim, VS Code, ...)."""
    temp = note.with_name(f".{note.name}.swp")
    temp.write_text(text)
    os.replace(temp, note)


async def _offer_over_the_socket(
    base: str, token: str, note: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http, http.ws_connect(f"{base}/api/events") as ws:
        assert (await ws.receive_json(timeout=30))["type"] == "hello"
        save_like_an_editor(note, note.read_text() + ADDED)
        tokens: list[dict[str, Any]] = []
        started: dict[str, Any] = {}
        while True:
            event = await ws.receive_json(timeout=120)
            if event["type"] == "offer_started" and event["data"]["source"] == "notes":
                started = event["data"]
            elif event["type"] == "token" and started and event["data"]["offer_id"] == started["offer_id"]:
                tokens.append(event["data"])
            elif (
                event["type"] == "offer_done"
                and started
                and event["data"]["offer"]["id"] == started["offer_id"]
            ):
                return event["data"], tokens
            elif event["type"] == "offer_failed":
                raise AssertionError(f"the offer failed: {event['data']}")


async def _accept(base: str, token: str, node_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(f"{base}/api/nodes/{node_id}/accept", json={}) as response,
    ):
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


def test_prepare_run_save_offer_accept(home: Path, running: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = running
    base, token = url.split("/#token=")
    config = load_config(env={"AMBIENT_HOME": str(home)})
    [note] = [Path(f) / "welcome.md" for f in config.sources["notes"]["folders"]]
    began = time.monotonic()
    done, tokens = asyncio.run(_offer_over_the_socket(base, token, note))
    offered_in = time.monotonic() - began
    nodes = done["nodes"]
    assert len(nodes) == config.sampling.n == 4
    assert {t["branch"] for t in tokens} == set(range(4))
    assert all(isinstance(t["logprob"], float) and t["logprob"] <= 0.0 and t["top"] for t in tokens)
    for node in nodes:  # each branch's streamed tokens make up its stored text
        assert "".join(t["text"] for t in tokens if t["branch"] == node["branch"]) == node["text"]
    chosen = max(nodes, key=lambda n: len(n["text"].strip()))
    assert chosen["text"].strip(), "the model wrote nothing in any branch"
    before = note.read_text()
    accepted = asyncio.run(_accept(base, token, chosen["id"]))["accepted"]
    assert note.read_text() == before + chosen["text"] and accepted["path"] == str(note)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0
    print(f"save -> offer of 4 on the real model in {offered_in:.1f} s")


def test_the_ui_on_the_real_model(home: Path, default_model_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    config = load_config(env={"AMBIENT_HOME": str(home)}).replace(
        server__port=0, sampling__n=3, sampling__max_tokens=12
    )
    with DaemonThread(config) as daemon, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(daemon.url)
        page.fill("#first-text", "The lighthouse keeper had not spoken to anyone in three weeks when")
        page.click("#first-go")
        cards = page.locator("#offers .card[data-id]")
        expect(cards).to_have_count(3, timeout=120_000)
        expect(page.locator("#offers .card[data-id] .tok").first).to_be_visible()
        picked = cards.nth(1).get_attribute("data-id")
        cards.nth(1).locator('button[data-act="pick"]').click()
        expect(page.locator(f'#path .seg.current[data-id="{picked}"]')).to_have_count(1, timeout=10_000)
        node = daemon.api(f"/api/nodes/{picked}")["node"]
        browser.close()
    assert errors == [], errors
    assert node["status"] == "picked" and node["author"]["kind"] == "model"
    assert node["tokens"] and all(t["logprob"] is not None for t in node["tokens"])
    assert node["author"]["settings"]["n"] == 3
