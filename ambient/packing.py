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
import dataclasses
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from ambient import residency

HEAD_BLOCK_ROWS = 32768  # output-layer rows packed per block
EXACT_CHECK_ROWS = 16384  # rows compared per block when checking float16 exactness
FBGEMM_K_BLOCK = 512  # FBGEMM's float16 packs hold the input dimension in blocks of this many rows
SCAN_BYTES = 8 << 20  # memory read at a time when looking for packs
PACK_ALIGN = 64  # FBGEMM's packs start on 64-byte boundaries
CACHED_ROWS = 16384  # rows of a mapped embedding table kept copied (at most a page each: 64 MB)
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
    """The output layer as float16-packed row blocks (packing block by block bounds the memory it needs).

    Each block's padding (:func:`release_pack_padding`) and, where the weights
    are a mapped checkpoint, the file pages it read are handed back as soon as
    it is packed, so packing holds about one block per thread beside the packs.
    """

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.rows = rows  # the weights as a 16-bit table, when one exists anyway (tied embeddings)
        step = HEAD_BLOCK_ROWS

        def block(r: int) -> tuple[PackedLinear, int]:
            part = weight[r : r + step]
            pages = residency.file_pages(part)
            before = set(residency.regions())
            packed = PackedLinear(part, None if bias is None else bias[r : r + step])
            released = release_pack_padding([PackShape.of(part)], before)
            if pages is not None:
                residency.release(pages)
            return packed, released

        blocks = in_parallel(block, range(0, self.out_features, step))
        self.blocks = torch.nn.ModuleList([b for b, _ in blocks])
        self.padding_released = sum(n for _, n in blocks)  # bytes of zero padding handed back

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_empty((*x.shape[:-1], self.out_features))  # each block's output goes in as it comes
        at = 0
        for block in self.blocks:
            y = block(x)
            out[..., at : at + y.shape[-1]] = y
            at += y.shape[-1]
        return out


class RowCache:
    """The rows of a mapped 16-bit table that were read, copied into memory of their own.

    Reading a row of a mapped file maps much more than the row (the kernel maps
    the neighbouring pages it holds: about 160 KB a row here), and all of it
    stays resident until handed back. Here a row is copied out once, into
    anonymous memory that is resident only where rows were written (a page per
    row at most), and the file's pages are handed back at once. Past
    :data:`CACHED_ROWS` rows the copies are dropped and rows are copied anew.
    """

    def __init__(self, source: torch.Tensor, pages: tuple[int, int]) -> None:
        self.source, self.pages = source, pages
        self.copies = torch.empty_like(source)  # pages never written cost nothing
        self.held = torch.zeros(source.shape[0], dtype=torch.bool)
        self.count = 0

    def table(self, ids: torch.Tensor) -> torch.Tensor:
        """A table whose rows ``ids`` are the source's (the other rows: whatever was copied before)."""
        flat = ids.reshape(-1)
        missing = flat[~self.held[flat]]
        if missing.numel():
            missing = missing.unique()
            if self.count + missing.numel() > CACHED_ROWS:
                residency.discard(self.copies)
                self.held.zero_()
                self.count = 0
                missing = flat.unique()
            self.copies[missing] = self.source[missing]
            self.held[missing] = True
            self.count += int(missing.numel())
            residency.release(self.pages)
        return self.copies


class MappedRows(torch.Tensor):  # type: ignore[misc]
    """A mapped table (any read of it is the file's) whose ``rows[ids]`` go through a :class:`RowCache`."""

    __torch_function__ = torch._C._disabled_torch_function_impl
    cache: RowCache

    @staticmethod
    def of(cache: RowCache) -> MappedRows:
        rows: MappedRows = cache.source.as_subclass(MappedRows)
        rows.cache = cache
        return rows

    def __getitem__(self, index: Any) -> torch.Tensor:
        if isinstance(index, torch.Tensor) and index.dtype in (torch.int64, torch.int32):
            return self.cache.table(index)[index]
        return super().__getitem__(index)  # type: ignore[no-any-return]


