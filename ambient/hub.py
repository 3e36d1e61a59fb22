"""From an event to an offer: the one translation every hub uses.

The daemon runs it in its sampling thread; tests and benchmarks that stand in
for the daemon (``tests/hub.py``) call the same function, so what a place's
event becomes cannot drift between them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ambient.app import App
from ambient.context import BuiltContext
from ambient.offers import OfferOutcome, make_offer
from ambient.sampling.base import OnToken
from ambient.sources import SourceEvent
from ambient.tree import Offer


def offer_for_event(
    app: App,
    event: SourceEvent,
    *,
    use_memory: bool,
    on_token: OnToken | None = None,
    on_begin: Callable[[Offer, BuiltContext], None] | None = None,
    cancel: threading.Event | None = None,
) -> OfferOutcome:
    """Blocking: sample the offer ``event`` asks for (configured settings + its overrides) and store it.

    Memory is retrieved into the prompt when ``use_memory`` (the index is up) and the event allows it.
    """
    return make_offer(
        app,
        event.parent_id,
        event.overrides.options(app.config.sampling),
        source=event.source_info(),
        source_text=event.text,
        use_memory=use_memory and event.memory,
        on_token=on_token,
        on_begin=on_begin,
        cancel=cancel,
        oversample=event.overrides.oversample,
    )
