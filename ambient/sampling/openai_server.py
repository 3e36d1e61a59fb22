"""What the ``openai`` backend asks the server besides completions: context length, token counts, models.

- **context length**: ``model.context_length`` if set; else what the server
  says (vLLM's ``max_model_len`` in ``/v1/models``, llama.cpp's ``/props``
  ``n_ctx``); else :data:`FALLBACK_CONTEXT`. Asked once, then kept.
- **token counting**: ``/tokenize`` (llama.cpp, vLLM) or ``/extras/tokenize``
  (llama-cpp-python), whichever answers first, remembered; a server with
  neither is not asked again, and counts become :func:`estimate_tokens`, one
  token per :data:`CHARS_PER_TOKEN` characters plus one, which errs long.
- **served models**: the names in ``/v1/models``, for an error that names the
  model to set, and to check that a personal adapter asked for by name is
  served there (vLLM lists each ``--lora-modules NAME=FOLDER`` as a model):
  :func:`adapter_refusal`, :func:`personal_refusal` say in one line why one is
  not used.

The JSON of these answers is read by :mod:`ambient.sampling.openai_wire`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import threading

from ambient.sampling import openai_wire as wire
from ambient.sampling.http_client import Client, Endpoint, HTTPStatusError, ReadTimeout, ServerUnreachable

_LOGGER = logging.getLogger(__name__)

CHARS_PER_TOKEN = 3  # estimate when the server cannot count (English prose averages about 4)
FALLBACK_CONTEXT = 2048  # context length when neither config nor server says


def estimate_tokens(text: str) -> int:
    """One token per :data:`CHARS_PER_TOKEN` characters, rounded up, plus a begin-of-text marker."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) + 1


class ServerFacts:
    """The server's answers about itself, asked on first use and kept (one per sampler)."""

    def __init__(self, client: Client, endpoint: Endpoint, model: str, context_length: int = 0) -> None:
        self._client = client
        self._endpoint = endpoint
        self._model = model
        self._context_override = context_length
        self._context: int | None = None
        self._tokenize_path: str | None = None  # found on first use; "" = the server has none
        self._lock = threading.Lock()

    def context_length(self) -> int:
        if self._context_override > 0:
            return self._context_override
        if self._context is None:
            self._context = self._ask_context_length() or FALLBACK_CONTEXT
        return self._context

    def count_tokens(self, text: str) -> int:
        """The server's count where it can tokenize, else an estimate that errs long."""
        if self._tokenize_path != "":
            counted = self._server_count(text)
            if counted is not None:
                return counted
        return estimate_tokens(text)

    def served_models(self) -> list[str]:
        """The models the server says it serves; none when it will not say."""
        try:
            data = self._client.get_json(wire.MODELS_PATH)
        except Exception:
            return []
        return wire.served_models(data)

    def listed_models(self) -> list[str] | None:
        """The names in ``/v1/models`` (none when the server has no such list); None when it cannot be
        asked now (unreachable, not answering, refusing the key, failing): ask again later."""
        try:
            data = self._client.get_json(wire.MODELS_PATH)
        except (ServerUnreachable, ReadTimeout):
            return None
        except HTTPStatusError as exc:
            return None if exc.status in (401, 403) or exc.status >= 500 else []
        return wire.served_models(data)

    def _ask_context_length(self) -> int | None:
        from_models = functools.partial(wire.context_from_models, model=self._model)
        for path, find in ((wire.MODELS_PATH, from_models), (wire.PROPS_PATH, wire.context_from_props)):
            try:
                found = find(self._client.get_json(path))
            except Exception:
                continue
            if found:
                return found
        return None

    def _server_count(self, text: str) -> int | None:
        paths = [self._tokenize_path] if self._tokenize_path else list(wire.TOKENIZE_PATHS)
        body = wire.tokenize_body(self._model, text)
        for path in paths:
            assert path is not None
            try:
                data = self._client.post_json(path, body)
            except HTTPStatusError:
                continue
            except (ServerUnreachable, ReadTimeout):
                return None  # say nothing yet: the next generate() gives the clear error
            count = wire.count_from(data)
            if count is not None:
                with self._lock:
                    self._tokenize_path = path
                return count
        with self._lock:
            self._tokenize_path = ""
        _LOGGER.info("the server at %s cannot tokenize; token counts are estimates", self._endpoint)
        return None


@dataclasses.dataclass(frozen=True)
class ServedAdapter:
    """A personal adapter the server serves under a model name of its own (vLLM: ``--lora-modules``)."""

    name: str


def adapter_refusal(name: str, where: str, listed: list[str]) -> str | None:
    """None when the server at ``where`` lists ``name``; else why the adapter is not used and the fix."""
    if name in listed:
        return None
    serves = f"it serves {', '.join(listed)}" if listed else "it lists no models at /v1/models"
    return (
        f"the completions server at {where} does not serve the adapter {name!r} ({serves}): load it "
        f"there (vLLM: --enable-lora --lora-modules {name}=FOLDER) or set model.adapter = \"none\" "
        "(sampling with the base model only)"
    )


def personal_refusal(name: str, folder: str, where: str) -> str:
    """Why ``model.adapter = "personal"`` (the home's active adapter ``name``) is not used by a server."""
    return (
        f"model.adapter = \"personal\" names your adapter {name}, but the completions server at {where} "
        f"cannot read ambient's adapter files: copy its folder {folder} to the server, load it there by "
        f"name (vLLM: --enable-lora --lora-modules {name}=FOLDER) and set model.adapter = \"{name}\", "
        "or set model.adapter = \"none\" (sampling with the base model only)"
    )