class CompactEmbedding(torch.nn.Module):  # type: ignore[misc]
    """An input embedding kept in 16 bits (exact) and widened to float32 for the rows looked up.

    Where the model holds the weights as a view of the mapped checkpoint (a
    16-bit checkpoint loaded as stored), the table stays that view and the rows
    looked up are read through a :class:`RowCache`: of a 320 MB table, a prompt
    keeps a few MB resident. :attr:`rows` is the same table for the output
    layer's rows (the signals read a few per step). Otherwise the table is a
    float16 copy. Either way a row widens to the same float32 values.
    """

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor | None) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = weight.shape
        half = weight.dtype in (torch.bfloat16, torch.float16)
        pages = residency.file_pages(weight) if half else None  # where the checkpoint maps the table
        table = weight.detach() if pages is not None else weight.detach().half()
        self.register_buffer("table", table, persistent=False)
        self.cache = None if pages is None else RowCache(table, pages)
        self.rows: torch.Tensor = table if self.cache is None else MappedRows.of(self.cache)
        self.scale = None if scale is None else float(scale)

    @property
    def mapped(self) -> bool:
        return self.cache is not None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        table = self.table if self.cache is None else self.cache.table(ids)
        out = torch.nn.functional.embedding(ids, table).float()
        return out * self.scale if self.scale is not None else out

    def hand_back(self) -> None:
        """Hand back the mapped table's resident pages (after something read all of it)."""
        if self.cache is not None:
            residency.release(self.cache.pages)


def slim_for_cpu(model: Any) -> int:
    """Pack the weights of a float32 CPU model as exact float16 where possible; returns the layers packed.

    The input embeddings become a 16-bit table, the output layer and every
    other linear layer FBGEMM float16 packs. Whatever float16 does not hold
    exactly, or is not a plain layer, stays as it is. Old weights are dropped
    as soon as their replacement exists, which keeps the peak memory low.

    A table that is a view of the mapped checkpoint stays there: once the
    output layer is packed from it, the file's pages are handed back, and only
    the rows looked up come back (a 262k-word table is 320 MB, a prompt reads
    a few thousand rows).
    """
    if not fbgemm_ready():
        return 0
    head = model.get_output_embeddings()
    emb_weight = getattr(model.get_input_embeddings(), "weight", None)
    tied = isinstance(head, torch.nn.Linear) and head.weight is emb_weight
    del emb_weight
    compact = _compact_input_embeddings(model)
    table = None if compact is None else compact.table
    packed = 0
    if isinstance(head, torch.nn.Linear):
        source = table if tied else (head.weight if fp16_exact(head.weight) else None)
        if source is not None:
            bias = head.bias
            model.set_output_embeddings(torch.nn.Identity())  # drop the float32 weight before packing
            del head
            return_freed_memory(collect=False)  # the float32 head went with its last reference
            rows = compact.rows if tied and compact is not None else None
            model.set_output_embeddings(PackedHead(source, bias, rows=rows))
            packed += 1
    if compact is not None:
        compact.hand_back()  # packing read every row; lookups need only a few
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


def _compact_input_embeddings(model: Any) -> CompactEmbedding | None:
    """Swap the input embeddings for a :class:`CompactEmbedding` and return it (None if not done)."""
    emb = model.get_input_embeddings()
    plain, scale = _embedding_scale(emb)
    if not plain or not fp16_exact(emb.weight):
        return None
    compact = CompactEmbedding(emb.weight, scale)
    compact.hand_back()  # the check read every row
    model.set_input_embeddings(compact)
    return compact


def _pack_linears(model: torch.nn.Module) -> int:
    """Swap every remaining ``nn.Linear`` for a :class:`PackedLinear` where exact; returns how many.

    The packs' zero padding is handed back afterwards (:func:`release_pack_padding`).
    """
    places = [
        (parent, name)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, torch.nn.Linear) and fp16_exact(child.weight)
    ]
    shapes = [PackShape.of(getattr(parent, name).weight) for parent, name in places]

    def pack(place: tuple[torch.nn.Module, str]) -> int:  # each float32 weight goes as its pack arrives
        parent, name = place
        child = getattr(parent, name)
        setattr(parent, name, PackedLinear(child.weight, child.bias))
        return residency.heap_address()  # where this thread's packs went, unless they have mappings

    before = set(residency.regions())
    heaps = set(in_parallel(pack, places))
    release_pack_padding(shapes, before, heaps)
    return len(places)


