"""``ambient bench coldstart``: from a new process to the first token on a terminal, beside llama.cpp.

What a person waits for when nothing is loaded yet, each measured from the
moment the process is started, in a pseudo-terminal (so ``ambient continue``
draws its live branches, as it does for a person):

* **ambient continue -n 4**: until the first branch shows its first token (the
  model loaded, memory opened and searched, the prompt read, one step taken);
* **ambient run**: until it prints its URL (the model and memory are loaded by
  then, so an offer starts without loading anything more);
* **llama.cpp**: a new Python process that imports llama-cpp-python, loads the
  same model (the bundled Q4_K_M GGUF, the file ambient's model is converted
  from) and streams one completion of the same prompt, until its first token.

Each is run ``RUNS`` times after one unrecorded run (which creates the memory
index and warms the operating system's file cache, so the figures are for a
warm disk cache, not a machine just switched on); the median is reported.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ambient import models
from ambient.bench.measure import load_average
from ambient.config import Config
from ambient.errors import InvalidInput

RUNS = 5
TARGET_CONTINUE_S = 5.0
TARGET_RUN_S = 6.0
TIMEOUT_S = 180.0
PROMPT = "The lighthouse keeper wrote in his log that the fog had come in early, and that the ships"
BRANCH_LINE = re.compile(rb" \xe2\x94\x82 \S")  # a live branch line with text: " │ word"
URL_LINE = re.compile(rb"ambient is running: http://")
LLAMA_FIRST = b"FIRST-TOKEN"

LLAMA_SCRIPT = """
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_threads=int(sys.argv[2]), n_ctx=512, verbose=False)
for chunk in llm(sys.argv[3], max_tokens=16, stream=True, temperature=1.0):
    sys.stdout.write("FIRST-TOKEN\\n"); sys.stdout.flush()
    break
"""


def run(config: Config, quick: bool = False) -> dict[str, Any]:
    runs = 2 if quick else RUNS
    model_path = models.resolve_model_path(config)
    gguf = models.default_gguf_path(Path(config.models_dir))
    threads = config.model.threads or (os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="ambient-bench-coldstart-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir(mode=0o700)
        (home / "ambient.toml").write_text(f'[model]\npath = "{model_path.as_posix()}"\n')
        prompt = Path(tmp) / "prompt.txt"
        prompt.write_text(PROMPT + "\n")
        env = {**os.environ, "AMBIENT_HOME": str(home)}
        ambient = [sys.executable, "-m", "ambient.cli"]
        cont = [*ambient, "continue", "-n", "4", "--max-tokens", "16", str(prompt)]
        serve = [*ambient, "run", "--port", "0", "--no-browser"]
        llama = [sys.executable, "-c", LLAMA_SCRIPT, str(gguf), str(threads), PROMPT]
        _check_llama()
        load_before = load_average()
        results = {
            "continue": _repeat(lambda: _until(cont, env, BRANCH_LINE), runs),
            "run": _repeat(lambda: _until(serve, env, URL_LINE, stop=True), runs),
            "llama_cpp": _repeat(lambda: _until(llama, env, re.compile(LLAMA_FIRST)), runs),
        }
    return {
        "runs": runs,
        "threads": threads,
        "load_before": load_before,
        "load_after": load_average(),
        **results,
        "ratio_continue_vs_llama": round(
            results["continue"]["median_s"] / results["llama_cpp"]["median_s"], 2
        ),
    }


def _check_llama() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise InvalidInput(
            "the coldstart benchmark compares with llama.cpp: install llama-cpp-python (`make setup-server`)"
        ) from None


def _repeat(measure: Callable[[], float], runs: int) -> dict[str, Any]:
    measure()  # unrecorded: creates the memory index, warms the file cache
    times = [measure() for _ in range(runs)]
    return {"median_s": round(statistics.median(times), 2), "times_s": [round(t, 2) for t in times]}


def _until(cmd: list[str], env: dict[str, str], pattern: re.Pattern[bytes], stop: bool = False) -> float:
    """Seconds from starting ``cmd`` on a pseudo-terminal until its output matches ``pattern``."""
    start = time.perf_counter()
    with _on_terminal(cmd, env) as (proc, fd):
        seen = b""
        while time.perf_counter() - start < TIMEOUT_S:
            ready, _, _ = select.select([fd], [], [], 1.0)
            chunk = _read(fd) if ready else b""
            if ready and not chunk:
                break  # the process closed the terminal
            seen += chunk
            if pattern.search(seen):
                elapsed = time.perf_counter() - start
                if stop:
                    proc.send_signal(signal.SIGINT)
                return elapsed
    tail = seen[-400:].decode("utf-8", "replace")
    raise RuntimeError(f"{cmd[2:5]} showed no first token within {TIMEOUT_S:.0f} s; its output ended: {tail}")


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the other side closed
        return b""


@contextlib.contextmanager
def _on_terminal(cmd: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    main, child = pty.openpty()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=child, stderr=child, env=env, close_fds=True
    )
    os.close(child)
    try:
        yield proc, main
    finally:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            while _read(main):
                pass
        os.close(main)


def to_markdown(result: dict[str, Any]) -> str:
    r = result

    def row(name: str, key: str, target: str) -> str:
        times = ", ".join(f"{t:.2f}" for t in r[key]["times_s"])
        return f"| {name} | {r[key]['median_s']:.2f} | {times} | {target} |"

    return "\n".join(
        [
            "## Cold start: a new process to the first token",
            "",
            f"Median of {r['runs']} runs after one unrecorded run, each from starting the process in a "
            f"pseudo-terminal; {r['threads']} threads; load average before: {r['load_before']}, "
            f"after: {r['load_after']}. "
            "The disk cache is warm (the model files were read by the run before); the memory index "
            "exists and is small.",
            "",
            "| what | median (s) | runs (s) | target |",
            "| --- | ---: | --- | --- |",
            row(
                "`ambient continue -n 4`: first token shown (memory on)",
                "continue",
                f"{TARGET_CONTINUE_S:g} s",
            ),
            row("`ambient run`: URL printed, model and memory loaded", "run", f"{TARGET_RUN_S:g} s"),
            row("llama.cpp (llama-cpp-python): import, load the Q4_K_M GGUF, first token", "llama_cpp", "—"),
            "",
            f"ambient ÷ llama.cpp to the first token: **{r['ratio_continue_vs_llama']}×** (ambient samples 4 "
            "branches and searches memory; llama.cpp one branch, no memory).",
        ]
    )
