"""Tapestry Loom (transkatgirl/Tapestry-Loom): a weave in its JSON form.

Tapestry Loom saves a weave as ``.tapestry``: the bytes ``VersionedTapestryWeave__``,
a format version, then an rkyv archive of Rust structures. That archive has no
stable layout outside Rust, so ambient reads the weave's JSON form instead: the
same structures through serde, which Tapestry's migration assistant writes
(``--output-debug-json``: "useful for editing weaves using 3rd party tools").
A binary weave is refused with that one step to take.

The JSON shape, from the Rust code (tapestry-weave/src/weave/mod.rs, content/mod.rs
and metadata.rs of transkatgirl/Tapestry-Loom; the weave is universal-weave's
``IndependentWeave``, src/independent/mod.rs of transkatgirl/universal-weave)::

    {"nodes": {"<id>": {"id": <u64>, "from": [parent ids], "to": [child ids],
                        "active": bool, "bookmarked": bool,
                        "contents": {"timestamp": "<jiff Zoned>", "modified": bool,
                                     "content": {"Snippet": "<base64>"} | {"Tokens": [token]}
                                                | "MetadataOnly",
                                     "metadata": {str: str},
                                     "creator": {"Model": model|null} | {"User": author|null} | "Unknown"}}},
     "roots": [ids], "active": [ids], "bookmarked": [ids],
     "metadata": {"title", "description", "created", "converted_from", "metadata", "aux_metadata"}}

with ``token = {"bytes": "<base64>", "logprob", "id", "entropy", "counterfactual": [{"bytes", "logprob",
"id"}], "original"}`` and ``model = {"label", "color", "identifier", "seed", "system_fingerprint",
"finish_reason", "metadata"}``.

A weave is a DAG: a node may have several parents. An ambient tree gives each
node one: the parent on the active path if there is one, else the first; the
others are kept in ``meta["also_from"]``. Several roots hang under one empty root.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ambient.errors import InvalidInput
from ambient.importers.common import (
    RECORDED,
    DraftNode,
    DraftTree,
    plural,
    unknown_author,
)
from ambient.sampling.base import Token, TokenAlt
from ambient.tree import HUMAN, MODEL, Author

FORMAT = "tapestry"
MAGIC = b"VersionedTapestryWeave"  # the binary form's first bytes (then "__" and the version)
_CONTENT_KINDS = ("Snippet", "Tokens", "MetadataOnly", "Link")
_FRACTION = re.compile(r"(\.\d{6})\d+")


def looks_like(data: Any) -> bool:
    return (
        isinstance(data, dict) and isinstance(data.get("nodes"), dict) and isinstance(data.get("roots"), list)
    )


def binary_version(raw: bytes) -> int | None:
    """The format version of a binary ``.tapestry`` weave, or None if ``raw`` is not one."""
    if not raw.startswith(MAGIC):
        return None
    rest = raw[len(MAGIC) :]
    rest = rest[2:] if rest.startswith(b"__") else rest  # "VersionedTapestryWeave__" since 2025
    return int.from_bytes(rest[:8], "little") if len(rest) >= 8 else -1


def binary_refusal(path: Path, version: int) -> InvalidInput:
    return InvalidInput(
        f"{path} is a Tapestry Loom weave in its binary form (version {version}), which only Rust can read: "
        "convert it with Tapestry Loom's migration assistant (--output-debug-json) and import the .json"
    )


def parse(data: Any, path: Path) -> tuple[list[DraftTree], list[str]]:
    """The tree of a weave's JSON form, and what it had that is not kept."""
    if not looks_like(data):
        raise InvalidInput(
            f"{path} is JSON but not a Tapestry Loom weave (no 'nodes' object and 'roots' list): "
            "write one with Tapestry Loom's migration assistant --output-debug-json"
        )
    what = f"the weave in {path.name}"
    raw_nodes = data["nodes"]
    active = _ids(data.get("active", []), what, "active")
    active |= {
        key for key, node in raw_nodes.items() if isinstance(node, dict) and node.get("active") is True
    }
    bookmarked = _ids(data.get("bookmarked", []), what, "bookmarked")
    nodes: list[DraftNode] = []
    lost = {"extra parents": 0, "links": 0, "bad bytes": 0}
    for key, raw in raw_nodes.items():
        nodes.append(_node(str(key), raw, active, bookmarked, raw_nodes, what, lost))
    _check_acyclic({n.source_id: [n.parent, *n.meta.get("also_from", [])] for n in nodes}, what)
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    title = metadata.get("title") if isinstance(metadata.get("title"), str) else ""
    roots = sorted(n.source_id for n in nodes if n.parent is None)
    tree = DraftTree(
        key=f"{FORMAT}:{roots[0] if roots else path.stem}",
        title=title or path.stem,
        source=FORMAT,
        nodes=nodes,
        meta={"imported_from": path.name, "tapestry": {"metadata": metadata}},
    )
    return [tree], _describe(lost)


