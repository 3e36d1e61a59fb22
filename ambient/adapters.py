"""Personal adapters in ``AMBIENT_HOME/adapters``: versioned, each with a manifest, one of them active.

Each ``ambient tune`` writes a new folder ``personal-NNN`` holding peft's files (the LoRA
weights ``adapter_model.safetensors`` and ``adapter_config.json``) and ``manifest.json``: the
base model it was trained on, the picks and places it saw, its settings and its evaluation.
It is written in a temporary folder and renamed into place when complete, so a half-written
adapter is never seen; the file ``active`` (replaced atomically) names the one that
``model.adapter = "personal"`` uses. A new adapter becomes active only when its evaluation
allows (:func:`verdict`); otherwise the previous one stays in use and its manifest says why.

This module does not import torch: the sampler's side (loading the weights onto the packed
model) is :mod:`ambient.sampling.local.adapter`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ambient.errors import AmbientError, InvalidInput, NotFound
from ambient.fsutil import fsync_dir, write_atomic
from ambient.home import private_dir

DIRNAME = "adapters"
ACTIVE = "active"
MANIFEST = "manifest.json"
WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
FORMAT = 1
PREFIX = "personal-"
NONE, PERSONAL = "none", "personal"
MAX_DIVERSITY_DROP = 0.2  # an adapter whose offers are this much less diverse than base's is not activated
MAX_LIKELIHOOD_LOSS = 1.0  # nor one that finds the person's own picks this much less likely (nats/token)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_FINGERPRINT_BYTES = 1 << 20  # read from each end of each weights file


class AdapterError(AmbientError):
    """An adapter that cannot be used: missing files, corrupt, or made for another model."""


def folder(home: Path) -> Path:
    return Path(home) / DIRNAME


def model_fingerprint(model_path: Path) -> str:
    """A model folder's identity: its config and the size, start and end of each weights file.

    Cheap (a few MiB read), and different for another model or another conversion of one.
    """
    path = Path(model_path)
    digest = hashlib.sha256()
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"cannot read {path / 'config.json'} ({exc}): check the model folder") from exc
    for key in ("_name_or_path", "_model_name_or_path", "transformers_version", "dtype", "torch_dtype"):
        config.pop(key, None)  # how it was saved, not what it is
    digest.update(json.dumps(config, sort_keys=True).encode())
    for weights in sorted(path.glob("*.safetensors")):
        size = weights.stat().st_size
        digest.update(f"{weights.name}:{size}".encode())
        with weights.open("rb") as fh:
            digest.update(fh.read(_FINGERPRINT_BYTES))
            fh.seek(max(0, size - _FINGERPRINT_BYTES))
            digest.update(fh.read(_FINGERPRINT_BYTES))
    return digest.hexdigest()


def names(home: Path) -> list[str]:
    """The adapters in the home, oldest first."""
    root = folder(home)
    if not root.is_dir():
        return []
    found = [p.name for p in root.iterdir() if (p / MANIFEST).is_file() and _NAME.fullmatch(p.name)]
    return sorted(found, key=lambda n: (_number(n), n))


def _number(name: str) -> int:
    tail = name.removeprefix(PREFIX)
    return int(tail) if name.startswith(PREFIX) and tail.isdigit() else -1


def next_name(home: Path) -> str:
    taken = [_number(n) for n in names(home)]
    return f"{PREFIX}{max([0, *taken]) + 1:03d}"


def active_name(home: Path) -> str | None:
    """The adapter ``model.adapter = "personal"`` uses, or None."""
    try:
        name = (folder(home) / ACTIVE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return name if name and _NAME.fullmatch(name) and (folder(home) / name / MANIFEST).is_file() else None


def set_active(home: Path, name: str | None) -> None:
    """Make ``name`` the active adapter (None: none is)."""
    root = private_dir(folder(home))
    if name is None:
        (root / ACTIVE).unlink(missing_ok=True)
        fsync_dir(root)
        return
    path_of(home, name)  # exists?
    write_atomic(root / ACTIVE, name + "\n", mode=0o600)


def path_of(home: Path, name: str) -> Path:
    path = folder(home) / name
    if not _NAME.fullmatch(name) or not (path / MANIFEST).is_file():
        known = ", ".join(names(home)) or "none yet (run `ambient tune`)"
        raise NotFound(f"no adapter {name!r} in {folder(home)}: known adapters are {known}")
    return path


def resolve(value: str, home: Path) -> Path | None:
    """The folder ``model.adapter`` names: None for "none" (or "personal" with no active adapter)."""
    if value == NONE:
        return None
    if value == PERSONAL:
        name = active_name(home)
        return folder(home) / name if name else None
    path = Path(value).expanduser()
    if not path.is_dir() and _NAME.fullmatch(value) and (folder(home) / value / MANIFEST).is_file():
        return folder(home) / value  # an adapter of the home, by name
    return path


def read_manifest(path: Path) -> dict[str, Any]:
    """An adapter folder's manifest, checked for what the sampler needs; else :class:`AdapterError`."""
    path = Path(path)
    if not path.is_dir():
        raise AdapterError(f"no adapter folder at {path}: give a folder written by `ambient tune`")
    for name in (MANIFEST, WEIGHTS, PEFT_CONFIG):
        if not (path / name).is_file():
            raise AdapterError(f"the adapter at {path} has no {name}: it is incomplete; tune again")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"the adapter's {MANIFEST} at {path} cannot be read ({exc}): tune again") from exc
    base = manifest.get("base_model") if isinstance(manifest, dict) else None
    if not isinstance(base, dict) or not isinstance(base.get("fingerprint"), str):
        raise AdapterError(f"the adapter's {MANIFEST} at {path} does not say its base model: tune again")
    if manifest.get("format") != FORMAT:
        raise AdapterError(
            f"the adapter at {path} has format {manifest.get('format')!r}, this ambient reads {FORMAT}: "
            "tune again with this version"
        )
    return dict(manifest)


