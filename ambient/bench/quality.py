"""``ambient bench quality``: how faithful each fast way of running the model is, beside llama.cpp's.

The gate of every speed-up: on fixed texts, every position's next-token
distribution of a candidate is compared with the float32 reference (the
model exactly as transformers loads it): the mean KL(reference ‖ candidate)
per token, in nats, and the share of positions whose most likely token agrees
(top-1 agreement). Candidates:

* **ambient's default** (float16 packs, :func:`ambient.packing.slim_for_cpu`):
  float16 holds the weights exactly, so only the summation order differs;
* **int8 output layer** and **int8 everywhere**: FBGEMM's dynamic int8 linear
  layers (per-row weight scales, activations quantised per call), the leads of
  the speed issue;
* **llama.cpp**: llama-cpp-python evaluating the bundled Q4_K_M GGUF, the very
  file the reference was dequantised from, so its gap is its own arithmetic
  (activations quantised to 8 bits in its dot products).

The texts are teacher-forced: each position sees the true text before it.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from ambient import models
from ambient.config import Config
from ambient.errors import InvalidInput

CHUNK = 64  # positions whose full distributions are compared at once (64 x 262k floats)
TOKENS_PER_TEXT = 384
GATE_TOP1 = 0.98
CODE = '''def merge(intervals):
    """Merge overlapping intervals."""
    intervals.sort(key=lambda p: p[0])
    merged = []
    for start, end in intervals:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


class Cache:
    def __init__(self, size):
        self.size = size
        self.items = {}
'''
TEXTS = {
    "prose (the sampling benchmark's prompt)": None,  # read from prompt.txt
    "code": CODE,
    "dialogue": (
        "\"Did you see the light on the hill last night?\" Mara asked.\n\"Only for a moment,\" said Tom. "
        "\"It moved like a lantern, but nobody lives up there.\"\n\"The old shepherd did, once.\"\n"
        "\"He's been gone for twenty years.\"\nMara pulled her coat tighter. \"Then who carries it?\"\n"
        "Tom didn't answer. Down in the valley a dog barked twice and fell silent, and the wind turned "
        "the weathervane on the chapel roof toward the north."
    ),
    "notes": (
        "Meeting notes, 14 March\n- Budget: the print run moves to May; Sara checks the paper prices.\n"
        "- Website: the archive pages load slowly; try caching the index.\n- Next issue: three essays, "
        "one interview, the photo series from the coast.\nTodo:\n1. Ask Jonas about the map licence.\n"
        "2. Draft the call for submissions.\n3. Book the room for the launch."
    ),
}


def run(config: Config, quick: bool = False) -> dict[str, Any]:
    import torch

    from ambient.sampling.local.loading import load, pick_device

    model_path = models.resolve_model_path(config)
    gguf = models.default_gguf_path(Path(config.models_dir))
    texts = dict(list(TEXTS.items())[:2]) if quick else TEXTS
    torch.set_num_threads(config.model.threads or torch.get_num_threads())
    with torch.inference_mode():
        reference_tokenizer, reference, _ = load(model_path, pick_device("cpu"), torch.float32, pack=False)
        ids = {name: _ids(reference_tokenizer, text) for name, text in texts.items()}
        ref_hidden = {name: _hidden(reference, seq) for name, seq in ids.items()}
        ref_head = reference.get_output_embeddings()
        candidates: dict[str, Callable[[str], Iterator[torch.Tensor]]] = {}
        for label, make in _torch_candidates().items():
            model = make(reference)
            hidden = {name: _hidden(model, seq) for name, seq in ids.items()}
            head = model.get_output_embeddings()
            candidates[label] = _logits_by_chunk(hidden, head)
        candidates["llama.cpp (Q4_K_M GGUF, llama-cpp-python)"] = _llama_logits(gguf, ids, config)
        rows: list[dict[str, Any]] = []
        for label, logits_of in candidates.items():
            kl, agree, count = 0.0, 0, 0
            for name in ids:
                pairs = zip(_chunks(ref_head, ref_hidden[name]), logits_of(name), strict=True)
                for ref_chunk, cand_chunk in pairs:
                    ref_lp = torch.log_softmax(ref_chunk.float(), -1)
                    cand_lp = torch.log_softmax(cand_chunk.float(), -1)
                    kl += float((ref_lp.exp() * (ref_lp - cand_lp)).sum())
                    agree += int((ref_lp.argmax(-1) == cand_lp.argmax(-1)).sum())
                    count += ref_lp.shape[0]
            rows.append({"candidate": label, "kl": kl / count, "top1": agree / count, "positions": count})
    llama = rows[-1]
    for row in rows:
        row["passes_gate"] = passes_gate(row["kl"], row["top1"], llama["kl"], llama["top1"])
    return {"texts": list(texts), "tokens_per_text": TOKENS_PER_TEXT, "rows": rows}


def passes_gate(kl: float, top1: float, llama_kl: float, llama_top1: float) -> bool:
    """Whether a fast path may be the default: top-1 agreement >= 98% and no less faithful than llama.cpp."""
    return top1 >= GATE_TOP1 and kl <= llama_kl and top1 >= llama_top1


def _logits_by_chunk(hidden: dict[str, Any], head: Any) -> Callable[[str], Iterator[Any]]:
    """The candidate's logits for a text, chunk by chunk (the output layer on CHUNK positions at a time)."""

    def logits_of(name: str) -> Iterator[Any]:
        return _chunks(head, hidden[name])

    return logits_of


