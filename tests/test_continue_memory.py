"""Peak memory of a real ``ambient continue -n 8`` (issue #17's target: 1.6 GB resident, memory on).

The real CLI in a process of its own, the real default model, a fresh home
(chromadb and the MiniLM embedder open beside the model, as always), a prompt
of about 1,000 tokens of text nobody here wrote (the Loom fixture). The peak is
the child's own ``ru_maxrss`` from ``wait4``, read by a small Python trampoline
that starts it: Linux carries the high-water mark of the memory a process
replaces at ``exec`` into its ``ru_maxrss``, and ``subprocess`` starts children
with ``vfork``, so a child started straight from the test process would report
the test process's own peak (7.5 GB after the whole suite, measured in CI).
Measured on the project's 2-core machine: 1.45-1.55e9 bytes (1.40-1.44 GiB),
once 1.638e9 in a whole-suite CI run; before issue #17's changes, 2.31-2.38e9
bytes. The peak varies with how the loading threads interleave, so this guard
fails at 1.75e9 bytes (a regression towards the old 2.3e9), above the target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.loom_fixture import node_texts, read

AMBIENT = Path(sys.executable).with_name("ambient")
# Starts argv[2:], waits for it, writes "EXIT_CODE MAXRSS_KB" to argv[1]: a small process, so the
# peak its child inherits at exec is a few MB, not the test process's.
TRAMPOLINE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
child.returncode = 0
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""
LIMIT_BYTES = 1_750_000_000  # the target is 1.6e9; see the module docstring
PROMPT_CHARS = 4000  # about 1,000 Gemma tokens of this text


def loom_text(chars: int) -> str:
    """The Loom fixture's node texts, root first, joined up to ``chars`` characters."""
    return "".join(node_texts(read("loom_demo.json")["root"]))[:chars]


def test_continue_n8_peak_memory_stays_down(default_model_path: Path, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(loom_text(PROMPT_CHARS), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBIENT_")}  # the defaults: memory on
    env.update(AMBIENT_HOME=str(tmp_path / "home"), AMBIENT_MODEL_PATH=str(default_model_path))
    argv = [str(AMBIENT), "continue", "-n", "8", "--max-tokens", "32", "--seed", "7", "--json", str(prompt)]
    out, err, report = tmp_path / "out.json", tmp_path / "err.txt", tmp_path / "peak.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        subprocess.run(
            [sys.executable, "-c", TRAMPOLINE, str(report), *argv], env=env, stdout=stdout, stderr=stderr,
            check=True, timeout=600,
        )  # fmt: skip
    code, maxrss_kb = (int(x) for x in report.read_text().split())
    assert code == 0, err.read_text()
    result = json.loads(out.read_text())
    assert len(result["continuations"]) == 8
    assert result["provenance"]["memory"] == "on"  # the embedder and chromadb were in the process too
    assert 900 <= result["provenance"]["source"]["tokens"] <= 1100
    peak = maxrss_kb * 1024  # kB on Linux
    assert peak <= LIMIT_BYTES, f"peak RSS {peak / 1e9:.3f} GB > {LIMIT_BYTES / 1e9} GB"
