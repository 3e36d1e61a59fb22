"""``ambient backup PATH`` and ``ambient restore PATH``: a consistent copy of a home, and putting it back."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ambient.app import App
from ambient.backup import backup, restore
from ambient.commands.daemon import fetch_status


def register(sub: Any) -> None:
    p = sub.add_parser(
        "backup",
        help="copy the store, memory index and client keys into a new folder (safe while ambient runs)",
        description="A consistent copy of the store (SQLite's online backup) and the embedded memory "
        "index, with the settings and the client keys (their hashes, as kept); never the token.",
    )
    p.add_argument("path", help="a new (or empty) folder")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser(
        "restore",
        help="put a backup in place of this home's store and index (ambient must be stopped)",
        description="Replace the store, the embedded memory index and the client keys with a backup's "
        "(a backup without keys leaves the keys as they are). What is replaced is kept in "
        "AMBIENT_HOME/replaced-<time>/. Refuses while ambient runs on this home.",
    )
    p.add_argument("path", help="a folder made by `ambient backup`")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=cmd_restore)


def cmd_backup(args: argparse.Namespace, app: App) -> int:
    manifest = backup(app.config, Path(args.path).expanduser())
    if args.json:
        print(json.dumps(manifest.__dict__, indent=2))
    else:
        print(
            f"backed up {manifest.trees} trees, {manifest.nodes} nodes, {_keys(manifest.keys)} "
            f"to {args.path} (memory index: {manifest.memory})"
        )
    return 0


def cmd_restore(args: argparse.Namespace, app: App) -> int:
    running = fetch_status(app.config.home) is not None
    manifest, kept = restore(app.config, Path(args.path).expanduser(), daemon_running=running)
    if args.json:
        print(json.dumps({**manifest.__dict__, "replaced": str(kept) if kept else None}, indent=2))
        return 0
    print(
        f"restored {manifest.trees} trees, {manifest.nodes} nodes, {_keys(manifest.keys)} from {args.path} "
        f"({manifest.made_at})"
    )
    if kept is not None:
        print(f"what it replaced is kept in {kept}")
    return 0


def _keys(count: int) -> str:
    return f"{count} client key{'' if count == 1 else 's'}"
