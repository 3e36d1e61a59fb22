"""CPU weight packing: float16 copies of float32 weights, for FBGEMM's fast CPU kernels.

On CPU a model runs in float32, yet the weights of a bf16 (or quantised)
model fit float16 exactly. :class:`PackedLinear` keeps a linear layer's weights
as an FBGEMM float16 pack (half the bytes a step reads, and a faster kernel on
CPUs that get the slow generic BLAS path) while the maths stays float32.
:func:`slim_for_cpu` applies that to a whole causal LM (input embeddings,
output layer and every other linear layer, wherever float16 is exact); the
local sampler uses it at load time, and the embedder packs its query model
with :class:`PackedLinear` too.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

HEAD_BLOCK_ROWS = 32768  # output-layer rows packed per block
EXACT_CHECK_ROWS = 16384  # rows compared per block when checking float16 exactness
T = TypeVar("T")
R = TypeVar("R")


def fbgemm_ready() -> bool:
    """Whether this torch build has FBGEMM's float16 linear kernels."""
    engines = torch.backends.quantized.supported_engines
    return hasattr(torch.ops.quantized, "linear_prepack_fp16") and "fbgemm" in engines


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

        def block(r: int) -> PackedLinear:
            return PackedLinear(weight[r : r + step], None if bias is None else bias[r : r + step])

        self.blocks = torch.nn.ModuleList(in_parallel(block, range(0, self.out_features, step)))

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
            return_freed_memory(collect=False)  # the float32 head went with its last reference
            model.set_output_embeddings(PackedHead(source, bias, rows=table if tied else None))
            packed += 1
    packed += _pack_linears(model)
    return_freed_memory()
    return packed


def _embedding_scale(emb: torch.nn.Module) -> tuple[bool, torch.Tensor | None]:
    """Whether ``emb`` is a plain (or plainly scaled, as Gemma's) embedding, and its scale.

    The scale is taken at full precision where the module keeps it as a number
    too (``scalar_embed_scale``): a model loaded in bfloat16 holds its scale
    tensor rounded to bfloat16.
    """
    if type(emb) is torch.nn.Embedding:
        return True, None
    scale = getattr(emb, "embed_scale", None)
    if isinstance(emb, torch.nn.Embedding) and isinstance(scale, torch.Tensor) and scale.numel() == 1:
        exact = getattr(emb, "scalar_embed_scale", None)
        return True, torch.tensor(float(exact)) if isinstance(exact, float) else scale.float()
    return False, None


def widen_unpacked(model: torch.nn.Module, stored: torch.dtype) -> int:
    """Make every parameter and buffer still in ``stored`` (16-bit) float32, outside the packed modules.

    After :func:`slim_for_cpu` on a model loaded as stored, what was not packed
    (norms, biases, layers float16 cannot hold) is computed in float32, as a
    float32 load would have it. The float16 table of a :class:`CompactEmbedding`
    stays as it is. Returns how many tensors were widened.
    """
    widened = 0
    for module in model.modules():
        if isinstance(module, CompactEmbedding | PackedLinear | PackedHead):
            continue
        for param in module.parameters(recurse=False):
            if param.dtype == stored:
                param.data = param.data.float()
                widened += 1
        for name, buf in module.named_buffers(recurse=False):
            if buf.dtype == stored:
                setattr(module, name, buf.float())
                widened += 1
    return widened


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


    def pack(place: tuple[torch.nn.Module, str]) -> None:  # each float32 weight goes as its pack arrives
        parent, name = place
        child = getattr(parent, name)
        setattr(parent, name, PackedLinear(child.weight, child.bias))

    in_parallel(pack, places)
    return len(places)


def in_parallel(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]`` on as many threads as torch uses: for packing, which runs without the GIL.

    FBGEMM's packing is single-threaded C++ that releases the GIL, so two
    threads pack the model in half the time on two cores (measured 2.4 -> 1.2 s
    for the 262k-row output layer), and other start-up work can run beside it.
    """
    workers = min(len(items), max(1, torch.get_num_threads()))
    if workers <= 1:
        return [fn(x) for x in items]
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="ambient-pack") as pool:
        return list(pool.map(fn, items))


def return_freed_memory(collect: bool = True) -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise), so RSS shows real use.

    ``collect`` first runs Python's garbage collector (about 0.2 s with a model
    loaded), for objects only a reference cycle still holds.
    """
    import ctypes
    import gc

    if collect:
        gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def weight_bytes_per_step(model: Any) -> int:
    """Bytes of weights one decode step reads; the input embeddings are only looked up, so not counted.

    A :class:`PackedLinear` counts at float16 (its pack is not a parameter).
    """
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    emb_weight = getattr(emb, "weight", None)
    total = sum(p.numel() * p.element_size() for p in model.parameters() if p is not emb_weight)
    for m in model.modules():
        if isinstance(m, PackedLinear):
            total += 2 * m.in_features * m.out_features
    if isinstance(head, torch.nn.Linear) and emb_weight is not None and head.weight is emb_weight:
        total += head.weight.numel() * head.weight.element_size()
    return int(total)
