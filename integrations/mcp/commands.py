"""`ambient mcp`: the MCP server a chat app starts (stdio), talking to the running daemon with a client key.

The key's secret comes only from the environment variable ``AMBIENT_KEY``, which the chat app's
MCP config sets: never from the command line, where every local user could read it in the
process list. Before serving, the daemon is asked once, so a daemon that is not running or a key
it refuses is one line on stderr and a non-zero exit (stdout carries the protocol only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from ambient.app import App
from ambient.errors import AmbientError

KEY_ENV = "AMBIENT_KEY"
NO_KEY = (
    f"{KEY_ENV} is not set: make a key with `ambient keys add NAME` and set {KEY_ENV} to its secret in "
    "the chat app's MCP config (its env section); see docs/clients.md"
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "mcp",
        help="an MCP server (stdio) for chat apps, talking to the running daemon with a client key",
        description="Serve the Model Context Protocol on stdin/stdout for a chat app: search_multiverse, "
        "get_node, list_trees, offer_continuations, each answered by the running daemon within the key's "
        f"walls. The key's secret is read from the environment variable {KEY_ENV} (set it in the app's "
        "MCP config), never from the command line. Start the daemon first (`ambient run`).",
    )
    p.set_defaults(func=cmd_mcp)


def cmd_mcp(args: argparse.Namespace, app: App) -> int:
    secret = os.environ.get(KEY_ENV, "").strip()
    if not secret:
        raise AmbientError(NO_KEY)
    return asyncio.run(serve(app.config.home, secret, verbose=bool(getattr(args, "verbose", False))))


async def serve(home: Any, secret: str, *, verbose: bool = False) -> int:
    """Check the daemon and the key once, then serve MCP on stdio until the app closes it."""
    from integrations.mcp.daemon_client import DaemonClient
    from integrations.mcp.server import build  # the SDK loads only for this command

    async with DaemonClient(home, secret) as daemon:
        await daemon.check()  # DaemonDown, KeyRefused...: the CLI prints the one line
        server = build(daemon, log_level="INFO" if verbose else "WARNING")
        await server.run_stdio_async()
    return 0
