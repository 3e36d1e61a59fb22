"""A personal adapter on the sampler's packed model: a low-rank path beside each adapted layer, per row.

peft cannot wrap the sampler's layers (FBGEMM packs, :mod:`ambient.packing`), and one offer may
mix base and personal branches in one batch. So each layer the adapter names gets a
:class:`LowRankPath` (a forward hook): the layer's own output, plus ``scale * B(A(x))`` (the LoRA
update, as peft computes it) added only to the batch rows that :class:`RowSwitch` turns on. A base row's
numbers are the packed layer's own, untouched; switching costs nothing but the small matrices.

The prompt is always read by the base model: the adapter changes how continuations are written
(the decode steps), and ``ambient tune`` trains it the same way (:mod:`ambient.tuning.scoring`).
So base and personal rows share one prompt pass and its prefix cache.

:func:`load` reads an adapter folder (peft's ``adapter_model.safetensors`` and
``adapter_config.json``, with ambient's manifest) and checks that it fits this model: a corrupt
file, another base model or a shape that does not fit is an :class:`~ambient.adapters.AdapterError`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from ambient import adapters
from ambient.adapters import AdapterError
from ambient.packing import PackedLinear

_LORA_KEY = ".lora_A.weight"


class RowSwitch:
    """Which rows of the batch now take the adapter's path: none (the default), all, or some."""

    def __init__(self) -> None:
        self.index: torch.Tensor | None = None  # the rows that take it; None = none
        self.all = False

    def set(self, rows: list[bool] | None) -> None:
        """``rows[i]``: whether row i takes the adapter (None or all False: none does)."""
        if not rows or not any(rows):
            self.index, self.all = None, False
        else:
            self.index = torch.tensor([i for i, on in enumerate(rows) if on], dtype=torch.long)
            self.all = all(rows)


class LowRankPath:
    """A forward hook on one linear layer (packed or not) adding ``scale * (x A^T) B^T`` to switched-on rows.

    A hook rather than a wrapper module, so that whatever holds the layer (transformers' forward,
    :mod:`ambient.sampling.local.fast_decode`) runs it the same way.
    """

    def __init__(self, down: torch.Tensor, up: torch.Tensor, scale: float, switch: RowSwitch) -> None:
        self.down = down  # A: rank x in
        self.up = up  # B: out x rank
        self.scale = scale
        self.switch = switch

    def __call__(self, _layer: Any, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor | None:
        index = self.switch.index
        if index is None:
            return None  # the layer's own output, untouched
        x = args[0]
        if self.switch.all:
            return out + (x @ self.down.t()) @ self.up.t() * self.scale
        index = index.to(x.device)
        delta = (x.index_select(0, index) @ self.down.t()) @ self.up.t() * self.scale
        return out.index_add(0, index, delta.to(out.dtype))


@dataclasses.dataclass(frozen=True)
class Adapter:
    """An adapter read from its folder, checked against the model it is for."""

    name: str
    path: Path
    manifest: dict[str, Any]
    scale: float
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]  # module path -> (A, B)

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for pair in self.weights.values() for t in pair)


def load(path: Path, model: Any, fingerprint: str, model_name: str) -> Adapter:
    """The adapter at ``path``, checked against ``model`` (whose folder has ``fingerprint``)."""
    manifest = adapters.read_manifest(path)
    adapters.check_base(manifest, fingerprint, model_name, path)
    scale = _scale(path)
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(path / adapters.WEIGHTS), device="cpu")
    except Exception as exc:  # safetensors raises its own errors for a damaged file
        raise AdapterError(
            f"the adapter's weights at {path} cannot be read ({type(exc).__name__}: {exc}): tune again"
        ) from exc
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, down in tensors.items():
        if not key.endswith(_LORA_KEY):
            continue
        up = tensors.get(key.replace(".lora_A.", ".lora_B."))
        module = _module_path(key)
        weights[module] = (down.float(), _checked_up(up, key, path).float())
    if not weights:
        raise AdapterError(f"the adapter at {path} holds no LoRA weights: tune again")
    _check_shapes(model, weights, path)
    name = str(manifest.get("name") or path.name)
    return Adapter(name, Path(path), manifest, scale, weights)


def _checked_up(up: torch.Tensor | None, key: str, path: Path) -> torch.Tensor:
    if up is None:
        raise AdapterError(f"the adapter at {path} lacks the B half of {key}: it is damaged; tune again")
    return up


def _scale(path: Path) -> float:
    """``lora_alpha / r`` from peft's config (rsLoRA and DoRA, which ambient never trains, are refused)."""
    try:
        config = json.loads((path / adapters.PEFT_CONFIG).read_text(encoding="utf-8"))
        rank, alpha = int(config["r"]), float(config["lora_alpha"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AdapterError(
            f"the adapter's {adapters.PEFT_CONFIG} at {path} is unreadable ({exc}): tune again"
        ) from exc
    if any(config.get(k) for k in ("use_rslora", "use_dora", "rank_pattern", "alpha_pattern")):
        raise AdapterError(
            f"the adapter at {path} uses rsLoRA, DoRA or per-layer ranks, which ambient cannot apply"
        )
    if rank <= 0:
        raise AdapterError(f"the adapter at {path} has rank {rank}: tune again")
    return alpha / rank


def _module_path(key: str) -> str:
    """``base_model.model.model.layers.0.mlp.up_proj.lora_A.weight`` -> ``model.layers.0.mlp.up_proj``."""
    module = key[: -len(_LORA_KEY)]
    module = module.removeprefix("base_model.model.")
    return module.replace(".lora_A.default", "")


def _check_shapes(model: Any, weights: dict[str, tuple[torch.Tensor, torch.Tensor]], path: Path) -> None:
    for module, (down, up) in weights.items():
        try:
            layer = model.get_submodule(module)
        except AttributeError:
            raise AdapterError(
                f"the adapter at {path} adapts {module}, which this model does not have: it was made "
                "for another model; tune one for this model"
            ) from None
        if not isinstance(layer, PackedLinear | torch.nn.Linear):
            raise AdapterError(f"the adapter at {path} adapts {module}, which is not a linear layer here")
        fits = down.dim() == 2 and up.dim() == 2 and down.shape[0] == up.shape[1]
        if not fits or down.shape[1] != layer.in_features or up.shape[0] != layer.out_features:
            raise AdapterError(
                f"the adapter at {path} does not fit this model ({module}: {tuple(up.shape)} x "
                f"{tuple(down.shape)} for a {layer.in_features} -> {layer.out_features} layer): it was "
                "made for another model; tune one for this model"
            )


def install(model: Any, adapter: Adapter | None, switch: RowSwitch, hooks: list[Any]) -> None:
    """Put ``adapter``'s low-rank paths on ``model``'s layers (None: take them off).

    ``hooks`` holds the handles of the paths in place; it is emptied and refilled.
    """
    for handle in hooks:
        handle.remove()
    hooks.clear()
    if adapter is None:
        return
    for module, (down, up) in adapter.weights.items():
        layer = model.get_submodule(module)
        hooks.append(layer.register_forward_hook(LowRankPath(down, up, adapter.scale, switch)))