def _torch_candidates() -> dict[str, Callable[[Any], Any]]:
    from ambient.packing import slim_for_cpu

    def packed(reference: Any) -> Any:
        model = copy.deepcopy(reference)
        slim_for_cpu(model)
        return model

    def int8(head_only: bool) -> Callable[[Any], Any]:
        def make(reference: Any) -> Any:
            import torch

            model = copy.deepcopy(reference)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
                from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

                if head_only:
                    head = quantize_dynamic(
                        torch.nn.Sequential(model.get_output_embeddings()),
                        {torch.nn.Linear: per_channel_dynamic_qconfig},
                        dtype=torch.qint8,
                    )[0]
                    model.set_output_embeddings(head)
                    return model
                every = {torch.nn.Linear: per_channel_dynamic_qconfig}
                return quantize_dynamic(model, every, dtype=torch.qint8)

        return make

    return {
        "ambient default: float16 packs (FBGEMM)": packed,
        "int8 output layer (FBGEMM dynamic, per-row scales)": int8(head_only=True),
        "int8 every linear layer (FBGEMM dynamic, per-row scales)": int8(head_only=False),
    }


def _ids(tokenizer: Any, text: str | None) -> list[int]:
    if text is None:
        text = resources.files("ambient.bench").joinpath("prompt.txt").read_text(encoding="utf-8")
    ids: list[int] = tokenizer(text)["input_ids"]
    return ids[:TOKENS_PER_TEXT]


def _hidden(model: Any, ids: list[int]) -> Any:
    """The last layer's normalised hidden states at every position (the output layer's input)."""
    import torch

    out = model.model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.last_hidden_state[0]


def _chunks(head: Any, hidden: Any) -> Iterator[Any]:
    for start in range(0, hidden.shape[0], CHUNK):
        yield head(hidden[start : start + CHUNK])


def _llama_logits(gguf: Path, ids: dict[str, list[int]], config: Config) -> Callable[[str], Iterator[Any]]:
    import torch

    try:
        from llama_cpp import Llama
    except ImportError:
        raise InvalidInput(
            "the quality benchmark compares with llama.cpp: install llama-cpp-python (`make setup-server`)"
        ) from None
    threads = config.model.threads or (torch.get_num_threads())
    llm = Llama(
        model_path=str(gguf), n_ctx=TOKENS_PER_TEXT + 8, n_threads=threads, logits_all=True, verbose=False
    )
    logits: dict[str, Any] = {}
    for name, seq in ids.items():
        llm.reset()  # type: ignore[no-untyped-call]
        llm.eval(seq)
        logits[name] = torch.from_numpy(llm.scores[: len(seq)].copy())

    def logits_of(name: str) -> Iterator[Any]:
        table = logits[name]
        return (table[s : s + CHUNK] for s in range(0, table.shape[0], CHUNK))

    return logits_of


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def to_markdown(result: dict[str, Any]) -> str:
    rows = [
        f"| {r['candidate']} | {r['kl']:.5f} | {100 * r['top1']:.2f}% | {_yes(r['passes_gate'])} |"
        for r in result["rows"]
    ]
    positions = result["rows"][0]["positions"] if result["rows"] else 0
    return "\n".join(
        [
            "## Quality: each fast path against the float32 reference",
            "",
            f"Every position of {len(result['texts'])} texts ({', '.join(result['texts'])}; up to "
            f"{result['tokens_per_text']} tokens each, {positions} positions in all), teacher-forced. KL is "
            "KL(reference ‖ candidate) per position in nats; top-1 is the share of positions where the most "
            "likely token agrees. The gate for a default: top-1 ≥ 98% and at least as faithful as llama.cpp "
            "(KL no higher, top-1 no lower).",
            "",
            "| candidate | mean KL (nats) | top-1 agreement | passes the gate |",
            "| --- | ---: | ---: | --- |",
            *rows,
            "",
            "The reference is the bundled Q4_K_M GGUF dequantised to float32, so llama.cpp's row is its own "
            "arithmetic on the same weights.",
        ]
    )

