"""Scenarios of tests/test_residency.py that run in a fresh interpreter (see ``_fresh`` there)."""

from __future__ import annotations

import torch

from ambient import residency
from ambient.packing import PackedLinear, PackShape, release_pack_padding


def small_packs() -> dict[str, float]:
    """Packs of the sizes the layers have, in this thread's heap or mappings of their own."""
    torch.manual_seed(1)
    weights = [torch.randn(n, 640).half().float() for n in (1024, 256, 2048, 2048, 640)]
    shapes = [PackShape.of(w) for w in weights]
    before = set(residency.regions())
    packs = [PackedLinear(w) for w in weights]
    released = release_pack_padding(shapes, before, [residency.heap_address()])
    x = torch.randn(8, 640)
    same = all(torch.equal(pack(x), PackedLinear(w)(x)) for w, pack in zip(weights, packs, strict=True))
    padding = sum((1024 - 640) * w.shape[0] * 2 for w in weights)
    return {"released": released, "padding": padding, "same_logits": int(same)}


def stale_copy() -> dict[str, float]:
    """A freed pack's bytes stay in the heap beside a live one: only the live one's padding goes."""
    torch.manual_seed(2)
    weight = torch.randn(2048, 640).half().float()
    shape = PackShape.of(weight)
    stale = PackedLinear(weight)
    del stale  # its bytes stay in the freed heap block
    before = set(residency.regions())
    live = PackedLinear(weight)
    released = release_pack_padding([shape], before, [residency.heap_address()])
    x = torch.randn(8, 640)
    same = torch.equal(live(x), PackedLinear(weight)(x))
    return {"released": released, "padding": (1024 - 640) * 2048 * 2, "same_logits": int(same)}
