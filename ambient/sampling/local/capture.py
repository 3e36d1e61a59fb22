"""Signal capture for the local sampler: per-token signals taken from the passes it makes anyway.

A :class:`SignalRun` lives for one ``generate`` call with ``signals`` on. It
hooks the model (:func:`ambient.sampling.signals.attach`) so every forward pass
leaves behind what the signals need, scores the prompt's source tokens as the
prompt is read (surprise), and turns each decode step into entropy, ease and
attention per branch. A :class:`SurpriseMemo` keeps the surprise of recent
prompt prefixes across calls, since a prefix the prefix cache supplies is not
read again. The maths is in :mod:`ambient.sampling.signals`.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ambient.sampling import signals

SURPRISE_MEMO = 16  # prompt prefixes whose surprise values are kept (beside the prefix cache's copies)

Head = Callable[[torch.Tensor], torch.Tensor]  # the output layer: final hidden states to logits
_Scored = tuple[list[float | None], torch.Tensor]  # surprise of a prefix, final hidden of its last token


def output_rows(model: Any, ids: torch.Tensor) -> torch.Tensor | None:
    """Rows ``ids`` (any shape) of the output layer's weights, or None when they cannot be read."""
    head = model.get_output_embeddings()
    if isinstance(head, torch.nn.Linear):
        return head.weight[ids]
    table = getattr(head, "rows", None)
    return table[ids] if isinstance(table, torch.Tensor) else None


def signal_kinds(model: Any, device: torch.device, attention_layer: int | None) -> frozenset[str]:
    """The signals ``model`` can give: ease needs the output rows, attention a full-attention layer."""
    kinds = {"entropy", "surprise"}
    if output_rows(model, torch.zeros((1, 1), dtype=torch.long, device=device)) is not None:
        kinds.add("ease")
    if attention_layer is not None:
        kinds.add("attention")
    return frozenset(kinds)


