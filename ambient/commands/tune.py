"""Personal model commands: tune (a LoRA adapter from your picks) and adapter (list, use)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ambient import adapters
from ambient.app import App
from ambient.commands.progress import bar as progress_bar
from ambient.commands.progress import shown

PHASES = {"training": "training", "evaluation": "held-out picks", "range": "range check"}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "tune",
        help="train a personal adapter on your picks (the model learns what you choose)",
        description="Train a LoRA adapter for the local model on your pick log: each continuation you "
        "chose against those you passed over in the same offer (DPO). Picks in your private places "
        "count; a shared place's only when tune.shared_places names it. The newest picks are held "
        "out to measure it; it becomes active unless it lost the model's range. Ctrl-C stops it and "
        "keeps the previous adapter.",
    )
    p.add_argument("--no-activate", action="store_true", help="keep it; leave the active adapter as it is")
    p.add_argument("--json", action="store_true", help="print the new adapter's manifest as JSON")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("adapter", help="personal adapters: list them, choose the active one")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    q = verbs.add_parser("list", help="the adapters in AMBIENT_HOME/adapters")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_adapter_list)
    q = verbs.add_parser("use", help='make an adapter the active one ("none": no adapter)')
    q.add_argument("name")
    q.set_defaults(func=cmd_adapter_use)
    q = verbs.add_parser("export", help="an adapter as one file (safetensors with its manifest), to share")
    q.add_argument("name")
    q.add_argument("-o", "--output", required=True, help="the file to write")
    q.set_defaults(func=cmd_adapter_export)
    q = verbs.add_parser("import", help="add an exported adapter (refused if made for another model)")
    q.add_argument("file")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_adapter_import)


# ------------------------------------------------------------------ tune
def cmd_tune(args: argparse.Namespace, app: App) -> int:
    from ambient.tuning.tune import tune

    try:
        with _bars(shown(args.json)) as progress:
            outcome = tune(app.config, app.store, progress=progress, activate=not args.no_activate)
    except KeyboardInterrupt:
        active = adapters.active_name(app.config.home) or "none"
        print(
            f"ambient: tuning interrupted: nothing was written; the active adapter is still {active}",
            file=sys.stderr,
        )
        return 130
    manifest = outcome.manifest
    if args.json:
        print(json.dumps(_public(manifest), indent=2))
        return 0
    print(describe(manifest))
    return 0


@contextlib.contextmanager
def _bars(enabled: bool) -> Iterator[Any]:
    """A progress callback drawing one bar per phase on stderr (None when not shown)."""
    if not enabled:
        yield None
        return
    bars: dict[str, Any] = {}

    def progress(step: int, total: int, what: str) -> None:
        bar = bars.get(what)
        if bar is None:  # a new phase: the last one's bar goes
            for old in bars.values():
                old.close()
            bars.clear()
            bar = progress_bar(total, PHASES.get(what, what), unit="pick")
            bars[what] = bar
        bar.update(step - bar.n)

    try:
        yield progress
    finally:
        for bar in bars.values():
            bar.close()


def _public(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest without the long list of offers it saw."""
    picks = {k: v for k, v in manifest.get("picks", {}).items() if k != "offers"}
    return {**manifest, "picks": picks}


def describe(manifest: dict[str, Any]) -> str:
    """A new adapter in a few lines: what it learnt from, how it measured, whether it is in use."""
    ev, picks = manifest.get("evaluation", {}), manifest.get("picks", {})
    scopes = ", ".join(f"{k} {v}" for k, v in sorted(picks.get("scopes", {}).items()))
    lines = [
        f"adapter {manifest['name']}: {manifest.get('status', '')}",
        f"  learnt from {picks.get('train_pairs')} pair(s), {picks.get('held_out_pairs')} more held out "
        f"(by place: {scopes}), in {ev.get('train_s')} s ({ev.get('pairs_per_s')} pairs/s)",
    ]
    if ev.get("accuracy_base") is not None:
        lines.append(
            f"  {picks.get('held_out_pairs')} held-out pair(s): the base model agrees with your pick "
            f"{ev['accuracy_base']:.0%}, the personal one {ev['accuracy_personal']:.0%}; "
            f"chosen continuations {ev['chosen_gain_per_token']:+.3f} nats/token"
        )
    if ev.get("diversity_base") is not None:
        lines.append(
            f"  range: entropy {ev.get('entropy_base')} -> {ev.get('entropy_personal')} nats/token, "
            f"diversity {ev['diversity_base']} -> {ev['diversity_personal']} (mean distance of offers)"
        )
    if picks.get("shared_places"):
        lines.append(f"  it learnt from shared places: {', '.join(picks['shared_places'])}")
    return "\n".join(lines)


# ------------------------------------------------------------------ adapter
def cmd_adapter_list(args: argparse.Namespace, app: App) -> int:
    home = app.config.home
    active = adapters.active_name(home)
    rows = []
    for name in adapters.names(home):
        try:
            manifest = adapters.read_manifest(adapters.folder(home) / name)
        except adapters.AdapterError as exc:
            rows.append({"name": name, "active": False, "problem": str(exc)})
            continue
        ev = manifest.get("evaluation", {})
        rows.append(
            {
                "name": name,
                "active": name == active,
                "created_at": manifest.get("created_at"),
                "base_model": manifest.get("base_model", {}).get("name"),
                "pairs": manifest.get("picks", {}).get("pairs"),
                "accuracy_base": ev.get("accuracy_base"),
                "accuracy_personal": ev.get("accuracy_personal"),
                "status": manifest.get("status"),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no adapters yet: `ambient tune` trains one on your picks")
    for r in rows:
        mark = "*" if r["active"] else " "
        print(f"{mark} {r['name']}  {r.get('pairs')} pairs  {r.get('status') or r.get('problem')}")
    return 0


def cmd_adapter_use(args: argparse.Namespace, app: App) -> int:
    home = app.config.home
    if args.name == adapters.NONE:
        adapters.set_active(home, None)
        print("no adapter is active: every branch comes from the base model")
        return 0
    path = adapters.path_of(home, args.name)
    adapters.read_manifest(path)  # refuse a damaged one now, not at the next offer
    adapters.set_active(home, args.name)
    print(f"{args.name} is the active adapter")
    if app.config.model.adapter != adapters.PERSONAL:
        print(
            f"note: model.adapter is {app.config.model.adapter!r}, so it is not used until "
            'model.adapter = "personal"',
            file=sys.stderr,
        )
    return 0


def cmd_adapter_export(args: argparse.Namespace, app: App) -> int:
    manifest = adapters.export(app.config.home, args.name, Path(args.output))
    shared = adapters.shared_places(manifest)
    if shared:
        print(
            f"warning: {args.name} learnt from picks made in shared places ({', '.join(shared)}): what it "
            "learnt there may show in what it writes; share the file only with people of those places",
            file=sys.stderr,
        )
    print(f"wrote {args.name} to {args.output}")
    return 0


def cmd_adapter_import(args: argparse.Namespace, app: App) -> int:
    from ambient import models

    model_path = models.resolve_model_path(app.config)
    path, manifest = adapters.import_file(
        app.config.home, Path(args.file), adapters.model_fingerprint(model_path), model_path.name
    )
    if args.json:
        print(json.dumps(_public(manifest), indent=2))
        return 0
    print(f"imported {args.file} as {path.name} (not active: `ambient adapter use {path.name}`)")
    return 0
