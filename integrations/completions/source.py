"""The completions place: each client key is a place, and each of its requests an offer in its trees.

It watches nothing: requests arrive at ``POST /v1/completions`` (:mod:`.routes`). For each prompt
the place finds where it belongs in the key's trees (:mod:`.trees`), then hands the hub an event
like any place's: sampled now (never debounced, never superseded by another request), with
exactly the settings asked for and, unless the key turns it on, nothing retrieved into the
prompt: the app owns its prompt. The offer's N choices are stored as offered nodes; nothing is
picked for the app, except the choice a later prompt goes on from (:mod:`.trees`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, ClassVar

from ambient import settings
from ambient.errors import NotFound
from ambient.keys import Key, KeyStore
from ambient.sampling.base import PromptScore
from ambient.settings import each, nonempty
from ambient.sources import Source, SourceEvent
from ambient.tree import Node, Offer
from ambient.validation import Route
from integrations.completions.errors import OpenAIError, bad_param
from integrations.completions.params import CompletionRequest
from integrations.completions.routes import ROUTES
from integrations.completions.trees import Placed, place

NAME = "completions"
KEY_PREFIX = "key:"
# Names the OpenAI SDKs and the apps written for them ask for; any other name is answered too.
DEFAULT_ALIASES = ("davinci", "davinci-002", "babbage-002", "text-davinci-003", "gpt-3.5-turbo-instruct")


@dataclasses.dataclass(frozen=True)
class CompletionsOptions:
    """``[sources.completions]``: the names ``/v1/models`` lists beside the configured model's."""

    aliases: tuple[str, ...] = field(default=DEFAULT_ALIASES, metadata=each(nonempty("a model name")))

    def __post_init__(self) -> None:
        settings.check(self, "sources.completions")


@dataclasses.dataclass
class Prepared:
    """One prompt of a request, placed in the key's trees (and scored, for an echo with logprobs)."""

    prompt: str
    placed: Placed
    prompt_tokens: int
    score: PromptScore | None = None


@dataclasses.dataclass
class Sampled:
    offer: Offer | None  # None: nothing was sampled (max_tokens 0, an echo only)
    nodes: list[Node]


