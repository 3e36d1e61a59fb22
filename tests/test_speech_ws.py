"""Speaking from the browser: 16 kHz PCM frames over the daemon's WebSocket reach the speech source.

Real audio (espeak-ng, sox), the real tiny.en Whisper, the real daemon and a real WebSocket (aiohttp's
test client): with the default configuration (no [sources.speech] table: the browser's frames need no
audio device on the server) a transcript with committed text comes back and the session's tree gets
the speaker's nodes. When speech is off (turned off, or its setup failed) the client is told why; a bad
frame is an error message and the socket stays usable.
"""

from __future__ import annotations

import asyncio
import json
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from ambient.app import App
from ambient.daemon import Daemon
from integrations.speech.bench import wer
from tests.fakes import FakeSampler
from tests.integrations.speech.helpers import SENTENCES, sox, speak
from tests.test_server import make_config
from tests.web_app import bearer, web_app

pytestmark = pytest.mark.strict_loop  # the daemon never blocks its event loop

FRAME = 16000 * 2 // 10  # 100 ms of 16-bit mono samples at 16 kHz, as the UI sends them


@pytest.fixture(scope="module")
def pcm_16k(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("speech-ws")
    path = sox(speak(SENTENCES[:2], folder / "22k.wav"), folder / "16k.wav", rate=16000)
    with wave.open(str(path), "rb") as file:
        assert (file.getframerate(), file.getnchannels(), file.getsampwidth()) == (16000, 1, 2)
        return file.readframes(file.getnframes())


class Socket:
    """A client WebSocket whose incoming text messages are collected in the background."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))
                self._changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    async def until(self, condition: Callable[[], Any], timeout: float = 240.0) -> Any:
        async def wait() -> Any:
            while not (value := condition()):
                self._changed.clear()
                await self._changed.wait()
            return value

        return await asyncio.wait_for(wait(), timeout)

    async def next(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        seen = len(self.of(kind))
        found = await self.until(lambda: self.of(kind)[seen:], timeout)
        message: dict[str, Any] = found[0]
        return message

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._task, return_exceptions=True)


async def connect(client: TestClient[Any, Any]) -> Socket:
    socket = Socket(await client.ws_connect("/api/events"))
    await socket.next("hello")
    return socket


async def serve(
    tmp_path: Path, aiohttp_client: Any, sources: dict[str, Any]
) -> AsyncIterator[tuple[Daemon, TestClient[Any, Any]]]:
    config = make_config(tmp_path / "home", sources=sources, sampling__n=2)
    app = App(config, sampler=FakeSampler())
    async with Daemon(config, app) as daemon:
        served = web_app(daemon)
        client = await aiohttp_client(served, headers=bearer(served))
        yield daemon, client
    app.close()


@pytest.fixture
async def speaking(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[tuple[Daemon, TestClient[Any, Any]]]:
    """The default configuration: no [sources.speech] table, and speech runs for the browser."""
    async for pair in serve(tmp_path, aiohttp_client, {}):
        assert pair[0].sources.get("speech") is not None, pair[0].sources.status()
        yield pair


OFF = {
    "turned off": ({"enabled": False}, "speech is off (sources.speech.enabled = false)"),
    "setup failed": (
        {"input": "/no/such/recording.wav"},
        "speech is off (sources.speech.input '/no/such/recording.wav' is not a file: give an audio file, "
        "'mic', or 'none' (browser only))",
    ),
}


@pytest.fixture(params=sorted(OFF))
async def silent(
    request: pytest.FixtureRequest, tmp_path: Path, aiohttp_client: Any
) -> AsyncIterator[tuple[Daemon, TestClient[Any, Any], str]]:
    table, message = OFF[request.param]
    async for daemon, client in serve(tmp_path, aiohttp_client, {"speech": table}):
        assert daemon.sources.get("speech") is None
        yield daemon, client, message


async def test_spoken_frames_come_back_as_a_transcript_and_a_tree(
    speaking: tuple[Daemon, TestClient[Any, Any]], pcm_16k: bytes
) -> None:
    daemon, client = speaking
    socket = await connect(client)
    await socket.ws.send_str(json.dumps({"type": "speech_start", "session": "ws-1", "sample_rate": 16000}))
    for i in range(0, len(pcm_16k), FRAME):
        await socket.ws.send_bytes(pcm_16k[i : i + FRAME])
        if i % (FRAME * 10) == 0:
            await asyncio.sleep(0.01)
    first = await socket.until(
        lambda: [t for t in socket.of("transcript") if t["data"]["committed"]], timeout=240
    )
    assert first[0]["data"]["session"] == "ws-1" and first[0]["data"]["tree_id"]
    await socket.ws.send_str(json.dumps({"type": "speech_stop", "session": "ws-1"}))
    await socket.until(
        lambda: [s for s in socket.of("speech_status") if s["data"]["state"] == "ended"], timeout=240
    )
    assert not socket.of("error"), socket.of("error")
    committed = "".join(c["text"] for t in socket.of("transcript") for c in t["data"]["committed"])
    assert wer(" ".join(SENTENCES[:2]), committed) <= 0.2, committed

    tree = daemon.app.store.find_tree("speech:ws-1")
    assert tree is not None
    resp = await client.get(f"/api/trees/{tree.id}")
    view = await resp.json()
    spoken = [n for n in view["nodes"] if n["author"]["name"] == "speaker"]
    assert spoken and all(n["author"]["kind"] == "human" for n in spoken)
    assert "".join(n["text"] for n in spoken).strip() == committed.strip()
    await socket.until(lambda: socket.of("offer_done"), timeout=60)  # the pauses ask for offers
    await socket.close()


async def test_an_odd_frame_is_an_error_and_the_socket_goes_on(
    speaking: tuple[Daemon, TestClient[Any, Any]],
) -> None:
    _, client = speaking
    socket = await connect(client)
    await socket.ws.send_bytes(bytes(FRAME))
    assert "speech_start" in (await socket.next("error"))["message"]  # audio before speech_start
    await socket.ws.send_str(json.dumps({"type": "speech_start", "session": "ws-2"}))
    await socket.ws.send_bytes(b"\x00\x01\x02")
    error = await socket.next("error")
    assert "even number of bytes" in error["message"] and error["data"]["message"] == error["message"]
    await socket.ws.send_bytes(bytes(FRAME))  # still listening: silence is fine
    await socket.ws.send_str("ping")
    await socket.next("pong")
    await socket.ws.send_str(json.dumps({"type": "speech_start", "session": "../etc"}))
    await socket.ws.send_bytes(bytes(FRAME))
    assert "session id" in (await socket.next("error"))["message"]
    await socket.ws.send_str("{not json")
    assert "JSON" in (await socket.next("error"))["message"]
    assert len(socket.of("error")) == 4 and not socket.ws.closed
    await socket.close()


async def test_when_speech_is_off_the_client_is_told_why(
    silent: tuple[Daemon, TestClient[Any, Any], str],
) -> None:
    _, client, message = silent
    socket = await connect(client)
    await socket.ws.send_str(json.dumps({"type": "speech_start", "session": "ws-3", "sample_rate": 16000}))
    assert (await socket.next("error"))["message"] == message  # the UI stops its mic on "speech is off"
    await socket.ws.send_bytes(bytes(FRAME))
    assert (await socket.next("error"))["message"] == message
    await socket.ws.send_str("ping")
    await socket.next("pong")
    assert len(socket.of("error")) == 2 and not socket.ws.closed
    await socket.close()
