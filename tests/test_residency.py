"""Handing back pages that cost nothing to get back (ambient.residency), and what packing does with it.

Real memory of this process, real FBGEMM packs and a real mapped file: the
pages handed back leave RSS, and every value read afterwards is the same.
"""

from __future__ import annotations

import copy
import ctypes
import json
import mmap
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ambient import residency
from ambient.packing import (
    FBGEMM_K_BLOCK,
    CompactEmbedding,
    PackedHead,
    PackedLinear,
    PackShape,
    RowCache,
    fbgemm_ready,
)
from ambient.sampling.local.kv_cache import _repeated

MB = 2**20
REPO = Path(__file__).resolve().parents[1]


def resident(address: int) -> int:
    """Bytes resident in the mapping that holds ``address`` (its Rss line in /proc/self/smaps: exact)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=1)[0]
        if not head.endswith(":"):
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif inside and head == "Rss:":
            return int(line.split()[1]) * 1024
    raise AssertionError(f"nothing mapped at {address:#x}")


def mapped(path: Path, values: torch.Tensor) -> torch.Tensor:
    """``values`` written to ``path`` and mapped back (private, as a checkpoint loaded as stored)."""
    path.write_bytes(values.view(torch.uint8).numpy().tobytes())
    storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=path.stat().st_size)
    return torch.empty(0, dtype=values.dtype).set_(storage).view(values.shape)


def test_file_pages_leave_rss_and_read_back_the_same(tmp_path: Path) -> None:
    values = torch.randn(32768, 1024).to(torch.bfloat16)  # 64 MB
    table = mapped(tmp_path / "weights.bin", values)
    assert torch.equal(table, values)  # every page read: resident
    assert resident(table.data_ptr()) > 60 * MB
    assert residency.release_file_pages(table) >= values.numel() * 2
    assert resident(table.data_ptr()) == 0
    assert torch.equal(table, values)  # read again from the file


def test_a_written_mapping_is_never_handed_back(tmp_path: Path) -> None:
    table = mapped(tmp_path / "weights.bin", torch.ones(4096, 256, dtype=torch.bfloat16))
    assert residency.file_pages(table) is not None
    table[0, 0] = 7  # a private copy of that page now holds the only 7
    assert residency.file_pages(table) is None and residency.release_file_pages(table) == 0
    assert float(table[0, 0]) == 7


def test_anonymous_memory_is_no_file() -> None:
    assert residency.file_pages(torch.ones(4096, 256)) is None


def test_only_zero_pages_are_handed_back() -> None:
    block = mmap.mmap(-1, 8 * MB)  # memory of its own, whatever the allocator's state
    block.write(bytes(8 * MB))  # zeros, written: resident
    start = ctypes.addressof(ctypes.c_char.from_buffer(block))
    assert resident(start) == 8 * MB
    assert residency.release_zero_pages(start + 100, start + 8 * MB) == 8 * MB - residency.PAGE
    assert resident(start) == residency.PAGE  # the first page holds bytes outside the range
    assert block[:] == bytes(8 * MB)
    block[5 * MB] = 1
    assert residency.release_zero_pages(start, start + 8 * MB) == 0
    assert block[5 * MB] == 1


def test_reading_unmapped_memory_is_none_not_a_crash() -> None:
    assert residency.read(0, 16) is None


def test_fbgemm_is_there() -> None:
    assert fbgemm_ready()  # the CPU torch build the project pins has it; everything below uses it


def test_head_padding_goes_and_logits_stay_the_same() -> None:
    torch.manual_seed(0)
    weight = torch.randn(65536, 640).half().float()  # two blocks, K = 640: FBGEMM pads to 1024
    plain = [PackedLinear(weight[r : r + 32768]) for r in (0, 32768)]  # nothing handed back
    head = PackedHead(weight)
    padding = 2 * (2 * FBGEMM_K_BLOCK - 640) * 32768 * 2
    assert head.padding_released > 0.99 * padding
    for rows in (1, 8, 64):
        x = torch.randn(rows, 640)
        assert torch.equal(head(x), torch.cat([p(x) for p in plain], dim=-1))


def _fresh(scenario: str) -> dict[str, float]:
    """Run ``tests/residency_scenarios.py``'s ``scenario`` in a new interpreter: its heap starts as
    ``ambient continue``'s does (after the whole suite, this process's reused arenas hold packs where
    the search does not look, by design, and the amounts found vary)."""
    code = f"import json, tests.residency_scenarios as s; print(json.dumps(s.{scenario}()))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_small_packs_are_found_where_the_heap_put_them() -> None:
    got = _fresh("small_packs")
    assert got["same_logits"] == 1
    assert got["released"] > 0.8 * got["padding"]


def test_a_freed_pack_s_stale_copy_is_left_alone() -> None:
    got = _fresh("stale_copy")
    assert got["same_logits"] == 1
    assert got["released"] > 0.9 * got["padding"]


def test_in_a_used_heap_only_correctness_is_promised() -> None:
    """In this (long-lived) process: whatever is found and handed back, the packs compute the same."""
    from tests.residency_scenarios import small_packs, stale_copy

    assert small_packs()["same_logits"] == 1 and stale_copy()["same_logits"] == 1


def test_allocated_tells_a_live_block_from_a_freed_one() -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(size) for size in (64 * 1024, 1 * MB, 64 * MB)]  # heap, heap or mapped, mapped
    assert all(residency.allocated(b) for b in blocks)
    for b in blocks:
        libc.free(b)
    assert not any(residency.allocated(b) for b in blocks[:2])


def test_no_padding_to_look_for() -> None:
    assert PackShape.of(torch.randn(64, 512)) is None  # K a whole block: FBGEMM pads nothing
    assert PackShape.of(torch.randn(100, 640)) is None  # N not a multiple of 64: not looked for
    assert PackShape.of(torch.zeros(64, 640)) is None  # zeros would match any zero page


def test_rows_read_through_the_cache_are_the_file_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ambient.packing.CACHED_ROWS", 100)  # so the copies are dropped and made again
    values = torch.randn(16384, 640).to(torch.bfloat16)
    table = mapped(tmp_path / "table.bin", values)
    emb = CompactEmbedding(table, torch.tensor(2.0))
    assert emb.mapped and emb.cache is not None
    emb.hand_back()
    for step in range(20):
        ids = torch.randint(0, 16384, (3, 12 + step))
        assert torch.equal(emb(ids), values[ids].float() * 2.0)
        picked = torch.randint(0, 16384, (8, 32))
        assert torch.equal(emb.rows[picked], values[picked])  # as the signals read output rows
    assert emb.cache.count <= 100 + 8 * 32  # at most the cap and one read
    assert torch.equal(emb.rows, values)  # any other read is the file's
    copied = RowCache(table, emb.cache.pages)
    assert torch.equal(copied.table(torch.tensor([5]))[5], values[5])


def test_an_unmapped_table_is_a_float16_copy() -> None:
    weight = torch.randn(1000, 64).half().float()
    emb = CompactEmbedding(weight, None)
    assert not emb.mapped and emb.table.dtype is torch.float16 and emb.rows is emb.table
    ids = torch.tensor([[3, 999, 0]])
    assert torch.equal(emb(ids), weight[ids])


def test_repeated_rows_are_repeat_interleave_with_room() -> None:
    t = torch.randn(3, 2, 10, 4)
    out = _repeated(t, 4)
    assert out.shape[0] == 12 and out.shape[2] > 10
    assert torch.equal(out[:, :, :10], t.repeat_interleave(4, dim=0))


def test_a_copied_sliding_cache_keeps_only_its_window() -> None:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from ambient.sampling.local.kv_cache import new_cache

    config = Gemma3TextConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=6,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=256,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).eval()
    ids = torch.randint(0, 97, (1, 50))
    with torch.inference_mode():
        cache = new_cache(config)
        model(ids[:, :40], cache=cache)
        snapshot = copy.deepcopy(cache)
        sliding, full = snapshot.layers
        assert sliding.buf.k.shape[-2] == 5  # the window less one, no spare room
        assert full.buf.k.shape[-2] == 40
        going_on = model(ids[:, 40:], cache=cache).logits
        resumed = model(ids[:, 40:], cache=snapshot).logits
    assert torch.equal(going_on, resumed)
