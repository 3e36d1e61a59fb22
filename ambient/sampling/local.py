"""The local backend: a transformers causal LM on this machine (CUDA if present, else CPU).

N continuations cost one prompt pass. The prompt runs through the model once
(batch 1); its KV cache is then repeated to N rows and the N branches decode
together, one batched step per token. The output layer (the largest matrix of
a small model with a big vocabulary) is applied only to the positions that are
sampled: the last prompt position, then the N new positions per step. A branch
that finishes leaves the batch, so it costs nothing more.
"""

from __future__ import annotations  # noqa: I001  (ambient.models must come before transformers)

import dataclasses
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ambient import models  # first: it sets the offline switches transformers reads on import
from ambient.errors import InvalidInput, ModelUnavailable
from ambient.sampling import signals
from ambient.sampling.prefix_cache import PrefixCache
from ambient.sampling.base import (
    MAX_N,
    SIGNALS,
    Capabilities,
    Continuation,
    OnToken,
    SampleResult,
    Sampler,
    SamplingOptions,
    Token,
    TokenAlt,
)

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

CPU_CONTEXT_CAP = 8192
GPU_CONTEXT_CAP = 32768
PREFILL_CHUNK = 2048  # prompt tokens per forward pass; bounds attention memory on long prompts
NUCLEUS_PROBE = 1024  # top-p first looks for the nucleus among this many most likely words
SAMPLE_BLOCK = 1024  # words per block in two-level inverse-CDF sampling
GROW_MIN = 64  # spare positions a cache layer grows by at least
HEAD_BLOCK_ROWS = 32768  # output-layer rows packed per block
EXACT_CHECK_ROWS = 16384  # rows compared per block when checking float16 exactness
DETOK_CONTEXT = 4  # prompt tokens the incremental detokenizer starts from (keeps leading spaces)
SURPRISE_MEMO = 16  # prompt prefixes whose surprise values are kept (beside the prefix cache's copies)


# --------------------------------------------------------------------------- text helpers


class IncrementalDetokenizer:
    """Turns a growing list of token ids into new text, one complete character at a time.

    Each step decodes a short window and emits the suffix that is new since the
    last step; while the window ends in U+FFFD (a UTF-8 character split over
    tokens) nothing is emitted, so no broken character ever leaves.
    """

    def __init__(self, tokenizer: Any, context: Sequence[int] = ()) -> None:
        self._tok = tokenizer
        self.ids: list[int] = list(context)
        self._prefix = 0
        self._read = len(self.ids)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        head = self._decode(self.ids[self._prefix : self._read])
        full = self._decode(self.ids[self._prefix :])
        if len(full) <= len(head) or full.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return full[len(head) :]

    def flush(self) -> str:
        """The text still held back, less a trailing incomplete character (its bytes never completed)."""
        head = self._decode(self.ids[self._prefix : self._read])
        full = self._decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return full[len(head) :].rstrip("\ufffd")

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))


class StopMatcher:
    """Finds stop strings in a branch's text and says how much text must wait."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stops)
        self.longest = max((len(s) for s in self.stops), default=0)

    def find(self, text: str, new_chars: int) -> int:
        """Where the earliest stop string that ends in the last ``new_chars`` characters begins, or -1."""
        if not self.stops:
            return -1
        start = max(0, len(text) - new_chars - self.longest + 1)
        hits = [i for i in (text.find(s, start) for s in self.stops) if i >= 0]
        return min(hits, default=-1)

    def held(self, text: str) -> int:
        """Characters at the end of ``text`` that could begin a stop string (so are not released yet)."""
        for k in range(min(self.longest - 1, len(text)), 0, -1):
            tail = text[-k:]
            if any(s.startswith(tail) for s in self.stops):
                return k
        return 0


# --------------------------------------------------------------------------- sampling helpers


def sampling_weights(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Unnormalised sampling weights per row, after temperature, top-k and top-p.

    Returns ``(weights, ids)``: with a filter, ``weights`` covers only the
    candidate words and ``ids`` maps its columns to word ids; without one,
    ``weights`` spans the whole vocabulary and ``ids`` is None.
    """
    logits = logits.float()  # a no-op for float32
    probs = torch.softmax(logits if temperature == 1.0 else logits / temperature, dim=-1)
    vocab = probs.shape[-1]
    if top_k <= 0 and top_p >= 1.0:
        return probs, None
    k = min(top_k if top_k > 0 else NUCLEUS_PROBE, vocab)
    values, ids = torch.topk(probs, k, dim=-1)  # sorted, most likely first
    if top_k <= 0 and k < vocab and bool((values.sum(-1) < top_p).any()):
        values, ids = torch.sort(probs, dim=-1, descending=True)  # nucleus wider than the probe
    if top_p < 1.0:
        total = values.sum(-1, keepdim=True) if top_k > 0 else 1.0  # top-p applies after top-k renormalises
        before = (values.cumsum(-1) - values) / total
        values = values.masked_fill(before >= top_p, 0.0)
    return values, ids


