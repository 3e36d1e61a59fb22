"""Making an offer: context -> N sampled branches -> stored as children of a node.

This is the one path by which model text enters a tree, used by the CLI, the
daemon and every integration. It only ever *stores* and *returns* text; it
never writes into a source or sends anything anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ambient.app import App
from ambient.config import SamplingSection
from ambient.context import BuiltContext
from ambient.sampling.base import OnToken, PromptRegion, SampleResult, SamplingOptions, Token
from ambient.scopes import view_for
from ambient.store import StoreError
from ambient.tree import MODEL, Author, NewBranch, Node, Offer, OfferState

_LOGGER = logging.getLogger(__name__)


def options_from(section: SamplingSection, **overrides: Any) -> SamplingOptions:
    """Sampling options: config defaults, then any non-None override; validated."""
    values: dict[str, Any] = {
        "n": section.n,
        "max_tokens": section.max_tokens,
        "temperature": section.temperature,
        "top_p": section.top_p,
        "top_k": section.top_k,
        "stop": tuple(section.stop),
        "seed": section.seed,
        "top_logprobs": section.top_logprobs,
        "signals": section.signals,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["stop"] = tuple(values["stop"])
    return SamplingOptions(**values).validate()


@dataclasses.dataclass(frozen=True)
class Overrides:
    """Per-request changes to the configured sampling settings; None keeps the configured value.

    The one list of what a place, the API or the CLI may change for one offer.
    """

    n: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    signals: bool | None = None  # per-token signals (default: sampling.signals)
    oversample: int | None = None  # sample this many and offer n cluster representatives (0 = off)
    top_p: float | None = None
    top_k: int | None = None  # 0 = off
    seed: int | None = None
    stop: tuple[str, ...] | None = None  # () = no stop strings
    top_logprobs: int | None = None  # alternatives recorded per token
    logit_bias: Mapping[int, float] | None = None  # token id -> added to its logit before each draw

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Overrides:
        """The overrides among ``values`` (other keys are ignored)."""
        return cls(**{k: values[k] for k in cls.names() if k in values})

    def as_dict(self) -> dict[str, Any]:
        """The overrides that are set."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def under(self, defaults: Overrides) -> Overrides:
        """These overrides, with ``defaults`` filling the ones not set."""
        return dataclasses.replace(defaults, **self.as_dict())

    def options(self, section: SamplingSection) -> SamplingOptions:
        """The sampler's options: ``section`` with these overrides applied, validated."""
        chosen = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "oversample"}
        return options_from(section, **chosen)


@dataclasses.dataclass
class OfferOutcome:
    offer: Offer
    nodes: list[Node]
    result: SampleResult | None
    context: BuiltContext


class _Partial:
    """Collects streamed tokens so a failed or cancelled offer keeps its partial text."""

    def __init__(self, n: int, forward: OnToken | None) -> None:
        self.tokens: list[list[Token]] = [[] for _ in range(n)]
        self.forward = forward

    def __call__(self, branch: int, token: Token) -> None:
        self.tokens[branch].append(token)
        if self.forward is not None:
            self.forward(branch, token)

    def branches(self, reason: str) -> list[NewBranch]:
        return [NewBranch("".join(t.text for t in toks), list(toks), reason) for toks in self.tokens if toks]


def _settle(app: App, reason: str) -> None:
    """Mark failed the offers whose result could not be stored (best effort: the disk may still be full)."""
    for offer_id in list(app.unsettled_offers):
        with contextlib.suppress(StoreError):
            app.store.fail_offer(offer_id, reason)
            app.unsettled_offers.discard(offer_id)


def make_offer(
    app: App,
    parent_id: str,
    options: SamplingOptions,
    *,
    source: dict[str, Any] | None = None,
    source_text: str | None = None,
    use_memory: bool = True,
    on_token: OnToken | None = None,
    on_begin: Callable[[Offer, BuiltContext], None] | None = None,
    cancel: threading.Event | None = None,
    oversample: int | None = None,
) -> OfferOutcome:
    """Blocking: build the context for ``parent_id``, sample, and store the offer.

    ``source_text`` overrides the text to continue (by default the full text
    from the tree's root to ``parent_id``). ``oversample`` (default
    ``sampling.oversample``; 0 = off) samples that many continuations and offers
    ``options.n`` representatives of their clusters (see :mod:`ambient.sampling.diverse`).
    """
    store = app.store
    _settle(app, "the disk was full when it finished: its continuations could not be stored")
    ancestry = store.ancestry(parent_id)
    text = source_text if source_text is not None else "".join(n.text for n in ancestry)
    tree = store.get_tree(ancestry[0].tree_id)
    memory = app.config.memory
    context = app.context_builder(use_memory).build(
        text,
        max_tokens=options.max_tokens,
        source=source,
        tree_id=tree.id,
        exclude_node_ids={n.id for n in ancestry},
        use_memory=use_memory,
        view=view_for(tree.scope, memory.share, memory.include_pruned),  # the walls of its place
    )
    regions = tuple(PromptRegion(k, a, b) for k, a, b in context.provenance.get("regions", ()))
    # the document's personal switch (the UI's): off, the base model writes every branch
    personal = options.personal and tree.meta.get("personal") is not False
    options = dataclasses.replace(options, regions=regions, personal=personal)
    wide = oversample if oversample is not None else app.config.sampling.oversample
    pool = dataclasses.replace(options, n=wide) if wide > options.n else options
    author = Author(MODEL, app.sampler.name, options.as_dict())
    offer = store.begin_offer(parent_id, options.as_dict(), {"backend": app.sampler.name})
    if on_begin is not None:
        on_begin(offer, context)
    result = _sample(app, offer, context, pool, author, on_token if pool is options else None, cancel)
    meta = {**result.meta, "prompt_tokens": result.prompt_tokens}
    if "surprise" in meta:
        path = ancestry if source_text is None else []
        meta["surprise"] = _surprise_by_node(meta["surprise"], context, path)
    if pool is not options:
        result, meta["diverse"] = _diversify(app, result, options.n)
    state = OfferState.CANCELLED if cancel is not None and cancel.is_set() else OfferState.DONE
    nodes = _store(app, offer, result, context, author, state, meta)
    return OfferOutcome(store.get_offer(offer.id), nodes, result, context)


