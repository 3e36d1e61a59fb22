"""The browser microphone as a newcomer meets it: the default configuration, Chromium, click Speak.

Chromium's fake capture device plays an espeak-ng WAV of known sentences into
``getUserMedia``; the page's AudioWorklet (``static/mic-worklet.js``) turns it
into 16 kHz 16-bit frames sent over the event socket to the daemon, which runs
the speech place although ``ambient.toml`` has no ``[sources.speech]`` table.
The test sees the frames leave the page and reach the daemon (the transcript
events count the seconds of audio it heard), then the spoken words committed in
the page and stored as the speaker's nodes, within a word error rate of 15%.

Audio path: headless Chromium renders the Web Audio graph without a sound card
or sound server (its audio output falls back to a fake, timer-driven stream), so
no PulseAudio or Xvfb is needed; the test asserts the frames carry sound, so a
silent graph fails it instead of passing unnoticed.
"""

from __future__ import annotations

import time
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ambient.config import load_config
from integrations.speech.bench import wer
from tests.integrations.speech.helpers import SENTENCES, sox, speak
from tests.test_web import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, DaemonThread

SPOKEN = SENTENCES[:2]
LEAD_S, TAIL_S = 1.0, 3.0  # silence before the speech (the capture starts before the worklet) and after
FRAME_BYTES = 3200  # 100 ms of 16-bit mono at 16 kHz, what the worklet posts
MAX_WER = 0.15

# In the page: every event the daemon sends (type and data), and every binary frame the page sends.
RECORDER = """
window.__events = [];
window.__frames = [];
const Original = window.WebSocket;
window.WebSocket = class extends Original {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (m) => window.__events.push(JSON.parse(m.data)));
  }
  send(data) {
    if (data instanceof ArrayBuffer) {
      const pcm = new Int16Array(data);
      let peak = 0;
      for (const v of pcm) peak = Math.max(peak, Math.abs(v));
      window.__frames.push([data.byteLength, peak]);
    }
    return super.send(data);
  }
};
"""


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The spoken sentences with silence around them, and the file's length in seconds."""
    folder = tmp_path_factory.mktemp("web-mic")
    spoken = speak(SPOKEN, folder / "spoken.wav")
    path = sox(spoken, folder / "capture.wav", "pad", str(LEAD_S), str(TAIL_S))
    with wave.open(str(path), "rb") as file:
        return path, file.getnframes() / file.getframerate()


@pytest.fixture(scope="module")
def daemon(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonThread]:
    """The daemon with the configuration `ambient prepare --demo` writes: no [sources.speech] table."""
    home = tmp_path_factory.mktemp("web-mic-home")
    config = load_config(env={"AMBIENT_HOME": str(home)}).replace(
        model__backend="local",
        model__path=str(tiny_model_path),
        model__device="cpu",
        server__port=0,
        sampling__n=2,
        sampling__max_tokens=8,
        memory__enabled=False,
    )
    assert "speech" not in config.sources
    with DaemonThread(config) as d:
        yield d


@pytest.fixture(scope="module")
def page(daemon: DaemonThread, wav: tuple[Path, float]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    fake_mic = [
        "--use-fake-ui-for-media-stream",  # allow the microphone without asking
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav[0]}%noloop",  # the WAV once, then silence
        "--autoplay-policy=no-user-gesture-required",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *fake_mic])
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_init_script(RECORDER)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        yield pg
        browser.close()
        assert errors == [], errors


def _poll(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)
    return value


def test_speak_in_the_browser_with_the_default_configuration(
    daemon: DaemonThread, page: Any, wav: tuple[Path, float]
) -> None:
    assert daemon.api("/api/status")["sources"]["speech"]["state"] == "running"
    base = daemon.url.split("/#")[0]
    with urllib.request.urlopen(base + "/static/mic-worklet.js", timeout=10) as response:  # public, no token
        assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert b'registerProcessor("mic-frames"' in response.read()
    page.goto(daemon.url)
    page.wait_for_selector("#conn.on")  # the event socket is signed in
    page.click("#mic")
    page.wait_for_selector('#mic[aria-pressed="true"]')
    session = page.evaluate("() => Mic.session")
    assert session and session.startswith("browser-")

    # Frames leave the page: 100 ms each, for as long as the WAV plays, and they carry sound.
    seconds = wav[1]
    frames = _poll(
        lambda: (f := page.evaluate("() => window.__frames")) and len(f) >= seconds * 10 and f,
        timeout=seconds + 30,
        what=f"{seconds:.1f} s of audio frames from the page",
    )
    assert {size for size, _ in frames} == {FRAME_BYTES}
    assert max(peak for _, peak in frames) > 1000, "the page's audio graph delivered silence"

    def events(kind: str) -> list[dict[str, Any]]:
        found = page.evaluate("(kind) => window.__events.filter((e) => e.type === kind)", kind)
        return [e["data"] for e in found if e["data"].get("session") == session]

    # ... and reach the daemon: its transcripts count the seconds of audio it heard.
    heard = _poll(
        lambda: max((t["time"] for t in events("transcript")), default=0.0) >= LEAD_S + 2.0,
        timeout=120,
        what="the daemon's transcript of the spoken audio",
    )
    assert heard
    page.click("#mic")  # Stop: the rest is committed and stored
    page.wait_for_selector('#mic[aria-pressed="false"]')
    _poll(lambda: [s for s in events("speech_status") if s["state"] == "ended"], 240, "the session's end")
    errors = page.evaluate("() => window.__events.filter((e) => e.type === 'error')")
    assert errors == [], errors
    transcripts = events("transcript")
    assert max(t["time"] for t in transcripts) >= seconds - TAIL_S  # every spoken second reached it

    reference = " ".join(SPOKEN)
    committed = "".join(c["text"] for t in transcripts for c in t["committed"])
    assert wer(reference, committed) <= MAX_WER, committed
    shown = page.locator("#transcript-text .committed").inner_text()
    assert wer(reference, shown) <= MAX_WER, shown

    tree_id = next(t["tree_id"] for t in transcripts if t["tree_id"])
    view = daemon.api(f"/api/trees/{tree_id}")
    assert view["tree"]["source"] == f"speech:{session}"
    spoken = [n for n in view["nodes"] if n["author"]["name"] == "speaker"]
    assert spoken and all(n["author"]["kind"] == "human" for n in spoken)
    stored = " ".join(n["text"] for n in spoken)
    assert wer(reference, stored) <= MAX_WER, stored
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-ui-mic.png"))
