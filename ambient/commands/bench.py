"""``ambient bench NAME``: run a benchmark and write its section of BENCHMARKS.md.

Each benchmark is a module with ``run(config, **options) -> dict`` and
``to_markdown(result) -> str``: the core's are ``ambient.bench.<name>``; each place
adds its own (:meth:`ambient.sources.Source.benchmarks`). A module with
``LONG = True`` is left out of ``all``. Results replace the benchmark's own section
of BENCHMARKS.md (between marker comments), under a description of the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from ambient import places
from ambient.app import App
from ambient.commands.progress import items, shown
from ambient.errors import InvalidInput

CORE = ("sampling", "memory", "latency", "coldstart", "quality", "tune")
CORE_BENCHMARKS = {name: f"ambient.bench.{name}" for name in CORE}


def benchmarks() -> dict[str, str]:
    """Every benchmark: the core's, then each installed place's (name -> module)."""
    found = dict(CORE_BENCHMARKS)
    for place in places.installed().values():
        for name, module in place.benchmarks().items():
            found.setdefault(name, module)
    return found


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure speed and memory; results go into BENCHMARKS.md",
        description="Run a benchmark side by side with the obvious alternative and record the figures.",
    )
    p.add_argument("name", choices=[*benchmarks(), "all"])
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument("--output", default="BENCHMARKS.md", help="file to update (default: BENCHMARKS.md)")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--backend", default=None, help="sampling bench: local or openai")
    p.add_argument("--url", default=None, help="sampling bench: OpenAI-compatible server URL")
    p.add_argument("--signals", action="store_true", help="sampling bench: cost of per-token signals")
    p.add_argument("--minutes", type=float, default=None, help="soak bench: how long (default 30)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace, app: App) -> int:
    found = benchmarks()
    names = list(found) if args.name == "all" else [args.name]
    for name in items(names, "benchmarks", len(names) > 1 and shown(args.json)):
        try:
            module = importlib.import_module(found[name])
        except ModuleNotFoundError as exc:
            raise InvalidInput(f"benchmark {name!r} needs the package {exc.name!r}: install it") from None
        if args.name == "all" and getattr(module, "LONG", False):
            continue
        options = _options_for(module, args)
        result = module.run(app.config, **options)
        markdown = module.to_markdown(result)
        if args.json:
            print(json.dumps(result, indent=2, default=str))
        else:
            print(markdown)
        if not args.no_write:  # a variant (e.g. --backend openai) names its own section
            update_section(Path(args.output), str(result.get("section", name)), markdown)
    return 0


def _options_for(module: Any, args: argparse.Namespace) -> dict[str, Any]:
    import inspect

    accepted = inspect.signature(module.run).parameters
    wanted = {
        "quick": args.quick,
        "backend": args.backend,
        "url": args.url,
        "signals": args.signals,
        "minutes": args.minutes,
    }
    return {k: v for k, v in wanted.items() if k in accepted and v not in (None, False)}


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.findall(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[0])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, IndexError):
        pass
    versions = _versions()
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}{versions}"
    )


def _versions() -> str:
    out = []
    for name in ("torch", "transformers", "chromadb"):
        try:
            from importlib.metadata import version

            out.append(f"{name} {version(name)}")
        except Exception:
            continue
    return "; " + ", ".join(out) if out else ""


def update_section(path: Path, name: str, markdown: str) -> None:
    """Replace (or add) the section of ``name`` in ``path``."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = f"{begin}\n{markdown.strip()}\n\n_Measured {stamp} on: {machine_description()}._\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nWritten by `ambient bench NAME`.\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + body + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    path.write_text(text)
