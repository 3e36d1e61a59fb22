"""Per-token signals of a stored node, as data and as text (``ambient show NODE --signals``).

A model-written node carries its signals in its tokens (see :mod:`ambient.sampling.signals`). A
person's node has none of its own; its *surprise* (the logprob of each of its tokens under the
model) is stored with the offers made below it (``meta["surprise"]``: ``[node_id, start, end,
logprob]``, offsets within the node's text), and the latest offer that scored it is used.
"""

from __future__ import annotations

import math
from typing import Any

from ambient.store import TreeStore
from ambient.tree import Node, Offer


def node_surprise(store: TreeStore, node: Node) -> list[list[Any]]:
    """``[start, end, logprob]`` spans of ``node``'s text, from the latest offer that scored it."""
    offers: list[Offer] = store.tree_offers(node.tree_id)
    for offer in sorted(offers, key=lambda o: o.created_at, reverse=True):
        spans = [s[1:] for s in offer.meta.get("surprise", ()) if s and s[0] == node.id]
        if spans:
            return spans
    return []


def offer_facts(store: TreeStore, node: Node) -> dict[str, Any]:
    """What the node's offer says about this node: its branch's memory attention, its cluster share."""
    if not node.offer_id:
        return {}
    meta = store.get_offer(node.offer_id).meta
    facts: dict[str, Any] = {}
    branch = node.branch if node.branch is not None else -1
    signals = meta.get("signals", {})
    branches = signals.get("branches", [])
    if 0 <= branch < len(branches):
        facts["memory"] = branches[branch]
    picks = meta.get("diverse", {}).get("picks", [])
    if 0 <= branch < len(picks):
        facts["cluster"] = {**picks[branch], "pool": meta["diverse"].get("pool")}
    if signals:
        facts["layers"] = signals.get("layers")
    return facts


def signal_rows(node: Node) -> list[dict[str, Any]]:
    """One row per token: text, probability, entropy, ease layer, attention shares."""
    rows = []
    for t in node.tokens or ():
        extra = t.extra or {}
        attn = extra.get("attention") or {}
        rows.append(
            {
                "text": t.text,
                "p": None if t.logprob is None else math.exp(t.logprob),
                "entropy": extra.get("entropy"),
                "ease_layer": extra.get("ease_layer"),
                "attention": attn or None,
            }
        )
    return rows


def render(store: TreeStore, node: Node) -> str:
    """A plain-text table of the node's signals (or its surprise, for a person's text)."""
    lines: list[str] = []
    rows = signal_rows(node)
    if rows and any(r["entropy"] is not None for r in rows):
        facts = offer_facts(store, node)
        layers = facts.get("layers", "?")
        lines.append(f"signals ({layers} layers; ease = first layer from which the token stays on top):")
        lines.append(f"  {'token':<16} {'p':>6} {'entropy':>8} {'ease':>5}  attention mem/src/new/recent")
        for r in rows:
            a = r["attention"]
            share = "-" if not a else f"{a['memory']:.2f}/{a['source']:.2f}/{a['new']:.2f}/{a['recent']:.2f}"
            p = "-" if r["p"] is None else f"{r['p']:.3f}"
            h = "-" if r["entropy"] is None else f"{r['entropy']:.2f}"
            ease = "-" if r["ease_layer"] is None else str(r["ease_layer"])
            lines.append(f"  {r['text']!r:<16} {p:>6} {h:>8} {ease:>5}  {share}")
        if "memory" in facts:
            m = facts["memory"]
            flag = "  (ignores the retrieved memory)" if m["ignores_memory"] else ""
            lines.append(f"mean attention on retrieved memory: {m['memory_share']:.3f}{flag}")
        if "cluster" in facts:
            c = facts["cluster"]
            lines.append(f"cluster: {c['cluster']} of {c['pool']} samples ({100 * c['share']:.0f}%)")
    spans = node_surprise(store, node)
    if spans:
        lines.append("surprise (logprob of each token of this text under the model):")
        lines.append("  " + " ".join(f"{node.text[s:e]!r}:{lp:.2f}" for s, e, lp in spans if lp is not None))
    if not lines:
        lines.append("no signals stored for this node (signals were off, or the backend has none)")
    return "\n".join(lines)