def _check_acyclic(parents: dict[str, list[str | None]], what: str) -> None:
    """InvalidInput if following parents (all of them, not only the kept one) ever comes back round."""
    state: dict[str, int] = {}  # 1: on the current walk, 2: done
    for start in parents:
        if state.get(start):
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        state[start] = 1
        while stack:
            node, i = stack[-1]
            ups = [p for p in parents[node] if p is not None]
            if i < len(ups):
                stack[-1] = (node, i + 1)
                up = ups[i]
                if state.get(up) == 1:
                    raise InvalidInput(
                        f"{what}: nodes {up} and {node} are each other's ancestors (a cycle): "
                        "the file is damaged"
                    )
                if not state.get(up):
                    state[up] = 1
                    stack.append((up, 0))
            else:
                state[node] = 2
                stack.pop()


def _ids(value: Any, what: str, field: str) -> set[str]:
    if not isinstance(value, list):
        raise InvalidInput(f"{what}: '{field}' is not a list of node ids: the file is damaged")
    return {str(v) for v in value}


def _node(
    key: str,
    raw: Any,
    active: set[str],
    bookmarked: set[str],
    raw_nodes: dict[str, Any],
    what: str,
    lost: dict[str, int],
) -> DraftNode:
    if not isinstance(raw, dict) or not isinstance(raw.get("contents"), dict):
        raise InvalidInput(f"{what}: node {key} is not an object with contents: the file is damaged")
    if "id" in raw and str(raw["id"]) != key:
        raise InvalidInput(f"{what}: node {key} says its id is {raw['id']}: the file is damaged")
    parents = [str(p) for p in raw.get("from", [])] if isinstance(raw.get("from"), list) else None
    if parents is None:
        raise InvalidInput(f"{what}: node {key} has no 'from' list of parents: the file is damaged")
    for up in parents:
        if up not in raw_nodes:
            raise InvalidInput(f"{what}: the parent {up} of node {key} is missing: the file is damaged")
    parent = next((p for p in parents if p in active), parents[0] if parents else None)
    others = [p for p in parents if p != parent]
    lost["extra parents"] += len(others)
    contents = raw["contents"]
    text, tokens = _content(contents.get("content"), key, what, lost)
    author, authorship, reason = _creator(contents.get("creator"), parent is None)
    meta: dict[str, Any] = {
        "tapestry": {k: v for k, v in contents.items() if k != "content"},
        "authorship_reason": reason,
    }
    if others:
        meta["also_from"] = others
    return DraftNode(
        source_id=key,
        parent=parent,
        text=text,
        author=author,
        authorship=authorship,
        chosen=key in active,
        bookmarked=key in bookmarked or raw.get("bookmarked") is True,
        created_at=_time(contents.get("timestamp")),
        tokens=tokens,
        meta=meta,
    )


def _content(content: Any, key: str, what: str, lost: dict[str, int]) -> tuple[str, tuple[Token, ...] | None]:
    """The node's text, and its tokens when the file has them."""
    if content == "MetadataOnly" or content is None:
        return "", None
    if isinstance(content, dict) and len(content) == 1:
        kind, value = next(iter(content.items()))
        if kind == "Snippet":
            return _decode(_bytes(value, key, what), lost), None
        if kind == "Tokens" and isinstance(value, list):
            return _tokens(value, key, what, lost)
        if kind == "Link":
            lost["links"] += 1
            return "", None
    raise InvalidInput(
        f"{what}: node {key} has content that is none of {', '.join(_CONTENT_KINDS)}: the file is damaged"
    )


