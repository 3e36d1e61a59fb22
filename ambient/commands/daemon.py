"""Daemon commands: run, status, export-picks."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path
from typing import Any

from ambient import adapters, remote
from ambient.app import App
from ambient.errors import InvalidInput
from ambient.fsutil import write_atomic
from ambient.home import tighten
from ambient.picklog import dpo_pairs, offer_records
from ambient.scopes import describe_sharing
from ambient.security import read_token
from ambient.server import RUNTIME_FILE, Server, page_url, serve


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="start the daemon and its web UI",
        description="Start the daemon: sources in, offers out, a web UI on 127.0.0.1. Stop it with Ctrl-C.",
    )
    p.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: server.port, 8765)")
    p.add_argument("--no-browser", action="store_true", help="do not open the web UI in a browser")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="whether the daemon runs, and what it is doing")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "export-picks",
        help="the pick log as preference pairs (JSONL) for tuning a personal model",
        description="Every offer and what you did with it. --format dpo writes {prompt, chosen, rejected} "
        "pairs; --format log writes one record per offer.",
    )
    p.add_argument("--format", choices=["dpo", "log"], default="dpo")
    p.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_export_picks)


# ------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace, app: App) -> int:
    port = app.config.server.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise InvalidInput(f"--port {port} is not a port: give 1..65535 (0 picks a free one)")
    return asyncio.run(run_until_stopped(app, port=port, browser=not args.no_browser))


async def run_until_stopped(app: App, *, port: int, browser: bool) -> int:
    """Run the daemon and its web server until SIGINT or SIGTERM, then shut down cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        tightened = await asyncio.to_thread(tighten, app.config)  # only the owner may read AMBIENT_HOME
        if tightened:
            print(f"ambient: {tightened}", file=sys.stderr, flush=True)
        print("ambient: starting (loading the model)…", file=sys.stderr, flush=True)
        async with serve(app.config, app, port=port) as server:
            _announce(server)
            if browser and _has_display():
                await asyncio.to_thread(webbrowser.open, server.url)
            await stop.wait()
            print("ambient: stopping…", file=sys.stderr, flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("ambient: stopped", file=sys.stderr, flush=True)
    return 0


def _announce(server: Server) -> None:
    daemon = server.daemon
    print(f"ambient is running: {server.url}", flush=True)
    for name, problem in daemon.sources.problems.items():
        print(f"  source {name}: {problem}", file=sys.stderr)
    for line in remote.announcements(daemon.app.config):
        print(f"  {line}", file=sys.stderr)
    for line in describe_sharing(daemon.config.memory.share):  # every opening in the walls
        print(f"  {line}", file=sys.stderr)
    if daemon.app.memory_warning:
        print(f"  {daemon.app.memory_warning}", file=sys.stderr)
    print("  open the URL above in a browser; Ctrl-C stops", file=sys.stderr, flush=True)


def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


# ---------------------------------------------------------------- status
def cmd_status(args: argparse.Namespace, app: App) -> int:
    home = app.config.home
    status = fetch_status(home)
    personal = adapters.summary(home)  # read from the home: known whether the daemon runs or not
    if status is None:
        if args.json:
            print(json.dumps({"running": False, "personal_model": personal}))
        else:
            print("ambient is not running (start it with `ambient run`)")
            print(f"  {describe_personal(personal)}")
        return 1
    if args.json:
        print(json.dumps({"running": True, **status, "personal_model": personal}, indent=2))
        return 0
    print(_describe(status))
    print(f"  {describe_personal(personal)}")
    return 0


def describe_personal(info: dict[str, Any]) -> str:
    """One line: the personal adapter in use, when it last tuned, what it measured."""
    if info.get("latest") is None:
        return "personal model: none yet (`ambient tune` learns from your picks)"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info["tuned_at"])) if info.get("tuned_at") else "?"
    ev = info.get("evaluation") or {}
    measured = ""
    if ev.get("accuracy_base") is not None:
        measured = (
            f"; on held-out picks it agrees {ev['accuracy_personal']:.0%} of the time (base "
            f"{ev['accuracy_base']:.0%})"
        )
    active = info.get("active") or "none"
    latest = f"{info['latest']}: {info.get('status')}"
    return f"personal model: {active} active; last tuned {when} ({latest}){measured}"


def fetch_status(home: Path, timeout: float = 3.0) -> dict[str, Any] | None:
    """The running daemon's /api/status, or None when no daemon answers."""
    try:
        info = json.loads((home / RUNTIME_FILE).read_text())
        port = int(info["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    token = read_token(home)
    if token is None:
        return None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: dict[str, Any] = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    data["url"] = page_url("127.0.0.1", port, token)
    return data


def _describe(s: dict[str, Any]) -> str:
    queue, memory, model = s["queue"], s["memory"], s["model"]
    lines = [
        f"ambient is running: {s['url']}",
        f"  pid {s['pid']}, up {s['uptime_s']:.0f} s, version {s['version']}",
        f"  model: {model['sampler']} ({model['backend']}: {model['path']})",
        f"  queue: {queue['waiting']} waiting, in flight: {queue['in_flight'] or 'nothing'}, "
        f"{queue['done']} done, {queue['dropped']} dropped",
        f"  memory: {'on' if memory['available'] else 'off'}"
        + (f" ({memory['warning']})" if memory["warning"] else ""),
        f"  store: {s['counts']['trees']} trees, {s['counts']['nodes']} nodes",
        *_adapter_lines(s.get("adapter") or {}),
        f"  {s['subscribers']} UI(s) connected",
    ]
    for name, src in sorted(s["sources"].items()):
        restarts = f", restarted {src['restarts']}x after crashes" if src.get("restarts") else ""
        error = f" ({'last: ' if restarts else ''}{src['last_error']})" if src["last_error"] else ""
        lines.append(f"  source {name}: {src['state']}{restarts}{error}")
    return "\n".join(lines)


def _adapter_lines(adapter: dict[str, Any]) -> list[str]:
    """What the running sampler does with a personal adapter: which writes its branches, or why none."""
    out = []
    if adapter.get("name"):
        share = f"{adapter['share']:.0%} of each offer's branches"
        out.append(f"  personal adapter in use: {adapter['name']} ({share})")
    if adapter.get("problem"):
        out.append(f"  personal adapter refused: {adapter['problem']}")
    return out


# ---------------------------------------------------------- export-picks
def cmd_export_picks(args: argparse.Namespace, app: App) -> int:
    store = app.store
    rows = list(dpo_pairs(store)) if args.format == "dpo" else [r.as_dict() for r in offer_records(store)]
    body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if args.output == "-":
        sys.stdout.write(body)
    else:
        write_atomic(Path(args.output), body)
        print(f"wrote {len(rows)} record(s) to {args.output}", file=sys.stderr)
    return 0