def _sample(
    app: App,
    offer: Offer,
    context: BuiltContext,
    options: SamplingOptions,
    author: Author,
    on_token: OnToken | None,
    cancel: threading.Event | None,
) -> SampleResult:
    """Sample; on failure the partial text is stored with the offer marked failed, and the error raised.

    ``on_token`` is None for an oversampled pool: it is offered once clustered, not streamed.
    """
    partial = _Partial(options.n, on_token)
    try:
        return app.sampler.generate(context.prompt, options, partial, cancel)
    except Exception as exc:
        _LOGGER.warning("sampling failed for offer %s: %s", offer.id, exc)
        app.store.finish_offer(
            offer.id,
            partial.branches("error"),
            author=author,
            provenance=context.provenance,
            state=OfferState.FAILED,
            error=f"{type(exc).__name__}: {exc}",
        )
        raise


def _store(
    app: App,
    offer: Offer,
    result: SampleResult,
    context: BuiltContext,
    author: Author,
    state: OfferState,
    meta: dict[str, Any],
) -> list[Node]:
    """The offered nodes, stored in one transaction (an offer never stays "streaming" on a store error)."""
    provenance = {**context.provenance, "truncated_tokens": result.truncated_tokens}
    branches = [NewBranch(c.text, c.tokens, c.finish_reason, c.meta or None) for c in result.continuations]
    try:
        return app.store.finish_offer(
            offer.id, branches, author=author, provenance=provenance, state=state, meta=meta
        )
    except StoreError as exc:  # e.g. the disk is full
        app.unsettled_offers.add(offer.id)
        _settle(app, str(exc))
        raise


def _surprise_by_node(spans: list[list[Any]], context: BuiltContext, ancestry: list[Node]) -> list[list[Any]]:
    """Surprise spans ``[start, end, logprob]`` in prompt chars, as ``[node_id, start, end, logprob]``.

    With ``ancestry`` (the source is the path's text) offsets are within each node's own text;
    otherwise ``node_id`` is "" and offsets are within the source text given.
    """
    regions = {k: (a, b) for k, a, b in context.provenance.get("regions", ())}
    begin = regions.get("source", (0, 0))[0]
    shift = int(context.provenance.get("cut", {}).get("source_chars", 0)) - begin
    bounds, at = [], 0
    for n in ancestry:
        bounds.append((at, at + len(n.text), n.id))
        at += len(n.text)
    out: list[list[Any]] = []
    for start, end, lp in spans:
        s, e = start + shift, end + shift
        home = next(((a, b, nid) for a, b, nid in bounds if a <= s < b), None)
        if home is None:
            out.append(["", s, e, lp])
        else:
            out.append([home[2], s - home[0], min(e, home[1]) - home[0], lp])
    return out


def _diversify(app: App, result: SampleResult, k: int) -> tuple[SampleResult, dict[str, Any]]:
    """Cluster the pool's continuations by meaning; keep one per cluster, with the share its cluster had.

    The facts go in the offer's meta as ``diverse``: ``picks[i]`` labels the i-th offered node.
    """
    from ambient.memory import get_embedder
    from ambient.sampling import diverse

    pool = result.continuations
    vectors = get_embedder(app.config).embed([c.text for c in pool])
    picks = diverse.choose(vectors, k)
    info = {
        "pool": len(pool),
        "picks": [{"sample": p.index, "share": round(p.share, 4), "cluster": len(p.members)} for p in picks],
        "pool_diversity": round(diverse.mean_pairwise_distance(vectors), 4),
        "offered_diversity": round(diverse.mean_pairwise_distance(vectors[[p.index for p in picks]]), 4),
    }
    return dataclasses.replace(result, continuations=[pool[p.index] for p in picks]), info
