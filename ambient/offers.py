"""Making an offer: context -> N sampled branches -> stored as children of a node.

This is the one path by which model text enters a tree, used by the CLI, the
daemon and every integration. It only ever *stores* and *returns* text; it
never writes into a source or sends anything anywhere.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

from ambient.app import App
from ambient.config import SamplingSection
from ambient.context import BuiltContext
from ambient.sampling.base import OnToken, SampleResult, SamplingOptions, Token
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
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["stop"] = tuple(values["stop"])
    return SamplingOptions(**values).validate()


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
) -> OfferOutcome:
    """Blocking: build the context for ``parent_id``, sample, and store the offer.

    ``source_text`` overrides the text to continue (by default the full text
    from the tree's root to ``parent_id``).
    """
    store = app.store
    ancestry = store.ancestry(parent_id)
    text = source_text if source_text is not None else "".join(n.text for n in ancestry)
    context = app.context_builder(use_memory).build(
        text,
        max_tokens=options.max_tokens,
        source=source,
        tree_id=ancestry[0].tree_id,
        exclude_node_ids={n.id for n in ancestry},
        use_memory=use_memory,
    )
    sampler = app.sampler
    author = Author(MODEL, sampler.name, options.as_dict())
    offer = store.begin_offer(parent_id, options.as_dict(), {"backend": sampler.name})
    if on_begin is not None:
        on_begin(offer, context)
    partial = _Partial(options.n, on_token)
    try:
        result = sampler.generate(context.prompt, options, partial, cancel)
    except Exception as exc:
        _LOGGER.warning("sampling failed for offer %s: %s", offer.id, exc)
        store.finish_offer(
            offer.id,
            partial.branches("error"),
            author=author,
            provenance=context.provenance,
            state=OfferState.FAILED,
            error=f"{type(exc).__name__}: {exc}",
        )
        raise
    provenance = {**context.provenance, "truncated_tokens": result.truncated_tokens}
    state = OfferState.CANCELLED if cancel is not None and cancel.is_set() else OfferState.DONE
    branches = [NewBranch(c.text, c.tokens, c.finish_reason) for c in result.continuations]
    nodes = store.finish_offer(
        offer.id,
        branches,
        author=author,
        provenance=provenance,
        state=state,
        meta={**result.meta, "prompt_tokens": result.prompt_tokens},
    )
    return OfferOutcome(store.get_offer(offer.id), nodes, result, context)
