"""SpeechSource on the Hub protocol: browser PCM, files, a vanishing microphone, bad setups; the daemon."""

from __future__ import annotations

import asyncio
import json
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from ambient import places
from ambient.app import App
from ambient.config import load_config, parse_section
from ambient.errors import ConfigError, InvalidInput, ModelUnavailable
from ambient.tree import Status
from integrations.speech.audio import MicrophoneUnavailable, decode_file
from integrations.speech.bench import wer
from integrations.speech.options import SpeechOptions
from integrations.speech.source import SpeechSource
from tests.fakes import FakeSampler
from tests.hub import TestHub
from tests.integrations.speech.helpers import SENTENCES, TEXT, sox
from tests.integrations.speech.test_audio import fake_sounddevice


async def until(condition: Callable[[], bool], timeout: float = 240.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(wait(), timeout)


def _complete(hub: TestHub, source: str) -> bool:
    tree = hub.app.store.find_tree(source)
    return tree is not None and tree.meta.get("complete") is True


def spoken(hub: TestHub, session: str) -> tuple[str, list[Any]]:
    store = hub.app.store
    tree = store.find_tree(f"speech:{session}")
    assert tree is not None, f"no tree for session {session}"
    nodes = [n for n in store.tree_nodes(tree.id) if n.author.name == "speaker"]
    return "".join(n.text for n in nodes), nodes


async def started(hub: TestHub, **options: Any) -> SpeechSource:
    source = SpeechSource(hub, SpeechOptions(**options))
    await source.setup()
    return source


def test_the_integration_exposes_its_source() -> None:
    assert places.load("speech") is SpeechSource and SpeechSource.options_class is SpeechOptions
    assert SpeechSource.enabled(SpeechOptions(enabled=False))[0] is False


def test_speech_runs_without_a_table_for_the_browser(tmp_path: Path) -> None:
    config = load_config(env={"AMBIENT_HOME": str(tmp_path / "home")})
    assert "speech" not in config.sources and "speech" in places.configured(config)
    assert SpeechSource.autostart and places.options(config, SpeechSource).input == "none"


async def test_browser_only_loads_whisper_at_the_first_session(hub: TestHub, speech_16k: Path) -> None:
    source = await started(hub)
    assert source.status()["loaded"] is False  # a start nobody speaks to does not wait for Whisper
    with wave.open(str(speech_16k), "rb") as file:
        first_sentence = file.readframes(int(4.5 * 16000))
    await source.feed_pcm16("first", first_sentence, 16000)  # returns at once; the model loads meanwhile
    await source.end_session("first")
    assert source.status()["loaded"] is True
    text, _ = spoken(hub, "first")
    assert wer(SENTENCES[0], text) <= 0.15, text
    await source.unload()


async def test_a_broken_model_is_reported_at_the_first_session(hub: TestHub, tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (broken / name).write_bytes(b"not a model")
    source = await started(hub, model=str(broken))  # browser only: the folder looks right, nothing loads
    await source.feed_pcm16("b1", bytes(3200), 16000)
    await until(lambda: any(d["state"] == "ended" for d in hub.of_kind("speech_status")), 30)
    errors = [d["message"] for d in hub.of_kind("speech_status") if d["state"] == "error"]
    assert len(errors) == 1 and errors[0].startswith("speech is off: the speech model did not load (")
    assert str(broken) in errors[0] and source.status()["error"] == errors[0]
    with pytest.raises(ModelUnavailable) as refused:  # the UI stops its microphone on "speech is off"
        await source.feed_pcm16("b2", bytes(3200), 16000)
    assert str(refused.value) == errors[0]
    await source.unload()


# ---------------------------------------------------------------- setup errors
def test_options_are_typed_and_checked() -> None:
    options = parse_section(SpeechOptions, {"pause_seconds": "2.5", "input": "mic"}, "sources.speech")
    assert options.pause_seconds == 2.5
    with pytest.raises(ConfigError, match=r"unknown key 'sources.speech.pause'"):
        parse_section(SpeechOptions, {"pause": 1}, "sources.speech")
    with pytest.raises(ConfigError, match="pause_seconds must be above 0"):
        SpeechOptions(pause_seconds=0).validate()
    with pytest.raises(ConfigError, match="device must be auto, cpu or cuda"):
        SpeechOptions(device="tpu").validate()


async def test_a_model_that_is_not_a_folder(hub: TestHub, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="not a folder.*would need a download"):
        await started(hub, model="tiny.en")
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ModelUnavailable, match="lacks config.json, tokenizer.json"):
        await started(hub, model=str(tmp_path))


async def test_a_missing_input_file(hub: TestHub, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="is not a file"):
        await started(hub, input=str(tmp_path / "missing.wav"))


async def test_mic_input_without_sounddevice(hub: TestHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(MicrophoneUnavailable, match="sounddevice"):
        await started(hub, input="mic")


def test_a_gpu_gets_float16_and_a_cpu_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctranslate2

    from integrations.speech.transcriber import resolve_device

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    assert resolve_device("auto", "auto") == ("cuda", "float16")
    assert resolve_device("cpu", "auto") == ("cpu", "int8")
    assert resolve_device("auto", "int8_float16") == ("cuda", "int8_float16")
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 0)
    assert resolve_device("auto", "auto") == ("cpu", "int8")


# ---------------------------------------------------------------- browser frames
@pytest.fixture(scope="module")
def pcm_48k(speech_22k: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = sox(speech_22k, tmp_path_factory.mktemp("pcm") / "48k.wav", rate=48000)
    with wave.open(str(path), "rb") as file:
        assert (file.getframerate(), file.getnchannels(), file.getsampwidth()) == (48000, 1, 2)
        return file.readframes(file.getnframes())


async def test_browser_pcm_becomes_a_tree_and_pauses_become_offers(hub: TestHub, pcm_48k: bytes) -> None:
    source = await started(hub)
    frame = 48000 * 2 // 50  # 20 ms of 16-bit samples, as a browser sends them
    for i in range(0, len(pcm_48k), frame):
        await source.feed_pcm16("browser-1", pcm_48k[i : i + frame], 48000)
        if i % (frame * 10) == 0:
            await asyncio.sleep(0.01)  # the socket's pace; transcription runs meanwhile
    await until(lambda: len(hub.offers) >= len(SENTENCES) - 1)  # a pause after each sentence but the last
    await source.end_session("browser-1")
    text, nodes = spoken(hub, "browser-1")
    assert wer(TEXT, text) <= 0.15, text
    assert all(n.status is Status.PICKED and n.author.kind == "human" for n in nodes)
    assert len(hub.offers) == len(SENTENCES)  # ending the session is the last pause
    assert [e.parent_id for e in hub.events] == [n.id for n in nodes][-len(hub.events) :]
    assert {e.source for e in hub.events} == {"speech"} and {e.key for e in hub.events} == {"browser-1"}
    transcripts = hub.of_kind("transcript")
    assert any(t["tentative"] for t in transcripts), "the uncommitted tail is shown"
    committed = "".join(s["text"] for t in transcripts for s in t["committed"])
    assert committed.strip() == text.strip()
    assert sum(t["pauses"] for t in transcripts) == len(SENTENCES)
    assert {k for k, _ in hub.published} <= {"transcript", "speech_status"}
    await source.unload()


async def test_bad_frames_are_refused_and_the_session_goes_on(hub: TestHub) -> None:
    source = await started(hub)
    with pytest.raises(InvalidInput, match="even number of bytes"):
        await source.feed_pcm16("s1", b"\x00\x01\x02", 16000)
    with pytest.raises(InvalidInput, match="sample rate 1000000000 Hz is out of range"):
        await source.feed_pcm16("s1", b"\x00\x00", 10**9)
    with pytest.raises(InvalidInput, match="session id"):
        await source.feed_pcm16("../etc", b"\x00\x00", 16000)
    await source.feed_pcm16("s1", bytes(32000), 16000)  # one second of silence is fine
    await source.end_session("s1")
    assert hub.app.store.find_tree("speech:s1") is None  # silence stores nothing
    assert hub.offers == []
    await source.unload()


# ---------------------------------------------------------------- a file
async def test_a_file_input_is_transcribed_once(hub: TestHub, speech_44k_stereo: Path) -> None:
    options = {"input": str(speech_44k_stereo), "realtime": False, "session": "talk"}
    source = await started(hub, **options)
    task = asyncio.create_task(source.run())
    await until(lambda: any(d["state"] == "ended" for d in hub.of_kind("speech_status")))
    text, _ = spoken(hub, "talk")
    assert wer(TEXT, text) <= 0.15, text
    await until(lambda: len(hub.offers) == len(SENTENCES), 30)
    # the file's tree is marked complete just after its session ends (a moment later under load)
    await until(lambda: _complete(hub, "speech:talk"), 30)
    tree = hub.app.store.find_tree("speech:talk")
    assert tree is not None and tree.meta.get("complete") is True
    assert not task.done()  # run() goes on, for browser sessions
    task.cancel()
    await source.unload()

    again = await started(hub, **options)
    task = asyncio.create_task(again.run())
    await asyncio.sleep(0.5)
    assert len(hub.app.store.tree_nodes(tree.id)) == len(spoken(hub, "talk")[1]) + 2 * len(SENTENCES)
    assert len(hub.offers) == len(SENTENCES)
    task.cancel()
    await again.unload()


async def test_a_truncated_file_keeps_what_was_said(hub: TestHub, speech_16k: Path, tmp_path: Path) -> None:
    data = speech_16k.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: int(len(data) * 0.4)])  # the first sentence and a bit
    source = await started(hub, input=str(cut), realtime=False, session="cut")
    task = asyncio.create_task(source.run())
    await until(lambda: any(d["state"] == "ended" for d in hub.of_kind("speech_status")))
    warnings = [d["message"] for d in hub.of_kind("speech_status") if d["state"] == "warning"]
    assert any("truncated" in m for m in warnings), warnings
    text, _ = spoken(hub, "cut")
    assert wer(SENTENCES[0], text.split(".")[0]) <= 0.15, text
    assert not task.done()
    task.cancel()
    await source.unload()