def draw(weights: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One column per row, drawn in proportion to ``weights`` with one uniform from that row's generator.

    Inverse-CDF sampling in two levels (blocks, then words within the chosen
    block) so a 262k vocabulary needs no full-length cumulative sum.
    """
    rows, width = weights.shape
    uniforms = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
    block = SAMPLE_BLOCK if width > SAMPLE_BLOCK else width
    padded = torch.nn.functional.pad(weights, (0, -width % block)) if width % block else weights
    blocks = padded.view(rows, -1, block)
    sums = blocks.sum(-1, dtype=torch.float64)
    cdf = sums.cumsum(-1)
    target = uniforms.to(cdf.device) * cdf[:, -1]
    chosen = torch.searchsorted(cdf, target.unsqueeze(1), right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)
    row_ids = torch.arange(rows, device=weights.device)
    inner = blocks[row_ids, chosen].double()
    rest = target - (cdf[row_ids, chosen] - sums[row_ids, chosen])
    within = torch.searchsorted(inner.cumsum(-1), rest.unsqueeze(1), right=True).squeeze(1)
    last_positive = block - 1 - (inner > 0).flip(-1).int().argmax(-1)  # never land on a masked word
    return chosen * block + torch.minimum(within, last_positive)


def choose_tokens(
    logits: torch.Tensor, options: SamplingOptions, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """One token id per row: greedy at temperature 0, else drawn with that row's own generator."""
    if options.temperature == 0:
        return logits.argmax(dim=-1)
    weights, ids = sampling_weights(logits, options.temperature, options.top_k, options.top_p)
    picked = draw(weights, generators)
    if ids is None:
        return picked
    return ids.gather(1, picked.unsqueeze(1)).squeeze(1)


# --------------------------------------------------------------------------- cache


class _Buffer:
    """Key and value rows of one layer, appended into spare capacity instead of re-copied each step."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.k, self.v = keys, values  # [batch, heads, capacity, dim]
        self.start = self.end = 0

    def append(self, keys: torch.Tensor, values: torch.Tensor, keep: int | None) -> None:
        """Add ``keys``/``values``; ``keep`` = how many recent positions must stay (None = all)."""
        new = keys.shape[-2]
        if self.end + new > self.k.shape[-2]:
            self._make_room(new, keep)
        self.k[:, :, self.end : self.end + new] = keys
        self.v[:, :, self.end : self.end + new] = values
        self.end += new

    def _make_room(self, new: int, keep: int | None) -> None:
        """Move the positions still needed to the front, into a bigger buffer if they do not fit."""
        held = self.end - self.start if keep is None else min(keep, self.end - self.start)
        k = self.k[:, :, self.end - held : self.end]
        v = self.v[:, :, self.end - held : self.end]
        need = held + new
        if need + need // 4 > self.k.shape[-2]:
            self.k, self.v = _with_room(k, need), _with_room(v, need)
        else:  # enough room once compacted; clone because source and target may overlap
            self.k[:, :, :held] = k.clone()
            self.v[:, :, :held] = v.clone()
        self.start, self.end = 0, held

    def view(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The last ``length`` positions."""
        return self.k[:, :, self.end - length : self.end], self.v[:, :, self.end - length : self.end]

    def select(self, rows: torch.Tensor | None, repeats: int = 1) -> None:
        """Keep batch rows ``rows``, or repeat each row ``repeats`` times."""
        k, v = self.k[:, :, self.start : self.end], self.v[:, :, self.start : self.end]
        if rows is not None:
            k, v = k[rows], v[rows]
        else:
            k, v = k.repeat_interleave(repeats, dim=0), v.repeat_interleave(repeats, dim=0)
        self.k, self.v = _with_room(k, k.shape[-2]), _with_room(v, v.shape[-2])
        self.start, self.end = 0, k.shape[-2]


def _with_room(t: torch.Tensor, need: int) -> torch.Tensor:
    """A new [batch, heads, capacity, dim] buffer starting with ``t``, with room for ``need`` positions."""
    capacity = need + max(GROW_MIN, need // 4)
    out = t.new_empty((*t.shape[:2], capacity, t.shape[3]))
    out[:, :, : t.shape[2]] = t
    return out


class GrowingLayer(DynamicLayer):  # type: ignore[misc]
    """A full-attention cache layer that appends in place (amortised) rather than concatenating every step."""

    buf: _Buffer | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.buf is None:
            self.lazy_initialization(key_states, value_states)
            self.buf = _Buffer(_with_room(key_states[:, :, :0], 0), _with_room(value_states[:, :, :0], 0))
        self.buf.append(key_states, value_states, None)
        self.keys, self.values = self.buf.view(self.buf.end - self.buf.start)
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.buf is not None:
            self.buf.select(None, repeats)
            self.keys, self.values = self.buf.view(self.buf.end)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.buf is not None:
            self.buf.select(indices)
            self.keys, self.values = self.buf.view(self.buf.end)


class GrowingSlidingLayer(DynamicSlidingWindowLayer):  # type: ignore[misc]
    """A sliding-window cache layer that behaves like transformers' own, without per-step copies."""

    buf: _Buffer | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.buf is None:
            self.lazy_initialization(key_states, value_states)
            self.buf = _Buffer(_with_room(key_states[:, :, :0], 0), _with_room(value_states[:, :, :0], 0))
        window = self.sliding_window - 1
        seen = min(self.buf.end - self.buf.start, window)
        new = key_states.shape[-2]
        self.cumulative_length += new
        self.buf.append(key_states, value_states, window)
        self.buf.start = max(self.buf.start, self.buf.end - window)
        self.keys, self.values = self.buf.view(self.buf.end - self.buf.start)
        return self.buf.view(seen + new)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.buf is not None:
            self.buf.select(None, repeats)
            self.keys, self.values = self.buf.view(self.buf.end)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.buf is not None:
            self.buf.select(indices)
            self.keys, self.values = self.buf.view(self.buf.end)


def new_cache(config: Any) -> DynamicCache:
    """A DynamicCache for ``config`` whose plain layers append in place; other layer kinds stay stock."""
    cache = DynamicCache(config=config)
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer:
            cache.layers[i] = GrowingLayer()
        elif type(layer) is DynamicSlidingWindowLayer:
            cache.layers[i] = GrowingSlidingLayer(sliding_window=layer.sliding_window)
    return cache


# --------------------------------------------------------------------------- branches


@dataclasses.dataclass
class _Branch:
    """One continuation being written."""

    index: int
    generator: torch.Generator
    detok: IncrementalDetokenizer
    text: str = ""  # decoded so far, including what is held back
    released: int = 0  # characters of ``text`` already handed out in tokens
    tokens: list[Token] = dataclasses.field(default_factory=list)
    finish_reason: str | None = None
    memory_shares: list[float] = dataclasses.field(default_factory=list)  # attention on memory, per token

    def continuation(self) -> Continuation:
        body = "".join(t.text for t in self.tokens)
        return Continuation(text=body, tokens=self.tokens, finish_reason=self.finish_reason or "length")


@dataclasses.dataclass
class _Encoded:
    ids: list[int]
    truncated_tokens: int = 0
    truncated_chars: int = 0
    offsets: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # prompt chars per kept id
    special: list[bool] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _StepView:
    """What one step produced for the rows still in the batch."""

    chosen: list[int]
    logprobs: list[float]
    alt_ids: list[list[int]]
    alt_logprobs: list[list[float]]
    extras: list[dict[str, Any]] | None = None  # per-row signals, when asked for


_Scored = tuple[list[float | None], torch.Tensor]  # surprise of a prefix, final hidden of its last token


@dataclasses.dataclass
class _SignalRun:
    """Signal state for one ``generate`` call (see :mod:`ambient.sampling.signals`)."""

    capture: signals.Capture
    kinds: torch.Tensor  # SINK / MEMORY / SOURCE per prompt position
    surprise: list[float | None]  # logprob of each prompt token (None: not source, or not read here)
    carry: tuple[int, torch.Tensor] | None = None  # (position, final hidden) predicting the next token
    cache: Any = None
    handles: list[Any] = dataclasses.field(default_factory=list)

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


# --------------------------------------------------------------------------- the sampler


class LocalSampler(Sampler):
    """Samples with a local transformers model; see the module docstring for how N branches share work."""

    capabilities = Capabilities(streams=True, logprobs=True, max_n=MAX_N, signals=SIGNALS)

    def __init__(
        self, model_path: str | Path, device: str = "auto", threads: int = 0, prefix_cache_mb: int = 256
    ) -> None:
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise ModelUnavailable(
                f"no model folder at {path}: use model.path = \"default\" or a folder with config.json; "
                "ambient never downloads models"
            )
        self.path = path
        self.name = path.name
        self.device = _pick_device(device)
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        if self.device.type == "cpu":
            torch.set_num_threads(threads if threads > 0 else (os.cpu_count() or 1))
        self._lock = threading.Lock()
        self.tokenizer, self.model = _load(path, self.device, self.dtype)
        self.eos_token_ids: frozenset[int] = _eos_ids(self.tokenizer, self.model)
        self.packed_layers = slim_for_cpu(self.model) if self.device.type == "cpu" else 0
        self.step_weight_bytes = weight_bytes_per_step(self.model)
        self._alt_text: dict[int, str] = {}
        self._anchor: list[int] = self.tokenizer.encode("a", add_special_tokens=False)[-1:]
        self.prefixes = PrefixCache(prefix_cache_mb * 2**20)
        self._attention_layer = signals.attention_layer_index(self.model.config)
        self.capabilities = Capabilities(
            streams=True, logprobs=True, max_n=MAX_N, signals=self._signal_kinds()
        )
        self._run: _SignalRun | None = None
        self._surprise_memo: OrderedDict[tuple[int, ...], _Scored] = OrderedDict()

    @classmethod
    def from_config(cls, config: Any) -> LocalSampler:
        """Build from :class:`ambient.config.Config` (prepares the default model if needed)."""
        path = models.resolve_model_path(config)
        return cls(
            path,
            device=config.model.device,
            threads=config.model.threads,
            prefix_cache_mb=config.model.prefix_cache_mb,
        )

    @property
    def context_length(self) -> int:
        cap = GPU_CONTEXT_CAP if self.device.type == "cuda" else CPU_CONTEXT_CAP
        declared = int(getattr(self.model.config, "max_position_embeddings", 0) or cap)
        return min(declared, cap)

    def count_tokens(self, text: str) -> int:
        """Tokens the model is fed for ``text``, its begin-of-text marker included."""
        return len(self.tokenizer(text, split_special_tokens=True)["input_ids"])

    def close(self) -> None:
        with self._lock:
            self.model = None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    # ------------------------------------------------------------------ generate

    def generate(
        self,
        prompt: str,
        options: SamplingOptions,
        on_token: OnToken | None = None,
        cancel: threading.Event | None = None,
    ) -> SampleResult:
        options = options.validate()
        if not prompt:
            raise InvalidInput("the prompt is empty: give some text to continue")
        if self.model is None:
            raise ModelUnavailable("this sampler was closed: create a new one")
        with self._lock, torch.inference_mode():
            return self._generate(prompt, options, on_token, cancel)

    def _generate(
        self, prompt: str, options: SamplingOptions, on_token: OnToken | None, cancel: threading.Event | None
    ) -> SampleResult:
        enc = self._encode(prompt, options.max_tokens)
        seed = options.seed if options.seed is not None else secrets.randbits(31)
        branches = self._branches(enc.ids, options.n, seed)
        self._run = self._start_signals(enc, options) if options.signals else None
        try:
            t0 = time.perf_counter()
            cache, logits, reused = self._prefill(enc.ids)
            t1 = time.perf_counter()
            if self._run is not None:
                self._run.cache = cache
            steps = self._decode_loop(cache, logits, branches, options, on_token, cancel)
            t2 = time.perf_counter()
            signal_meta = self._signal_meta(enc, branches) if self._run is not None else {}
        finally:
            if self._run is not None:
                self._run.detach()
            self._run = None
        meta: dict[str, Any] = {
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "prefill_s": round(t1 - t0, 4),
            "prefill_reused_tokens": reused,
            "decode_s": round(t2 - t1, 4),
            "decode_steps": steps,
            "seed": seed,
            **signal_meta,
        }
        return SampleResult(
            continuations=[b.continuation() for b in branches],
            model=self.name,
            prompt_tokens=len(enc.ids),
            truncated_tokens=enc.truncated_tokens,
            truncated_chars=enc.truncated_chars,
            meta=meta,
        )

    def _encode(self, prompt: str, max_tokens: int) -> _Encoded:
        """Prompt ids, cut from the left (after leading special tokens) to leave room for ``max_tokens``.

        Marker-like text in the prompt (``<eos>``) is read as plain text, never as a control token.
        """
        enc = self.tokenizer(
            prompt, split_special_tokens=True, return_offsets_mapping=True, return_special_tokens_mask=True
        )
        ids: list[int] = list(enc["input_ids"])
        special: list[int] = list(enc["special_tokens_mask"])
        offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
        lead = 0
        while lead < len(ids) and special[lead]:
            lead += 1
        end = len(ids)
        while end > lead and special[end - 1]:  # never feed a trailing end-of-text marker
            end -= 1
        budget = max(1, self.context_length - max_tokens - lead)
        start = max(lead, end - budget)
        if start >= end:
            raise InvalidInput("the prompt has no text tokens: give some text to continue")
        kept = ids[:lead] + ids[start:end]
        cut_chars = offsets[start][0] if start > lead else 0
        return _Encoded(
            kept,
            truncated_tokens=start - lead,
            truncated_chars=cut_chars,
            offsets=offsets[:lead] + offsets[start:end],
            special=[bool(x) for x in special[:lead] + special[start:end]],
        )

    def _branches(self, prompt_ids: list[int], n: int, seed: int) -> list[_Branch]:
        context = prompt_ids[-DETOK_CONTEXT:]
        return [
            _Branch(
                index=i,
                generator=torch.Generator().manual_seed(seed + i),
                detok=IncrementalDetokenizer(self.tokenizer, context),
            )
            for i in range(n)
        ]

    def _forward(self, ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """Run ``ids`` (batch × len) through the model; logits of each row's last position only.

        The decoder body runs on every position; the output layer only on the
        last one, as one matrix product of the weights by the hidden states.
        """
        return self._head(self._body(ids, cache)[:, -1, :])

    def _body(self, ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """The decoder body's final (normed) hidden states, batch × len × width."""
        if self._run is not None:
            self._run.capture.clear()
        body = self.model.base_model(input_ids=ids, cache=cache, use_cache=True)
        hidden: torch.Tensor = body.last_hidden_state
        return hidden

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The output layer (and final soft-capping, if the model has it) on hidden states rows × width."""
        head = self.model.get_output_embeddings()
        if isinstance(head, torch.nn.Linear):  # weights as the big operand: a faster BLAS path than x @ W.T
            logits = torch.mm(head.weight, hidden.t()).t().contiguous()
            if head.bias is not None:
                logits += head.bias
        else:
            logits = head(hidden)
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def _prefill(self, prompt_ids: list[int]) -> tuple[DynamicCache, torch.Tensor, int]:
        """One pass over the prompt (batch 1, in chunks): the cache, the last position's logits, and
        how many leading tokens came from a stored prefix cache instead (see :mod:`prefix_cache`)."""
        reuse = self.prefixes.lookup(prompt_ids)
        cache, done = (reuse.cache, reuse.tokens) if reuse else (new_cache(self.model.config), 0)
        reused = done
        if done:
            self._recall_surprise(prompt_ids[:done])
        cut = self.prefixes.cut_point(len(prompt_ids), done)
        if cut is not None:  # read up to the cut, keep a copy there, then read the rest
            self._read(prompt_ids, done, cut, cache, logits=False)
            self.prefixes.store(prompt_ids[:cut], cache)
            self._remember_surprise(prompt_ids[:cut])
            done = cut
        return cache, self._read(prompt_ids, done, len(prompt_ids), cache), reused

    def _read(
        self, prompt_ids: list[int], start: int, end: int, cache: DynamicCache, *, logits: bool = True
    ) -> torch.Tensor:
        """Run prompt tokens ``start:end`` into ``cache`` in chunks; the logits of the last one.

        With ``logits=False`` the output layer (most of a small model's weights) is not applied at all.
        """
        ids = torch.tensor([prompt_ids[start:end]], device=self.device)
        last = torch.empty(0)
        for at in range(0, ids.shape[1], PREFILL_CHUNK):
            hidden = self._body(ids[:, at : at + PREFILL_CHUNK], cache)
            if self._run is not None:
                self._score_prompt(prompt_ids, hidden[0], start + at)
            if logits and at + PREFILL_CHUNK >= ids.shape[1]:
                last = self._head(hidden[:, -1, :])
        return last

    def _decode_loop(
        self,
        cache: DynamicCache,
        logits: torch.Tensor,
        branches: list[_Branch],
        options: SamplingOptions,
        on_token: OnToken | None,
        cancel: threading.Event | None,
    ) -> int:
        """Decode all branches together, one batched step per token; returns the number of steps."""
        if len(branches) > 1:
            cache.batch_repeat_interleave(len(branches))
        logits = logits.expand(len(branches), -1)
        active = list(branches)
        stops = StopMatcher(options.stop)
        steps = 0
        for step in range(options.max_tokens):
            if cancel is not None and cancel.is_set():
                for b in active:
                    b.finish_reason = "cancelled"
                break
            view = self._step_view(logits, active, options)
            steps += 1
            last = step == options.max_tokens - 1
            keep = [i for i, b in enumerate(active) if not self._advance(b, view, i, stops, last, on_token)]
            if not keep:
                break
            next_ids = torch.tensor([[view.chosen[i]] for i in keep], device=self.device)
            if len(keep) < len(active):
                cache.batch_select_indices(torch.tensor(keep, device=self.device))
                active = [active[i] for i in keep]
            logits = self._forward(next_ids, cache)
        return steps

    def _step_view(self, logits: torch.Tensor, active: list[_Branch], options: SamplingOptions) -> _StepView:
        """Choose each active row's token; its logprob and the top alternatives (temperature-1 model)."""
        logits = logits.float()
        chosen = choose_tokens(logits, options, [b.generator for b in active])
        norm = torch.logsumexp(logits, dim=-1, keepdim=True)  # log-softmax without materialising it
        picked = (logits.gather(1, chosen.unsqueeze(1)) - norm).squeeze(1)
        k = options.top_logprobs
        wide = torch.topk(logits, max(k, signals.LENS_TOP_K), dim=-1) if self._run is not None else None
        if k > 0:  # with signals, the alternatives are the head of the lens candidates (one top-k)
            top = torch.topk(logits, k, dim=-1) if wide is None else (wide.values[:, :k], wide.indices[:, :k])
            alt_ids, alt_lps = top[1].tolist(), (top[0] - norm).tolist()
        else:
            alt_ids, alt_lps = [[] for _ in active], [[] for _ in active]
        extras = self._signal_rows(logits, chosen, norm, wide.indices) if wide is not None else None
        return _StepView(chosen.tolist(), picked.tolist(), alt_ids, alt_lps, extras)

    def _advance(
        self, b: _Branch, view: _StepView, row: int, stops: StopMatcher, last: bool, on_token: OnToken | None
    ) -> bool:
        """Add row ``row``'s token to branch ``b``; True when the branch is finished."""
        token_id = view.chosen[row]
        eos = token_id in self.eos_token_ids
        new = "" if eos else b.detok.push(token_id)
        if last and not eos:
            new += b.detok.flush()
        b.text += new
        cut = stops.find(b.text, len(new))
        if cut >= 0:
            b.text, b.finish_reason = b.text[:cut], "stop"
        elif eos:
            b.finish_reason = "stop"
        elif last:
            b.finish_reason = "length"
        end = len(b.text) if b.finish_reason else len(b.text) - stops.held(b.text)
        release = b.text[b.released : max(end, b.released)]
        b.released = max(end, b.released)
        if not eos or release:  # an end-of-text token is recorded only to hand out held-back text
            self._emit(b, view, row, release, on_token)
        return b.finish_reason is not None

    def _emit(self, b: _Branch, view: _StepView, row: int, text: str, on_token: OnToken | None) -> None:
        pairs = zip(view.alt_ids[row], view.alt_logprobs[row], strict=True)
        alts = tuple(TokenAlt(self._token_text(i), lp) for i, lp in pairs)
        extra = view.extras[row] if view.extras is not None else None
        if extra is not None and "attention" in extra:
            b.memory_shares.append(extra["attention"]["memory"])
        token = Token(text=text, logprob=view.logprobs[row], top=alts, extra=extra)
        b.tokens.append(token)
        if on_token is not None:
            on_token(b.index, token)

    def _token_text(self, token_id: int) -> str:
        """A word's own text, as it reads after other text (leading space kept)."""
        text = self._alt_text.get(token_id)
        if text is None:
            text = _standalone_text(self.tokenizer, self._anchor, token_id)
            self._alt_text[token_id] = text
        return text

    # ------------------------------------------------------------------ signals

    def _signal_kinds(self) -> frozenset[str]:
        """The signals this model can give: ease needs the output rows, attention a full-attention layer."""
        kinds = {"entropy", "surprise"}
        if self._output_rows(torch.zeros((1, 1), dtype=torch.long, device=self.device)) is not None:
            kinds.add("ease")
        if self._attention_layer is not None:
            kinds.add("attention")
        return frozenset(kinds)

    def _output_rows(self, ids: torch.Tensor) -> torch.Tensor | None:
        """Rows ``ids`` (any shape) of the output layer's weights, or None when they cannot be read."""
        head = self.model.get_output_embeddings()
        if isinstance(head, torch.nn.Linear):
            return head.weight[ids]
        table = getattr(head, "rows", None)
        return table[ids] if isinstance(table, torch.Tensor) else None

    def _start_signals(self, enc: _Encoded, options: SamplingOptions) -> _SignalRun:
        kinds = signals.position_kinds(enc.offsets, enc.special, options.regions)
        run = _SignalRun(
            capture=signals.Capture(),
            kinds=torch.tensor(kinds, device=self.device),
            surprise=[None] * len(enc.ids),
        )
        layer = self._attention_layer if "attention" in self.capabilities.signals else None
        run.handles = signals.attach(self.model, layer, run.capture)
        return run

    def _signal_rows(
        self, logits: torch.Tensor, chosen: torch.Tensor, norm: torch.Tensor, top_ids: torch.Tensor
    ) -> list[dict[str, Any]]:
        """Entropy, ease and attention for each row of this step (see :mod:`ambient.sampling.signals`)."""
        assert self._run is not None
        rows = logits.shape[0]
        out: list[dict[str, Any]] = [{"entropy": round(e, 4)} for e in signals.entropy(logits, norm).tolist()]
        cap = self._run.capture
        if cap.hidden and "ease" in self.capabilities.signals:
            candidates = top_ids[:, : signals.LENS_TOP_K]
            self._add_ease(out, candidates, chosen, torch.stack([_rows(h, rows) for h in cap.hidden]))
        if cap.query is not None and cap.cos is not None and cap.sin is not None:
            query = signals.rotate(_rows(cap.query, rows), _rows(cap.cos, rows), _rows(cap.sin, rows))
            for row, shares in zip(out, self._attention(query), strict=True):
                row["attention"] = shares
        return out

    def _add_ease(
        self, out: list[dict[str, Any]], ids: torch.Tensor, chosen: torch.Tensor, hidden: torch.Tensor
    ) -> None:
        col = signals.candidate_column(ids, chosen)
        weights = self._output_rows(ids)
        if weights is None:
            return
        scores = signals.lens_logits(hidden, self.model.base_model.norm, weights)
        layers = hidden.shape[0]
        for row, layer in zip(out, signals.ease_layers(scores, col), strict=True):
            row["ease_layer"] = layer
            row["ease"] = None if layer is None else round(layer / layers, 4)

    def _attention(self, query: torch.Tensor) -> list[dict[str, float]]:
        assert self._run is not None and self._attention_layer is not None
        attn = self.model.base_model.layers[self._attention_layer].self_attn
        keys = self._run.cache.layers[self._attention_layer].keys
        softcap = getattr(self.model.config, "attn_logit_softcapping", None)
        probs = signals.attention_probs(query, keys, float(attn.scaling), softcap)
        prompt = self._run.kinds
        new = torch.full((keys.shape[-2] - prompt.shape[0],), signals.NEW, device=prompt.device)
        return signals.attention_shares(probs, torch.cat([prompt, new]))

    def _score_prompt(self, prompt_ids: list[int], hidden: torch.Tensor, first: int) -> None:
        """Surprise of the prompt's source tokens that positions ``first..`` (and the carried one) predict."""
        run = self._run
        assert run is not None
        if run.carry is not None and run.carry[0] == first - 1:
            hidden, first = torch.cat([run.carry[1].unsqueeze(0), hidden]), first - 1
        run.carry = (first + hidden.shape[0] - 1, hidden[-1].clone())
        begin = max(first + 1, len(prompt_ids) - signals.SURPRISE_MAX_TOKENS)
        targets = range(begin, min(first + 1 + hidden.shape[0], len(prompt_ids)))
        wanted = [t for t in targets if int(run.kinds[t]) == signals.SOURCE]
        if not wanted:
            return
        rows = torch.tensor([t - 1 - first for t in wanted], device=hidden.device)
        ids = torch.tensor([prompt_ids[t] for t in wanted], device=hidden.device)
        for t, lp in zip(wanted, signals.token_logprobs(hidden[rows], ids, self._head).tolist(), strict=True):
            run.surprise[t] = round(lp, 4)

    def _remember_surprise(self, prefix: list[int]) -> None:
        run = self._run
        if run is None or run.carry is None or run.carry[0] != len(prefix) - 1:
            return
        self._surprise_memo[tuple(prefix)] = (run.surprise[: len(prefix)], run.carry[1])
        while len(self._surprise_memo) > SURPRISE_MEMO:
            self._surprise_memo.popitem(last=False)

    def _recall_surprise(self, prefix: list[int]) -> None:
        """Surprise values for a prefix read in an earlier call (the prefix cache skips reading it)."""
        run = self._run
        found = self._surprise_memo.get(tuple(prefix)) if run is not None else None
        if run is None or found is None:
            return
        values, hidden = found
        run.surprise[: len(values)] = values
        run.carry = (len(prefix) - 1, hidden)

    def _signal_meta(self, enc: _Encoded, branches: list[_Branch]) -> dict[str, Any]:
        """Offer-level signal facts: settings, whether each branch ignored memory, surprise as char spans."""
        assert self._run is not None
        memory_tokens = int((self._run.kinds == signals.MEMORY).sum())
        info: dict[str, Any] = {
            "kinds": sorted(self.capabilities.signals),
            "layers": int(self.model.config.num_hidden_layers),
            "lens_top_k": signals.LENS_TOP_K,
            "attention_layer": self._attention_layer,
            "recent_tokens": signals.RECENT_TOKENS,
            "memory_tokens": memory_tokens,
        }
        if memory_tokens:
            info["branches"] = [
                {
                    "memory_share": round(sum(b.memory_shares) / max(1, len(b.memory_shares)), 4),
                    "ignores_memory": signals.ignores_memory(b.memory_shares),
                }
                for b in branches
            ]
        spans = [
            [enc.offsets[i][0], enc.offsets[i][1], lp]
            for i, lp in enumerate(self._run.surprise)
            if lp is not None
        ]
        return {"signals": info, "surprise": spans}


def _rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """``t`` with ``rows`` batch rows: a prompt pass (batch 1) is shared by every branch's first step."""
    return t.expand(rows, *t.shape[1:]) if t.shape[0] == 1 and rows > 1 else t


# --------------------------------------------------------------------------- loading


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailable(f"model.device = {device!r} but no CUDA GPU is visible: use 'auto' or 'cpu'")
    if device != "cpu" and not device.startswith("cuda"):
        raise ModelUnavailable(f"model.device = {device!r} is not known: use 'auto', 'cpu' or 'cuda'")
    return torch.device(device)


def _load(path: Path, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"cannot load the model in {path} ({exc}): check the folder, or use model.path = \"default\""
        ) from exc
    model.to(device)
    model.eval()
    return tokenizer, model


# --------------------------------------------------------------------------- CPU weights


def fp16_exact(weight: torch.Tensor) -> bool:
    """Whether float16 holds every value of ``weight`` exactly (true of any bf16 or quantised model)."""
    if weight.device.type != "cpu" or not weight.is_floating_point():
        return False
    rows = weight.reshape(-1, weight.shape[-1])
    return all(torch.equal(c.half().to(c.dtype), c) for c in rows.split(EXACT_CHECK_ROWS))


class PackedLinear(torch.nn.Module):  # type: ignore[misc]
    """A linear layer with weights packed as float16 for FBGEMM's AVX2 kernels (the maths stays float32).

    Used on CPU only, for weights that float16 holds exactly, so results match
    float32 weights up to summation order. A step reads half the bytes, and
    avoids the slow generic BLAS path that some CPUs get.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        b = None if bias is None else bias.detach().float()
        self.packed = torch.ops.quantized.linear_prepack_fp16(weight.detach().float(), b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.ops.quantized.linear_dynamic_fp16(x, self.packed)
        return out


class PackedHead(torch.nn.Module):  # type: ignore[misc]
    """The output layer as float16-packed row blocks (packing block by block bounds the memory it needs)."""

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.rows = rows  # the weights as a float16 table, when one exists anyway (tied embeddings)
        step = HEAD_BLOCK_ROWS
        self.blocks = torch.nn.ModuleList(
            PackedLinear(weight[r : r + step], None if bias is None else bias[r : r + step])
            for r in range(0, self.out_features, step)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([block(x) for block in self.blocks], dim=-1)


class CompactEmbedding(torch.nn.Module):  # type: ignore[misc]
    """An input embedding kept as float16 (exact) and widened to float32 for the rows looked up."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor | None) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = weight.shape
        self.register_buffer("table", weight.detach().half(), persistent=False)
        self.scale = None if scale is None else float(scale)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.embedding(ids, self.table).float()
        return out * self.scale if self.scale is not None else out


def fbgemm_ready() -> bool:
    engines = torch.backends.quantized.supported_engines
    return hasattr(torch.ops.quantized, "linear_prepack_fp16") and "fbgemm" in engines


def _embedding_scale(emb: torch.nn.Module) -> tuple[bool, torch.Tensor | None]:
    """Whether ``emb`` is a plain (or plainly scaled, as Gemma's) embedding, and its scale."""
    if type(emb) is torch.nn.Embedding:
        return True, None
    scale = getattr(emb, "embed_scale", None)
    if isinstance(emb, torch.nn.Embedding) and isinstance(scale, torch.Tensor) and scale.numel() == 1:
        return True, scale.float()
    return False, None


def slim_for_cpu(model: Any) -> int:
    """Pack the weights of a float32 CPU model as exact float16 where possible; returns the layers packed.

    The input embeddings become a float16 table, the output layer and every
    other linear layer FBGEMM float16 packs. Whatever float16 does not hold
    exactly, or is not a plain layer, stays as it is. Old weights are dropped
    as soon as their replacement exists, which keeps the peak memory low.
    """
    if not fbgemm_ready():
        return 0
    head = model.get_output_embeddings()
    emb_weight = getattr(model.get_input_embeddings(), "weight", None)
    tied = isinstance(head, torch.nn.Linear) and head.weight is emb_weight
    del emb_weight
    table = _compact_input_embeddings(model)
    packed = 0
    if isinstance(head, torch.nn.Linear):
        source = table if tied else (head.weight if fp16_exact(head.weight) else None)
        if source is not None:
            bias = head.bias
            model.set_output_embeddings(torch.nn.Identity())  # drop the float32 weight before packing
            del head
            _return_freed_memory()
            model.set_output_embeddings(PackedHead(source, bias, rows=table if tied else None))
            packed += 1
    packed += _pack_linears(model)
    _return_freed_memory()
    return packed


def _compact_input_embeddings(model: Any) -> torch.Tensor | None:
    """Swap the input embeddings for a :class:`CompactEmbedding`; its float16 table, or None if not done."""
    emb = model.get_input_embeddings()
    plain, scale = _embedding_scale(emb)
    if not plain or not fp16_exact(emb.weight):
        return None
    compact = CompactEmbedding(emb.weight, scale)
    model.set_input_embeddings(compact)
    table: torch.Tensor = compact.table
    return table


def _pack_linears(model: torch.nn.Module) -> int:
    """Swap every remaining ``nn.Linear`` for a :class:`PackedLinear` where exact; returns how many."""
    places = [
        (parent, name)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, torch.nn.Linear) and fp16_exact(child.weight)
    ]
    for parent, name in places:  # one at a time, so each float32 weight goes as its pack arrives
        child = getattr(parent, name)
        setattr(parent, name, PackedLinear(child.weight, child.bias))
    return len(places)


def _return_freed_memory() -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise), so RSS shows real use."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def weight_bytes_per_step(model: Any) -> int:
    """Bytes of weights one decode step reads; the input embeddings are only looked up, so not counted."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    emb_weight = getattr(emb, "weight", None)
    total = sum(p.numel() * p.element_size() for p in model.parameters() if p is not emb_weight)
    for m in model.modules():
        if isinstance(m, PackedLinear):
            total += 2 * m.in_features * m.out_features
    if isinstance(head, torch.nn.Linear) and emb_weight is not None and head.weight is emb_weight:
        total += head.weight.numel() * head.weight.element_size()
    return int(total)


def _eos_ids(tokenizer: Any, model: Any) -> frozenset[int]:
    found: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, list | tuple):
            found.update(int(v) for v in value)
    return frozenset(found)


def _standalone_text(tokenizer: Any, anchor: list[int], token_id: int) -> str:
    """Decode one id as it reads after other text: some tokenizers drop a leading space at the start."""
    head = tokenizer.decode(anchor, skip_special_tokens=False)
    full = tokenizer.decode([*anchor, token_id], skip_special_tokens=False)
    return str(full[len(head) :] if full.startswith(head) else tokenizer.decode([token_id]))