def _tokens(
    value: list[Any], key: str, what: str, lost: dict[str, int]
) -> tuple[str, tuple[Token, ...] | None]:
    pieces: list[bytes] = []
    tokens: list[Token] = []
    for raw in value:
        if not isinstance(raw, dict):
            raise InvalidInput(f"{what}: node {key} has a token that is not an object: the file is damaged")
        piece = _bytes(raw.get("bytes", ""), key, what)
        pieces.append(piece)
        extra = {"entropy": raw["entropy"]} if _number(raw.get("entropy")) else None
        tokens.append(
            Token(
                text=piece.decode("utf-8", "replace"),
                logprob=float(raw["logprob"]) if _number(raw.get("logprob")) else None,
                top=tuple(_alternatives(raw.get("counterfactual"), key, what)),
                extra=extra,
            )
        )
    text = _decode(b"".join(pieces), lost)
    # Kept only when they spell the text exactly (a token may hold part of a character).
    return text, tuple(tokens) if "".join(t.text for t in tokens) == text else None


def _alternatives(value: Any, key: str, what: str) -> Iterable[TokenAlt]:
    for alt in value if isinstance(value, list) else []:
        if isinstance(alt, dict) and _number(alt.get("logprob")):
            yield TokenAlt(
                _bytes(alt.get("bytes", ""), key, what).decode("utf-8", "replace"), float(alt["logprob"])
            )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bytes(value: Any, key: str, what: str) -> bytes:
    """Bytes as serde writes them here: base64 text (or, from older writers, a list of numbers)."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(
                f"{what}: node {key} has text that is not base64: the file is damaged"
            ) from None
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    raise InvalidInput(f"{what}: node {key} has text that is neither base64 nor bytes: the file is damaged")


def _decode(data: bytes, lost: dict[str, int]) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # a node can end inside a character that the next one finishes
        lost["bad bytes"] += 1
        return data.decode("utf-8", "replace")


def _creator(creator: Any, is_root: bool) -> tuple[Author, str, str]:
    if isinstance(creator, dict) and len(creator) == 1:
        kind, who = next(iter(creator.items()))
        who = who if isinstance(who, dict) else {}
        label = str(who["label"]) if isinstance(who.get("label"), str) else ""
        if kind == "Model":
            settings = {
                k: who[k] for k in ("seed", "finish_reason", "system_fingerprint") if who.get(k) is not None
            }
            if isinstance(who.get("metadata"), dict):
                settings.update(who["metadata"])
            return Author(MODEL, label, settings or None), RECORDED, "the weave names a model as creator"
        if kind == "User":
            return Author(HUMAN, label), RECORDED, "the weave names the user as creator"
    return unknown_author(is_root)


def _time(value: Any) -> float | None:
    """A jiff ``Zoned`` ("2025-06-03T03:45:48.1234-04:00[America/New_York]") as a Unix time."""
    if not isinstance(value, str):
        return None
    text = _FRACTION.sub(r"\1", value.split("[", 1)[0])
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def _describe(lost: dict[str, int]) -> list[str]:
    out = []
    if lost["extra parents"]:
        out.append(
            f"{plural(lost['extra parents'], 'extra parent')} of shared nodes (an ambient tree has one "
            "parent a node; the others are in meta.also_from)"
        )
    if lost["links"]:
        out.append(f"{plural(lost['links'], 'link node')} (links to other weaves have no text)")
    if lost["bad bytes"]:
        out.append(f"{plural(lost['bad bytes'], 'node')} whose bytes are not whole UTF-8 (shown with �)")
    return out


def describe_unknown(trees: list[DraftTree]) -> list[str]:
    unknown = sum(1 for t in trees for n in t.nodes if n.authorship == "unknown")
    if not unknown:
        return []
    return [f"who wrote {plural(unknown, 'node')} (the weave says Unknown; kept as model text)"]