def check_base(manifest: dict[str, Any], fingerprint: str, model_name: str, where: Path) -> None:
    """Refuse an adapter trained on another base model."""
    base = manifest["base_model"]
    if base["fingerprint"] != fingerprint:
        raise AdapterError(
            f"the adapter at {where} was trained on {base.get('name', 'another model')!r}, not on this "
            f'model ({model_name}): tune one for this model, or set model.adapter = "none"'
        )


def write(home: Path, name: str, fill: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """A new adapter ``name``: ``fill(tmp)`` writes its files in a temporary folder and returns its manifest.

    The folder is renamed into place only once complete; if anything fails (or Ctrl-C comes)
    before, the temporary folder is removed and nothing changes. The new adapter becomes the
    active one when its manifest says ``"active": true``, after it is in place.
    """
    root = private_dir(folder(home))
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"{name!r} is not an adapter name: use letters, digits, '.', '_' or '-'")
    tmp = root / f".tmp-{name}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.mkdir(tmp, 0o700)
        manifest = {**fill(tmp), "name": name}
        write_manifest(tmp, manifest)
        fsync_dir(tmp)
        target = root / name
        if target.exists():
            raise InvalidInput(f"an adapter {name!r} already exists in {root}: remove it or choose another")
        os.rename(tmp, target)
        fsync_dir(root)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _disk_full(exc):
            raise InvalidInput(
                f"the disk holding {root} is full: adapter {name!r} was not written and "
                f"{active_name(home) or 'no adapter'} stays in use; free some space and tune again"
            ) from exc
        raise
    if manifest.get("active"):
        set_active(home, name)
    return target, manifest


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk is full (an OSError, or safetensors' error, which wraps Rust's)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(exc) or "StorageFull" in str(exc)


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    write_atomic(Path(path) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n", mode=0o600)


def is_shared(scope: str) -> bool:
    """Whether picks of ``scope`` were made in a place other people see (a Discord server)."""
    return ":" in scope


def update_manifest(path: Path, changes: dict[str, Any]) -> dict[str, Any]:
    """Merge ``changes`` into an adapter's manifest (atomically)."""
    manifest = read_manifest(path)
    manifest.update(changes)
    write_manifest(path, manifest)
    return manifest


def clean_temporary(home: Path) -> int:
    """Remove temporary folders left by an interrupted tune (its process is gone); returns how many."""
    root = folder(home)
    removed = 0
    if not root.is_dir():
        return 0
    for tmp in root.glob(".tmp-*"):
        pid = tmp.name.split("-")[-2] if tmp.name.count("-") >= 3 else ""
        if pid.isdigit() and _alive(int(pid)):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, 0)
        return True
    return False


