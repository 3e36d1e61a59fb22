"""Real speech for the tests: espeak-ng says known sentences, sox converts."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

SENTENCES = (
    "I keep coming back to the idea of a small garden behind the house.",
    "The train to the city leaves every hour from the north station.",
    "Please write down the number before you forget it.",
)
TEXT = " ".join(SENTENCES)
PAUSE_MS = 2200
VOICE = ("-v", "en-us", "-s", "150")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: `apt-get install -y espeak-ng sox` (make test does it)")
    return path


def speak(sentences: Sequence[str], out: Path, pause_ms: int = PAUSE_MS) -> Path:
    """A WAV file (espeak-ng's own 22.05 kHz mono) of ``sentences`` with pauses between them."""
    ssml = "<speak>" + f' <break time="{pause_ms}ms"/> '.join(sentences) + "</speak>"
    subprocess.run([need("espeak-ng"), *VOICE, "-m", "-w", str(out), ssml], check=True)
    return out


def sox(src: Path, out: Path, *effects: str, rate: int | None = None, channels: int | None = None) -> Path:
    """Convert with sox (rate, channels, effects)."""
    args = [need("sox"), str(src)]
    if rate:
        args += ["-r", str(rate)]
    if channels:
        args += ["-c", str(channels)]
    subprocess.run([*args, str(out), *effects], check=True, capture_output=True)
    return out


def synth(out: Path, seconds: float, kind: str, rate: int = 16000) -> Path:
    """sox-made silence or noise (``kind``: "silence", "whitenoise", "pinknoise", "brownnoise")."""
    if kind == "silence":
        effects = ["trim", "0", str(seconds)]
        args = [need("sox"), "-n", "-r", str(rate), "-c", "1", "-b", "16", str(out), *effects]
    else:
        args = [need("sox"), "-n", "-r", str(rate), "-c", "1", "-b", "16", str(out)]
        args += ["synth", str(seconds), kind, "vol", "0.3"]
    subprocess.run(args, check=True, capture_output=True)
    return out
