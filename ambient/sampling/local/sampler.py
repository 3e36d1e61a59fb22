"""The local backend's sampler: a transformers causal LM on this machine (CUDA if present, else CPU).

N continuations cost one prompt pass. The prompt runs through the model once
(batch 1); its KV cache is then repeated to N rows and the N branches decode
together, one batched step per token. The output layer (the largest matrix of
a small model with a big vocabulary) is applied only to the positions that are
sampled: the last prompt position, then the N new positions per step. A branch
that finishes leaves the batch, so it costs nothing more.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache

from ambient import adapters, models
from ambient.adapters import AdapterError
from ambient.errors import InvalidInput, ModelUnavailable
from ambient.packing import weight_bytes_per_step
from ambient.sampling import signals
from ambient.sampling.base import (
    MAX_N,
    SIGNALS,
    Capabilities,
    OnToken,
    PromptScore,
    Sampler,
    SampleResult,
    SamplingOptions,
    Token,
    TokenAlt,
)
from ambient.sampling.local.adapter import Adapter, RowSwitch, install
from ambient.sampling.local.adapter import load as load_adapter
from ambient.sampling.local.branch import Branch
from ambient.sampling.local.capture import SignalRun, SurpriseMemo, signal_kinds
from ambient.sampling.local.drawing import choose_tokens
from ambient.sampling.local.kv_cache import new_cache
from ambient.sampling.local.loading import eos_ids, load, pick_device
from ambient.sampling.local.scoring import Scored, ScoreMemo
from ambient.sampling.local.text import IncrementalDetokenizer, StopMatcher, standalone_text
from ambient.sampling.prefix_cache import PrefixCache

CPU_CONTEXT_CAP = 8192
GPU_CONTEXT_CAP = 32768
PREFILL_CHUNK = 2048  # prompt tokens per forward pass; bounds attention memory on long prompts
SCORE_ROWS = 64  # prompt positions per output-layer pass when scoring a prompt (64 x 262k logits: 64 MiB)
DETOK_CONTEXT = 4  # prompt tokens the incremental detokenizer starts from (keeps leading spaces)
_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass
class _Encoded:
    """The prompt as the model reads it: the kept ids, what was cut, and each id's prompt characters."""

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