def verdict(
    evaluation: dict[str, Any], max_drop: float = MAX_DIVERSITY_DROP, max_loss: float = MAX_LIKELIHOOD_LOSS
) -> tuple[bool, str]:
    """Whether a new adapter may become active by default, and why (one line for the status).

    Not when its offers are more than ``max_drop`` less diverse than the base model's, nor when
    it finds the person's own held-out picks more than ``max_loss`` nats per token less likely
    than the base model does (it would write worse text, however diverse), nor when it agrees
    with those picks less often than the base model.
    """
    base, personal = evaluation.get("diversity_base"), evaluation.get("diversity_personal")
    if isinstance(base, int | float) and isinstance(personal, int | float) and base > 0:
        drop = (base - personal) / base
        if drop > max_drop:
            return False, (
                f"not activated: its offers are {drop:.0%} less diverse than the base model's "
                f"(more than {max_drop:.0%}); the previous adapter stays in use"
            )
    gain = evaluation.get("chosen_gain_per_token")
    if isinstance(gain, int | float) and max_loss > 0 and gain < -max_loss:
        return False, (
            f"not activated: it finds your held-out picks {-gain:.2f} nats per token less likely than the "
            f"base model does (more than {max_loss:g}): it lost fluency; the previous adapter stays in use"
        )
    acc_base, acc = evaluation.get("accuracy_base"), evaluation.get("accuracy_personal")
    if isinstance(acc_base, int | float) and isinstance(acc, int | float) and acc < acc_base:
        return False, (
            f"not activated: it agrees with your held-out picks less often than the base model "
            f"({acc:.0%} vs {acc_base:.0%}); the previous adapter stays in use"
        )
    return True, "active"


def summary(home: Path) -> dict[str, Any]:
    """What ``ambient status`` says: the active adapter, and when it last tuned and what it measured."""
    known = names(home)
    latest = known[-1] if known else None
    info: dict[str, Any] = {"active": active_name(home), "latest": latest}
    if latest is not None:
        with contextlib.suppress(AdapterError):
            manifest = read_manifest(folder(home) / latest)
            info["tuned_at"] = manifest.get("created_at")
            info["status"] = manifest.get("status")
            info["evaluation"] = manifest.get("evaluation", {})
            info["pairs"] = manifest.get("picks", {}).get("pairs")
    return info


# ------------------------------------------------------------------ export / import
_META_MANIFEST = "ambient.manifest"
_META_PEFT = "ambient.peft_config"


def export(home: Path, name: str, target: Path) -> dict[str, Any]:
    """Write adapter ``name`` as one safetensors file (its manifest and peft config in the metadata).

    Returns its manifest; the caller warns when it learnt from shared places (``manifest_shared``).
    """
    from safetensors.torch import load_file, save_file

    path = path_of(home, name)
    manifest = read_manifest(path)
    try:
        tensors = load_file(str(path / WEIGHTS))
        peft_config = (path / PEFT_CONFIG).read_text(encoding="utf-8")
    except Exception as exc:  # a damaged file: safetensors raises its own errors
        raise AdapterError(f"the adapter at {path} cannot be read ({exc}): tune again") from exc
    public = {k: v for k, v in manifest.items() if k not in ("active", "status")}
    metadata = {_META_MANIFEST: json.dumps(public, sort_keys=True), _META_PEFT: peft_config}
    target = Path(target).expanduser()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return manifest


def shared_places(manifest: dict[str, Any]) -> list[str]:
    """The shared places (other people's) whose picks an adapter learnt from."""
    scopes = manifest.get("picks", {}).get("scopes", {})
    return sorted(s for s in scopes if is_shared(s)) if isinstance(scopes, dict) else []


def import_file(home: Path, source: Path, fingerprint: str, model_name: str) -> tuple[Path, dict[str, Any]]:
    """Add the adapter in ``source`` (made by :func:`export`) as a new version; refused for another model."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = Path(source).expanduser()
    if not source.is_file():
        raise InvalidInput(f"{source} is not a file: give a file written by `ambient adapter export`")
    try:
        with safe_open(str(source), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no iterator
        manifest = json.loads(metadata[_META_MANIFEST])
        peft_config = metadata[_META_PEFT]
        json.loads(peft_config)
    except (KeyError, ValueError) as exc:
        raise AdapterError(f"{source} is not an adapter ambient exported ({exc}): export it again") from exc
    except Exception as exc:  # safetensors' own errors for a damaged file
        raise AdapterError(f"{source} cannot be read ({exc}): export it again") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "base_model" not in manifest:
        raise AdapterError(f"{source} holds no adapter manifest this ambient reads: export it again")
    check_base(manifest, fingerprint, model_name, source)
    name = next_name(home)

    def fill(tmp: Path) -> dict[str, Any]:
        save_file(tensors, str(tmp / WEIGHTS))
        write_atomic(tmp / PEFT_CONFIG, peft_config, mode=0o600)
        imported = {"from": str(source), "name": manifest.get("name"), "at": time.time()}
        return {**manifest, "imported": imported, "active": False, "status": "imported (not active)"}

    return write(home, name, fill)