@dataclasses.dataclass(frozen=True)
class PackShape:
    """What finds a float16 pack in memory: its weight's shape and a few of its weights as FBGEMM lays
    them out (the first 8 of input 0, the last 8 of the last input), in float16."""

    outputs: int
    inputs: int
    first: bytes
    last: bytes

    @classmethod
    def of(cls, weight: torch.Tensor) -> PackShape | None:
        """The shape of ``weight``'s pack (``N x K``), or None where there is no padding to find."""
        n, k = weight.shape
        if k % FBGEMM_K_BLOCK == 0 or n % 64:
            return None  # no padding, or columns FBGEMM pads too (then the layout below is not checked)
        first = weight[:8, 0].detach().half().numpy().view(np.uint16)
        last = weight[n - 8 :, k - 1].detach().half().numpy().view(np.uint16)
        if not (first[0] and first[1] and last.any()):
            return None  # a signature of zeros would match too much memory
        return cls(n, k, first.tobytes(), last.tobytes())

    @property
    def used(self) -> int:
        """Bytes of weights at the start of the pack."""
        return self.inputs * self.outputs * 2

    @property
    def size(self) -> int:
        """Bytes FBGEMM allocates and zero-fills (inputs rounded up to whole blocks)."""
        return (self.inputs // FBGEMM_K_BLOCK + 1) * FBGEMM_K_BLOCK * self.outputs * 2


def release_pack_padding(
    shapes: Sequence[PackShape | None], before: set[residency.Region], heaps: Collection[int] = ()
) -> int:
    """Hand back the zero rows that FBGEMM pads packs to; returns the bytes handed back.

    A float16 pack of a ``K x N`` weight (``K`` inputs) holds its rows in blocks
    of :data:`FBGEMM_K_BLOCK`, the last block compact, so the data is the first
    ``K * N * 2`` bytes. FBGEMM allocates and zero-fills room for ``K`` rounded
    up to a whole block and never touches the rest again. With ``K = 640`` that
    is 384 rows in every 1024: 192 MB of the 262k-word output layer and 74 MB of
    Gemma 3 270M's other layers, resident for nothing.

    ``shapes`` are the packs' (:meth:`PackShape.of`), packed after the mappings
    ``before`` were taken by threads whose heaps hold the addresses ``heaps``
    (:func:`ambient.residency.heap_address`). Each pack is looked for in the
    memory mapped or grown since and in those heaps, on 64-byte boundaries
    (FBGEMM's alignment), by its first and last weights; its tail is handed
    back only if every byte of it is zero. A pack not found keeps its padding.
    """
    wanted: dict[bytes, list[PackShape]] = {}
    for shape in shapes:
        if shape is not None:
            wanted.setdefault(shape.first, []).append(shape)
    if not wanted:
        return 0
    fresh = [
        r
        for r in residency.regions()
        if r.readable and r.writable and (not r.path or r.path == "[heap]")
        and (r not in before or any(r.start <= a < r.end for a in heaps))
    ]  # fmt: skip
    # A pack with a mapping of its own starts 64 bytes into it (glibc's header, aligned), and that
    # mapping may have merged with others beside it (packs of the same size): look there before scanning.
    page = residency.PAGE
    # glibc maps a 64-aligned request of n bytes (FBGEMM asks for size + 1024) in ceil((n + 120) / page) pages
    sizes = {-(-(s.size + 1144) // page) * page for v in wanted.values() for s in v}
    guesses = [r.start + j * m + PACK_ALIGN for r in fresh for m in sizes for j in range(r.size // m + 1)]
    guesses += [r.end - j * m + PACK_ALIGN for r in fresh for m in sizes for j in range(1, r.size // m + 1)]
    released = _release_found(guesses, wanted)
    if any(wanted.values()):
        released += _release_found(_starts_with(fresh, {k for k, v in wanted.items() if v}), wanted)
    return released


def _release_found(addresses: Sequence[int], wanted: dict[bytes, list[PackShape]]) -> int:
    """Release the padding of each pack of ``wanted`` that starts at one of ``addresses`` (and forget it)."""
    released = 0
    for address in addresses:
        for shape in wanted.get(residency.read(address, 16) or b"", []):
            if residency.read(address + shape.used - 16, 16) != shape.last:
                continue
            if residency.allocated(address):  # not the stale copy a freed pack left behind
                released += residency.release_zero_pages(address + shape.used, address + shape.size)
                wanted[shape.first].remove(shape)
                break
    return released


def _starts_with(regions: Sequence[residency.Region], heads: set[bytes]) -> list[int]:
    """Addresses on :data:`PACK_ALIGN` boundaries in ``regions`` whose first 16 bytes are one of ``heads``.

    Read through /proc/self/mem, so a region that another thread unmaps meanwhile
    is skipped, never faulted; each 64-byte row is first screened by its first
    two 16-bit words.
    """
    screen = np.zeros((2, 1 << 16), dtype=bool)
    for head in heads:
        a, b = np.frombuffer(head, dtype=np.uint16)[:2]
        screen[0, a] = screen[1, b] = True
    found = []
    for region in regions:
        for at in range(region.start, region.end, SCAN_BYTES):
            data = residency.read(at, min(SCAN_BYTES, region.end - at))
            if data is None:
                break
            rows = np.frombuffer(data, dtype=np.uint16).reshape(-1, PACK_ALIGN // 2)
            for i in np.flatnonzero(screen[0, rows[:, 0]] & screen[1, rows[:, 1]]):
                if rows[i, :8].tobytes() in heads:
                    found.append(at + int(i) * PACK_ALIGN)
    return found


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
