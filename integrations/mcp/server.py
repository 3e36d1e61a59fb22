"""The MCP server `ambient mcp` runs over stdio: four tools, each one request to the running daemon.

Built with the official SDK (``mcp``'s :class:`~mcp.server.mcpserver.MCPServer`). A chat app sends
tool results to its model provider, often a remote one: everything here is answered by the
daemon within the client key's walls (:mod:`.views`), so the app sees only the key's own place
and what the person opened to it. ``offer_continuations`` returns offers for the person to read;
no tool picks, writes into a note or sends anything anywhere.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import Field, ValidationError

from ambient import __version__
from ambient.errors import AmbientError
from ambient.sampling.base import MAX_N
from integrations.mcp.daemon_client import DaemonClient

MAX_QUERY_CHARS = 500
MAX_K = 50
MAX_TREES = 1000
MAX_TEXT_CHARS = 200_000
INSTRUCTIONS = (
    "ambient keeps every continuation a local base model offered and every choice a person made, as "
    "trees. search_multiverse finds past fragments by meaning; get_node reads one with the path to it; "
    "list_trees lists the trees you may see; offer_continuations asks the base model for n "
    "continuations of a text, for the person to read. You see only what this key was granted."
)
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
OFFERS = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)


class AmbientMCP(MCPServer[Any]):
    """MCPServer whose refused arguments read as one line naming the argument and what it takes."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(one_line(name, exc.__cause__)) from exc.__cause__
            raise


def one_line(tool: str, error: ValidationError) -> str:
    """A pydantic refusal as one line: ``tool: argument 'k' ...; argument 'n' ...``."""
    parts = []
    for e in error.errors(include_url=False):
        where = ".".join(str(p) for p in e["loc"]) or "arguments"
        got = "" if e["type"] == "missing" else f", got {_short(e.get('input'))}"
        parts.append(f"argument {where!r}: {e['msg']}{got}")
    return f"{tool}: " + "; ".join(parts) + " (the tool's input schema lists what each argument takes)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


async def _ask(call: Any) -> dict[str, Any]:
    """A daemon answer, or its refusal as the tool's error (one line; the server keeps running)."""
    try:
        result: dict[str, Any] = await call
    except AmbientError as exc:
        raise ToolError(str(exc)) from None
    return result


def build(daemon: DaemonClient, *, log_level: str = "WARNING") -> MCPServer[Any]:
    """The MCP server: its tools, each answered by ``daemon``."""
    server = AmbientMCP(
        "ambient",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level=log_level,  # type: ignore[arg-type]
    )

    @server.tool(annotations=READ_ONLY)
    async def search_multiverse(
        query: Annotated[
            str,
            Field(
                min_length=1, max_length=MAX_QUERY_CHARS, description="what to look for, in your own words"
            ),
        ],
        k: Annotated[int, Field(ge=1, le=MAX_K, description="how many fragments")] = 8,
    ) -> dict[str, Any]:
        """Past fragments close in meaning to the query: text ambient's base model offered and people
        wrote, each with its node id, tree, score and the text just before it (lead)."""
        return await _ask(daemon.get("/mcp/search", {"q": query, "k": k}))

    @server.tool(annotations=READ_ONLY)
    async def get_node(
        id: Annotated[str, Field(min_length=1, max_length=200, description="a node id from another tool")],
    ) -> dict[str, Any]:
        """One node: its text, who wrote it (a person or the model, with the settings), its provenance
        (what went into the prompt), the path from its tree's root to it (ancestry) and its children."""
        return await _ask(daemon.get(f"/mcp/nodes/{_path_part(id)}"))

    @server.tool(annotations=READ_ONLY)
    async def list_trees(
        limit: Annotated[int, Field(ge=1, le=MAX_TREES, description="how many trees")] = 100,
    ) -> dict[str, Any]:
        """The trees this key may see, most recently changed first (id, title, root node id, place)."""
        return await _ask(daemon.get("/mcp/trees", {"limit": limit}))

    @server.tool(annotations=OFFERS)
    async def offer_continuations(
        text: Annotated[
            str, Field(min_length=1, max_length=MAX_TEXT_CHARS, description="the text to continue")
        ],
        n: Annotated[int, Field(ge=1, le=MAX_N, description="how many continuations")] = 4,
    ) -> dict[str, Any]:
        """n continuations of the text from ambient's local base model, for the person to read and
        choose from. They are kept as a tree of this key's place; nothing is picked, written into any
        note or sent anywhere."""
        return await _ask(daemon.post("/mcp/continuations", {"text": text, "n": n}))

    return server


def _path_part(node_id: str) -> str:
    """A node id as one path segment (anything else is refused, not sent to another route)."""
    if not node_id.isascii() or not node_id.isalnum():
        raise ToolError(
            f"get_node: {node_id[:40]!r} is not a node id (letters and digits): take one from "
            "search_multiverse, list_trees or offer_continuations"
        )
    return node_id