class LocalSampler(Sampler):
    """Samples with a local transformers model; see the module docstring for how N branches share work."""

    capabilities = Capabilities(streams=True, logprobs=True, max_n=MAX_N, signals=SIGNALS, scores_prompt=True)

    def __init__(
        self,
        model_path: str | Path,
        device: str = "auto",
        threads: int = 0,
        prefix_cache_mb: int = 256,
        adapter: Path | None = None,
        adapter_share: float = 0.5,
        follow_home: Path | None = None,
    ) -> None:
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise ModelUnavailable(
                f"no model folder at {path}: use model.path = \"default\" or a folder with config.json; "
                "ambient never downloads models"
            )
        self.path = path
        self.name = path.name
        self.device = pick_device(device)
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        if self.device.type == "cpu":
            torch.set_num_threads(threads if threads > 0 else (os.cpu_count() or 1))
        self._lock = threading.Lock()
        self.tokenizer, self.model, self.packed_layers = load(path, self.device, self.dtype)
        self.eos_token_ids: frozenset[int] = eos_ids(self.tokenizer, self.model)
        self.step_weight_bytes = weight_bytes_per_step(self.model)
        self.vocab_size = int(self.model.get_input_embeddings().num_embeddings)
        self._alt_text: dict[int, str] = {}
        self._anchor: list[int] = self.tokenizer.encode("a", add_special_tokens=False)[-1:]
        self.prefixes = PrefixCache(prefix_cache_mb * 2**20)
        self._switch = RowSwitch()  # which decode rows take the personal adapter (.adapter)
        self._adapter_hooks: list[Any] = []
        self._fingerprint: str | None = None
        self.adapter: Adapter | None = None
        self.adapter_share = adapter_share  # the share of each offer's branches the adapter writes
        self.adapter_problem: str | None = None  # why the adapter asked for is not in use
        # model.adapter = "personal": follow the home's active adapter (`ambient tune` may change it)
        self._follow = follow_home
        self._following: Path | None = adapter
        if adapter is not None:
            self.use_adapter(adapter)
        self._attention_layer = signals.attention_layer_index(self.model.config)
        self.capabilities = Capabilities(
            streams=True,
            logprobs=True,
            max_n=MAX_N,
            signals=signal_kinds(self.model, self.device, self._attention_layer),
            scores_prompt=True,
            vocab_size=self.vocab_size,
        )
        self._run: SignalRun | None = None  # while a call with signals on runs
        self._surprise = SurpriseMemo()
        self._scores = ScoreMemo()  # scores of recent prompt prefixes (an app echoing a growing prompt)

    @classmethod
    def from_config(cls, config: Any) -> LocalSampler:
        """Build from :class:`ambient.config.Config` (prepares the default model if needed)."""
        path = models.resolve_model_path(config)
        return cls(
            path,
            device=config.model.device,
            threads=config.model.threads,
            prefix_cache_mb=config.model.prefix_cache_mb,
            adapter=adapters.resolve(config.model.adapter, config.home),
            adapter_share=config.model.adapter_share,
            follow_home=config.home if config.model.adapter == adapters.PERSONAL else None,
        )

    @property
    def context_length(self) -> int:
        cap = GPU_CONTEXT_CAP if self.device.type == "cuda" else CPU_CONTEXT_CAP
        declared = int(getattr(self.model.config, "max_position_embeddings", 0) or cap)
        return min(declared, cap)

    def count_tokens(self, text: str) -> int:
        """Tokens the model is fed for ``text``, its begin-of-text marker included."""
        return len(self.tokenizer(text, split_special_tokens=True)["input_ids"])

    def use_adapter(self, path: Path | None) -> Adapter | None:
        """Write the personal branches with the adapter at ``path`` (None: no adapter, every branch base).

        An adapter that cannot be used (damaged, or made for another model) is refused: the base
        model writes every branch and :attr:`adapter_problem` says why in one line.
        """
        with self._lock:
            try:
                if path is None:
                    adapter = None
                else:
                    if self._fingerprint is None:
                        self._fingerprint = adapters.model_fingerprint(self.path)
                    adapter = load_adapter(path, self.model, self._fingerprint, self.name)
            except AdapterError as exc:
                self.adapter_problem = f"{exc} (sampling with the base model only)"
                _LOGGER.warning("%s", self.adapter_problem)
                adapter = None
            else:
                self.adapter_problem = None
            install(self.model, adapter, self._switch, self._adapter_hooks)
            self.adapter = adapter
            return adapter

    def personal_rows(self, n: int, allowed: bool = True) -> list[bool]:
        """Which of ``n`` branches the adapter writes: :attr:`adapter_share` of them, spread out
        (none when not ``allowed``: the document's personal switch is off)."""
        share = self.adapter_share if self.adapter is not None and allowed else 0.0
        return [int((i + 1) * share + 1e-9) > int(i * share + 1e-9) for i in range(n)]

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
        self._check_bias(options)
        self._follow_active()
        with self._lock, torch.inference_mode():
            return self._generate(prompt, options, on_token, cancel)

    def _follow_active(self) -> None:
        """With ``model.adapter = "personal"``: take up the home's active adapter if it changed."""
        if self._follow is None:
            return
        active = adapters.resolve(adapters.PERSONAL, self._follow)
        if active != self._following:
            self._following = active
            self.use_adapter(active)

    def _check_bias(self, options: SamplingOptions) -> None:
        wrong = [i for i in options.logit_bias if i >= self.vocab_size]
        if wrong:
            raise InvalidInput(
                f"logit_bias names token {wrong[0]}, but this model's words are 0..{self.vocab_size - 1}: "
                "use ids of this model's tokenizer"
            )

    def _generate(
        self, prompt: str, options: SamplingOptions, on_token: OnToken | None, cancel: threading.Event | None
    ) -> SampleResult:
        enc = self._encode(prompt, options.max_tokens)
        seed = options.seed if options.seed is not None else secrets.randbits(31)
        branches = self._branches(enc.ids, options.n, seed)
        personal = self.personal_rows(options.n, options.personal)
        self._run = self._start_signals(enc, options) if options.signals else None
        try:
            t0 = time.perf_counter()
            cache, logits, reused = self._prefill(enc.ids)
            t1 = time.perf_counter()
            if self._run is not None:
                self._run.cache = cache
            steps = self._decode_loop(cache, logits, branches, options, on_token, cancel, personal)
            t2 = time.perf_counter()
            signal_meta: dict[str, Any] = {}
            if self._run is not None:
                signal_meta = self._run.meta(enc.offsets, [b.memory_shares for b in branches])
        finally:
            self._switch.set(None)
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
        continuations = [b.continuation() for b in branches]
        if self.adapter is not None:  # each branch says who wrote it: the base model or the adapter
            rows = [i for i, p in enumerate(personal) if p]
            meta["adapter"] = {"name": self.adapter.name, "branches": rows}
            for c, p in zip(continuations, personal, strict=True):
                c.meta["adapter"] = self.adapter.name if p else adapters.NONE
        return SampleResult(
            continuations=continuations,
            model=self.name,
            prompt_tokens=len(enc.ids),
            truncated_tokens=enc.truncated_tokens,
            truncated_chars=enc.truncated_chars,
            meta=meta,
        )

    def _start_signals(self, enc: _Encoded, options: SamplingOptions) -> SignalRun:
        """Hook the model for one call's signals; ``enc`` says which prompt positions are memory or source."""
        kinds = signals.position_kinds(enc.offsets, enc.special, options.regions)
        return SignalRun.start(
            self.model,
            self._head,
            self.capabilities.signals,
            self._attention_layer,
            torch.tensor(kinds, device=self.device),
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

    def _branches(self, prompt_ids: list[int], n: int, seed: int) -> list[Branch]:
        context = prompt_ids[-DETOK_CONTEXT:]
        return [
            Branch(
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
        if done and not self._surprise.recall(self._run, prompt_ids[:done]):
            scored = self._scores.exact(prompt_ids[:done])  # read by score_prompt (an echo) instead
            if scored is not None and self._run is not None:
                self._run.take_scores(scored.logprobs, scored.hidden, len(prompt_ids))
        cut = self.prefixes.cut_point(len(prompt_ids), done)
        if cut is not None:  # read up to the cut, keep a copy there, then read the rest
            self._read(prompt_ids, done, cut, cache, logits=False)
            self.prefixes.store(prompt_ids[:cut], cache)
            self._surprise.remember(self._run, prompt_ids[:cut])
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
                self._run.score_prompt(prompt_ids, hidden[0], start + at)
            if logits and at + PREFILL_CHUNK >= ids.shape[1]:
                last = self._head(hidden[:, -1, :])
        return last

    def _decode_loop(
        self,
        cache: DynamicCache,
        logits: torch.Tensor,
        branches: list[Branch],
        options: SamplingOptions,
        on_token: OnToken | None,
        cancel: threading.Event | None,
        personal: list[bool] | None = None,
    ) -> int:
        """Decode all branches together, one batched step per token; returns the number of steps.

        ``personal[i]``: branch i's tokens after the first are written with the adapter (the first
        comes from the prompt pass, which the base model makes for every branch).
        """
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
            if personal is not None:
                self._switch.set([personal[b.index] for b in active])
            logits = self._forward(next_ids, cache)
        return steps

    def _step_view(self, logits: torch.Tensor, active: list[Branch], options: SamplingOptions) -> _StepView:
        """Choose each active row's token; its logprob and the top alternatives (temperature-1 model)."""
        logits = logits.float()
        chosen = choose_tokens(_biased(logits, options), options, [b.generator for b in active])
        norm = torch.logsumexp(logits, dim=-1, keepdim=True)  # log-softmax without materialising it
        picked = (logits.gather(1, chosen.unsqueeze(1)) - norm).squeeze(1)
        k = options.top_logprobs
        wide = torch.topk(logits, max(k, signals.LENS_TOP_K), dim=-1) if self._run is not None else None
        if k > 0:  # with signals, the alternatives are the head of the lens candidates (one top-k)
            top = torch.topk(logits, k, dim=-1) if wide is None else (wide.values[:, :k], wide.indices[:, :k])
            alt_ids, alt_lps = top[1].tolist(), (top[0] - norm).tolist()
        else:
            alt_ids, alt_lps = [[] for _ in active], [[] for _ in active]
        extras = None
        if self._run is not None and wide is not None:
            extras = self._run.step_rows(logits, chosen, norm, wide.indices)
        return _StepView(chosen.tolist(), picked.tolist(), alt_ids, alt_lps, extras)

    def _advance(
        self, b: Branch, view: _StepView, row: int, stops: StopMatcher, last: bool, on_token: OnToken | None
    ) -> bool:
        """Add row ``row``'s token to branch ``b``; True when the branch is finished."""
        token_id = view.chosen[row]
        eos = token_id in self.eos_token_ids
        release = b.add(token_id, eos, last, stops)
        if not eos or release:  # an end-of-text token is recorded only to hand out held-back text
            self._emit(b, view, row, release, on_token)
        return b.finish_reason is not None

    def _emit(self, b: Branch, view: _StepView, row: int, text: str, on_token: OnToken | None) -> None:
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
            text = standalone_text(self.tokenizer, self._anchor, token_id)
            self._alt_text[token_id] = text
        return text

    # ------------------------------------------------------------------ scoring a prompt

    def score_prompt(self, prompt: str, top_logprobs: int = 0) -> PromptScore:
        """Each text token of ``prompt``: its logprob given the tokens before it, and the likeliest words.

        One pass over the prompt in chunks, the output layer applied :data:`SCORE_ROWS` positions
        at a time. A prompt longer than the model's context is refused rather than cut.
        """
        if not prompt:
            raise InvalidInput("the prompt is empty: give some text to score")
        if not 0 <= top_logprobs <= 20:
            raise InvalidInput(f"top_logprobs must be between 0 and 20, got {top_logprobs}")
        if self.model is None:
            raise ModelUnavailable("this sampler was closed: create a new one")
        with self._lock, torch.inference_mode():
            return self._score(prompt, top_logprobs)

    def _score(self, prompt: str, k: int) -> PromptScore:
        enc = self.tokenizer(
            prompt, split_special_tokens=True, return_offsets_mapping=True, return_special_tokens_mask=True
        )
        ids: list[int] = list(enc["input_ids"])
        special: list[int] = list(enc["special_tokens_mask"])
        lead = 0
        while lead < len(ids) and special[lead]:
            lead += 1
        end = len(ids)
        while end > lead and special[end - 1]:
            end -= 1
        if end == lead:
            raise InvalidInput("the prompt has no text tokens: give some text to score")
        if end > self.context_length:
            raise InvalidInput(
                f"the prompt is {end} tokens, more than the {self.context_length} this model reads: "
                "shorten it"
            )
        ids = ids[:end]
        logprobs: list[float | None] = [None] * end
        tops: list[tuple[TokenAlt, ...]] = [()] * end
        found = self._scores.recall(self.prefixes, ids, k)
        if found is None:
            cache, done, carry = new_cache(self.model.config), 0, None
        else:  # a prefix scored before: its cache and scores are taken, only the rest is read
            reuse, known = found
            cache, done, carry = reuse.cache, reuse.tokens, known.hidden
            logprobs[:done] = known.logprobs[:done]
            tops[:done] = [t[:k] for t in known.tops[:done]]
        cut = self.prefixes.cut_point(end, done)
        for start, stop in ((done, cut), (cut, end)) if cut is not None else ((done, end),):
            for at in range(start, stop, PREFILL_CHUNK):
                chunk = torch.tensor([ids[at : min(at + PREFILL_CHUNK, stop)]], device=self.device)
                hidden = self._body(chunk, cache)[0]
                if carry is None:  # (a chunk's first token was scored with the chunk before)
                    self._score_rows(hidden, at, ids, k, logprobs, tops)
                else:  # after a remembered prefix: its last position predicts this chunk's first token
                    self._score_rows(torch.cat([carry.unsqueeze(0), hidden]), at - 1, ids, k, logprobs, tops)
                    carry = None
                last = hidden[-1]
            if stop == cut:  # keep the prefix for the next, longer prompt
                self.prefixes.store(ids[:cut], cache)
                self._scores.remember(ids[:cut], Scored(logprobs[:cut], tops[:cut], last.clone(), k))
        starts = _token_starts([int(o[0]) for o in enc["offset_mapping"][lead + 1 : end]], len(prompt))
        tokens = [
            Token(text=prompt[starts[i] : starts[i + 1]], logprob=logprobs[t], top=tops[t])
            for i, t in enumerate(range(lead, end))
        ]
        return PromptScore(tokens=tokens, offsets=starts[:-1])

    def _score_rows(
        self,
        hidden: torch.Tensor,
        first: int,
        ids: list[int],
        k: int,
        logprobs: list[float | None],
        tops: list[tuple[TokenAlt, ...]],
    ) -> None:
        """Positions ``first..`` (rows of ``hidden``) predict tokens ``first + 1..``: logprobs and tops."""
        rows = min(hidden.shape[0], len(ids) - 1 - first)  # the last position predicts no prompt token
        for at in range(0, rows, SCORE_ROWS):
            count = min(SCORE_ROWS, rows - at)
            logits = self._head(hidden[at : at + count]).float()
            norm = torch.logsumexp(logits, dim=-1, keepdim=True)
            targets = torch.tensor(ids[first + at + 1 : first + at + 1 + count], device=logits.device)
            picked = (logits.gather(1, targets.unsqueeze(1)) - norm).squeeze(1).tolist()
            if k > 0:
                values, alt_ids = torch.topk(logits, k, dim=-1)
                alt_lps = (values - norm).tolist()
                alts = alt_ids.tolist()
            for row in range(count):
                target = first + at + 1 + row
                logprobs[target] = picked[row]
                if k > 0:
                    pairs = zip(alts[row], alt_lps[row], strict=True)
                    tops[target] = tuple(TokenAlt(self._token_text(i), lp) for i, lp in pairs)


def _token_starts(offsets: list[int], length: int) -> list[int]:
    """Where each text token's text begins (the first at 0), then ``length``: each token's text runs to
    the next one's start, so the texts join to the prompt exactly (a character split over several
    byte tokens goes to one of them)."""
    starts = [0]
    for at in [*offsets, length]:
        starts.append(min(max(at, starts[-1]), length))
    return starts


def _biased(logits: torch.Tensor, options: SamplingOptions) -> torch.Tensor:
    """``logits`` with ``options.logit_bias`` added (the draw sees it; logprobs stay the model's own)."""
    if not options.logit_bias:
        return logits
    ids = torch.tensor(list(options.logit_bias), device=logits.device)
    bias = torch.tensor(list(options.logit_bias.values()), dtype=logits.dtype, device=logits.device)
    out = logits.clone()
    out[:, ids] += bias
    return out