@dataclasses.dataclass
class SignalRun:
    """Signal state for one ``generate`` call (see :mod:`ambient.sampling.signals`)."""

    model: Any
    head: Head
    offered: frozenset[str]  # the signals this model gives (the sampler's capabilities)
    attention_layer: int | None
    kinds: torch.Tensor  # SINK / MEMORY / SOURCE per prompt position
    surprise: list[float | None]  # logprob of each prompt token (None: not source, or not read here)
    capture: signals.Capture = dataclasses.field(default_factory=signals.Capture)
    carry: tuple[int, torch.Tensor] | None = None  # (position, final hidden) predicting the next token
    cache: Any = None
    handles: list[Any] = dataclasses.field(default_factory=list)

    @classmethod
    def start(
        cls,
        model: Any,
        head: Head,
        offered: frozenset[str],
        attention_layer: int | None,
        kinds: torch.Tensor,
    ) -> SignalRun:
        """A run for a prompt whose positions are ``kinds``, with its hooks attached to ``model``."""
        run = cls(model, head, offered, attention_layer, kinds, surprise=[None] * kinds.shape[0])
        layer = attention_layer if "attention" in offered else None
        run.handles = signals.attach(model, layer, run.capture)
        return run

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    # ------------------------------------------------------------------ decode steps

    def step_rows(
        self, logits: torch.Tensor, chosen: torch.Tensor, norm: torch.Tensor, top_ids: torch.Tensor
    ) -> list[dict[str, Any]]:
        """Entropy, ease and attention for each row of this step (see :mod:`ambient.sampling.signals`)."""
        rows = logits.shape[0]
        out: list[dict[str, Any]] = [{"entropy": round(e, 4)} for e in signals.entropy(logits, norm).tolist()]
        cap = self.capture
        if cap.hidden and "ease" in self.offered:
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
        weights = output_rows(self.model, ids)
        if weights is None:
            return
        scores = signals.lens_logits(hidden, self.model.base_model.norm, weights)
        layers = hidden.shape[0]
        for row, layer in zip(out, signals.ease_layers(scores, col), strict=True):
            row["ease_layer"] = layer
            row["ease"] = None if layer is None else round(layer / layers, 4)

    def _attention(self, query: torch.Tensor) -> list[dict[str, float]]:
        assert self.attention_layer is not None
        attn = self.model.base_model.layers[self.attention_layer].self_attn
        keys = self.cache.layers[self.attention_layer].keys
        softcap = getattr(self.model.config, "attn_logit_softcapping", None)
        probs = signals.attention_probs(query, keys, float(attn.scaling), softcap)
        prompt = self.kinds
        new = torch.full((keys.shape[-2] - prompt.shape[0],), signals.NEW, device=prompt.device)
        return signals.attention_shares(probs, torch.cat([prompt, new]))

    # ------------------------------------------------------------------ the prompt

    def take_scores(self, logprobs: Sequence[float | None], hidden: torch.Tensor, prompt_length: int) -> None:
        """Surprise of a prefix scored before (``score_prompt``, an echo): ``logprobs[t]`` of each of its
        tokens given the ones before, ``hidden`` the state after its last; the same tokens as
        :meth:`score_prompt` would score (source tokens among the prompt's last ones)."""
        begin = max(1, prompt_length - signals.SURPRISE_MAX_TOKENS)
        for t in range(begin, len(logprobs)):
            lp = logprobs[t]
            if lp is not None and int(self.kinds[t]) == signals.SOURCE:
                self.surprise[t] = round(lp, 4)
        self.carry = (len(logprobs) - 1, hidden)

    def score_prompt(self, prompt_ids: list[int], hidden: torch.Tensor, first: int) -> None:
        """Surprise of the prompt's source tokens that positions ``first..`` (and the carried one) predict."""
        if self.carry is not None and self.carry[0] == first - 1:
            hidden, first = torch.cat([self.carry[1].unsqueeze(0), hidden]), first - 1
        self.carry = (first + hidden.shape[0] - 1, hidden[-1].clone())
        begin = max(first + 1, len(prompt_ids) - signals.SURPRISE_MAX_TOKENS)
        targets = range(begin, min(first + 1 + hidden.shape[0], len(prompt_ids)))
        wanted = [t for t in targets if int(self.kinds[t]) == signals.SOURCE]
        if not wanted:
            return
        rows = torch.tensor([t - 1 - first for t in wanted], device=hidden.device)
        ids = torch.tensor([prompt_ids[t] for t in wanted], device=hidden.device)
        for t, lp in zip(wanted, signals.token_logprobs(hidden[rows], ids, self.head).tolist(), strict=True):
            self.surprise[t] = round(lp, 4)

    def meta(
        self, offsets: Sequence[tuple[int, int]], memory_shares: Sequence[Sequence[float]]
    ) -> dict[str, Any]:
        """Offer-level signal facts: settings, whether each branch ignored memory, surprise as char spans.

        ``offsets`` are the prompt characters of each prompt token, ``memory_shares``
        each branch's attention on memory per token.
        """
        memory_tokens = int((self.kinds == signals.MEMORY).sum())
        info: dict[str, Any] = {
            "kinds": sorted(self.offered),
            "layers": int(self.model.config.num_hidden_layers),
            "lens_top_k": signals.LENS_TOP_K,
            "attention_layer": self.attention_layer,
            "recent_tokens": signals.RECENT_TOKENS,
            "memory_tokens": memory_tokens,
        }
        if memory_tokens:
            info["branches"] = [
                {
                    "memory_share": round(sum(shares) / max(1, len(shares)), 4),
                    "ignores_memory": signals.ignores_memory(shares),
                }
                for shares in memory_shares
            ]
        spans = [[offsets[i][0], offsets[i][1], lp] for i, lp in enumerate(self.surprise) if lp is not None]
        return {"signals": info, "surprise": spans}


class SurpriseMemo:
    """Surprise values of recent prompt prefixes (the oldest go first), kept across ``generate`` calls.

    The prefix cache lets a later call skip reading a stored prefix, so that call
    cannot score it; it recalls the values scored when the prefix was read.
    """

    def __init__(self, size: int = SURPRISE_MEMO) -> None:
        self.size = size
        self._memo: OrderedDict[tuple[int, ...], _Scored] = OrderedDict()

    def remember(self, run: SignalRun | None, prefix: list[int]) -> None:
        """Keep ``run``'s surprise for ``prefix``, when the prompt was read exactly to its end."""
        if run is None or run.carry is None or run.carry[0] != len(prefix) - 1:
            return
        self._memo[tuple(prefix)] = (run.surprise[: len(prefix)], run.carry[1])
        while len(self._memo) > self.size:
            self._memo.popitem(last=False)

    def recall(self, run: SignalRun | None, prefix: list[int]) -> bool:
        """Surprise values for a prefix read in an earlier call (the prefix cache skips reading it);
        whether it had them."""
        found = self._memo.get(tuple(prefix)) if run is not None else None
        if run is None or found is None:
            return False
        values, hidden = found
        run.surprise[: len(values)] = values
        run.carry = (len(prefix) - 1, hidden)
        return True


def _rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """``t`` with ``rows`` batch rows: a prompt pass (batch 1) is shared by every branch's first step."""
    return t.expand(rows, *t.shape[1:]) if t.shape[0] == 1 and rows > 1 else t