async def test_an_unreadable_file_is_reported_and_the_source_keeps_running(
    hub: TestHub, tmp_path: Path
) -> None:
    bad = tmp_path / "notes.mp3"
    bad.write_text("not audio at all")
    source = await started(hub, input=str(bad), realtime=False)
    task = asyncio.create_task(source.run())
    await until(lambda: any(d["state"] == "error" for d in hub.of_kind("speech_status")), 30)
    errors = [d["message"] for d in hub.of_kind("speech_status") if d["state"] == "error"]
    assert "WAV, FLAC, OGG or MP3" in errors[0]
    assert source.status()["error"] == errors[0]
    await asyncio.sleep(0.2)
    assert not task.done()
    task.cancel()
    await source.unload()


# ---------------------------------------------------------------- a microphone that goes away
async def test_a_microphone_that_disappears_keeps_the_transcript(
    hub: TestHub, speech_16k: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = decode_file(speech_16k).samples
    blocks = [samples[i : i + 1600] for i in range(0, len(samples), 1600)]
    unplug_after = len(blocks) * 2 // 3  # during the third sentence
    fake = fake_sounddevice(reads_before_unplug=unplug_after)

    class Mic(fake.InputStream):  # type: ignore[name-defined,misc]
        def read(self, frames: int) -> tuple[np.ndarray, bool]:
            super().read(frames)
            return blocks[self.reads - 1].reshape(-1, 1), False

    fake.InputStream = Mic  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    source = await started(hub, input="mic", session="desk", mic_retry_seconds=0.2)
    task = asyncio.create_task(source.run())
    await until(lambda: any(d["state"] == "error" for d in hub.of_kind("speech_status")))
    await until(lambda: any(d["state"] == "ended" for d in hub.of_kind("speech_status")))
    errors = [d["message"] for d in hub.of_kind("speech_status") if d["state"] == "error"]
    assert "went away" in errors[0] and "transcript so far is kept" in errors[0]
    text, _ = spoken(hub, "desk")
    said_before = " ".join(SENTENCES[:2])
    assert wer(said_before, " ".join(text.split()[: len(said_before.split())])) <= 0.15, text
    assert len(hub.offers) >= 2
    # it listens again: the device is back, and the session goes on in the same tree
    await until(lambda: sum(d["state"] == "listening" for d in hub.of_kind("speech_status")) >= 2, 30)
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await source.unload()


# ---------------------------------------------------------------- the real daemon and its API
async def test_a_pause_makes_an_offer_through_the_daemon_api(tmp_path: Path, speech_16k: Path) -> None:
    from ambient.server import serve

    config = load_config(env={"AMBIENT_HOME": str(tmp_path / "home")}).replace(
        memory__enabled=False,
        server__port=0,
        server__debounce_ms=0,
        sampling__n=3,
        sources={"speech": {"input": str(speech_16k), "realtime": False, "session": "api"}},
    )
    app = App(config, sampler=FakeSampler())
    async with serve(config, app) as server, aiohttp.ClientSession() as http:
        daemon = server.daemon
        sub = daemon.subscribe()
        seen: list[dict[str, Any]] = []

        async def offers_done() -> None:
            while sum(e["type"] == "offer_done" for e in seen) < len(SENTENCES):
                message = await sub.queue.get()
                assert message is not None
                seen.append(json.loads(message))

        await asyncio.wait_for(offers_done(), 240)
        headers = {"Authorization": f"Bearer {server.token}"}
        base = f"http://127.0.0.1:{server.port}"
        async with http.get(f"{base}/api/trees", headers=headers) as response:
            trees = (await response.json())["trees"]
        tree = next(t for t in trees if t["source"] == "speech:api")
        async with http.get(f"{base}/api/trees/{tree['id']}", headers=headers) as response:
            view = await response.json()
        speaker = [n for n in view["nodes"] if n["author"]["name"] == "speaker"]
        assert wer(TEXT, "".join(n["text"] for n in speaker)) <= 0.15
        assert {o["parent_id"] for o in view["offers"]} == {n["id"] for n in speaker[-len(view["offers"]) :]}
        assert all(len(o["node_ids"]) == 3 for o in view["offers"])
        kinds = {e["type"] for e in seen}
        assert {"transcript", "speech_status", "offer_done"} <= kinds
        async with http.get(f"{base}/api/status", headers=headers) as response:
            status = await response.json()
        assert status["sources"]["speech"]["state"] == "running"
    app.close()