class CompletionsSource(Source):
    name: ClassVar[str] = NAME
    options_class: ClassVar[type[Any]] = CompletionsOptions
    autostart: ClassVar[bool] = True  # /v1 answers whenever a key exists (`ambient keys add NAME`)

    @classmethod
    def routes(cls) -> Sequence[Route]:
        return ROUTES

    @classmethod
    def benchmarks(cls) -> Mapping[str, str]:
        return {"completions": "integrations.completions.bench"}

    @classmethod
    def scope_of(cls, tree_source: str, home: Path) -> str | None:
        """A key's trees stand in its scope: key:NAME unless it was added with another (a bare name).

        The key store of ``home`` says which (blocking: it may read keys.json). A key that is not
        there (removed) answers key:NAME, a wall of its own, the narrowest view.
        """
        if not tree_source.startswith(KEY_PREFIX) or len(tree_source) == len(KEY_PREFIX):
            return None
        try:
            return _key_store(home).get(tree_source[len(KEY_PREFIX) :]).scope
        except NotFound:
            return tree_source

    def __init__(self, hub: Any, options: Any) -> None:
        super().__init__(hub, options)
        self.requests = 0
        self.offers = 0
        self.started = int(time.time())
        self._locks: dict[str, asyncio.Lock] = {}
        self._special_tokens: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def setup(self) -> None:
        """Nothing to check: the keys are checked per request."""

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def unload(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def status(self) -> dict[str, Any]:
        return {"requests": self.requests, "offers": self.offers}

    # ------------------------------------------------------------------ the model
    def model_id(self) -> str:
        """The name the configured model answers to (its folder, or the served model's name)."""
        app = self.hub.app
        if app.config.model.backend != "local" and app.config.model.name:
            return str(app.config.model.name)
        return str(app.sampler.name)

    def new_request_id(self) -> str:
        self.requests += 1
        return f"cmpl-{uuid.uuid4().hex}"

    def check(self, request: CompletionRequest) -> None:
        """What depends on the model: scoring for an echo with logprobs, the sampling settings as a whole."""
        app = self.hub.app
        if request.echo and request.logprobs is not None and not app.sampler.capabilities.scores_prompt:
            raise bad_param(
                "echo",
                f"the {app.sampler.name} backend cannot score a prompt's tokens: ask without echo or "
                "without logprobs (the local backend can)",
                code="unsupported_value",
            )
        if request.samples:
            request.overrides(app.config.sampling).options(app.config.sampling)

    # ------------------------------------------------------------------ one prompt
    async def prepare(self, key: Key, prompt: str, request: CompletionRequest) -> Prepared:
        """Check the prompt fits, put it in the key's trees, and score it when the answer echoes logprobs."""
        hub = self.hub
        tokens = await hub.run_blocking(self._fits, prompt, request, key)
        async with self._locks.setdefault(key.name, asyncio.Lock()):  # one placing per key at a time
            placed = await hub.run_blocking(place, hub.app.store, key, prompt)
        score = None
        if request.echo and request.logprobs is not None:
            score = await hub.run_blocking(hub.app.sampler.score_prompt, prompt, request.logprobs)
            tokens = len(score.tokens)
        return Prepared(prompt, placed, tokens, score)

    def _fits(self, prompt: str, request: CompletionRequest, key: Key) -> int:
        """The prompt's own tokens (no begin-of-text marker); refused when it cannot fit with max_tokens."""
        app = self.hub.app
        count = app.sampler.count_tokens(prompt)
        if self._special_tokens is None:
            self._special_tokens = app.sampler.count_tokens("")
        # What the context builder leaves the text (its begin-of-text marker counted), so it is never cut.
        limit = app.context_builder(use_memory=False).budget(request.max_tokens) - self._special_tokens
        if not key.retrieve and count > limit:
            raise OpenAIError(
                f"This model's maximum context length is {app.sampler.context_length} tokens: with "
                f"max_tokens {request.max_tokens} a prompt may take {limit} (context.budget may lower it), "
                f"this one takes {count}; shorten the prompt or lower max_tokens",
                param="prompt",
                code="context_length_exceeded",
            )
        return max(count - self._special_tokens, 0)

    def event(
        self, key: Key, prepared: Prepared, request: CompletionRequest, request_id: str, index: int
    ) -> SourceEvent:
        meta: dict[str, Any] = {"client": key.name, "request": request_id, "model": request.model}
        if request.user:
            meta["user"] = request.user
        return SourceEvent(
            source=self.name,
            key=f"{key.tree_source}/{request_id}/{index}",  # its own: no request supersedes another
            parent_id=prepared.placed.node_id,
            text=prepared.prompt,
            meta=meta,
            overrides=request.overrides(self.hub.app.config.sampling),
            debounce=False,
            memory=key.retrieve,
        )

    async def offer(
        self, key: Key, prepared: Prepared, request: CompletionRequest, request_id: str, index: int
    ) -> Sampled:
        """The prompt's offer, sampled and stored (nothing, for an echo with max_tokens 0)."""
        if not request.samples:
            return Sampled(None, [])
        return await self.sample(self.event(key, prepared, request, request_id, index))

    async def sample(self, event: SourceEvent) -> Sampled:
        """Sample the offer now (the daemon's queue, one model) and read back its nodes."""
        offer = await self.hub.offer_now(event)
        self.offers += 1
        nodes = await self.hub.run_blocking(functools.partial(self._nodes, offer))
        return Sampled(offer, nodes)

    def _nodes(self, offer: Offer) -> list[Node]:
        store = self.hub.app.store
        return [store.get_node(i) for i in offer.node_ids]

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Let an offer finish after its client went away (it is kept all the same)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@functools.lru_cache(maxsize=8)
def _key_store(home: Path) -> KeyStore:
    """One store per home, so its cache of keys.json is kept between calls."""
    return KeyStore(home)
