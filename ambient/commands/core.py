"""Core commands: continue, pick, show, trees, import, export, prepare."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ambient import signals_view
from ambient.app import App
from ambient.commands.live import LiveBranches
from ambient.commands.progress import nodes_bar, shown, steps_bar
from ambient.config import adapter_backend_problem
from ambient.errors import InvalidInput, NotFound
from ambient.fsutil import write_atomic
from ambient.importers import FORMATS, import_file
from ambient.loom import export_jsonl, export_loom
from ambient.offers import make_offer, options_from
from ambient.tree import Node, Tree


def register(sub: Any) -> None:
    p = sub.add_parser(
        "continue",
        help="branch a text into N continuations",
        description="Sample N continuations of a text (a file, or - for stdin) and keep them as an offer.",
    )
    p.add_argument("path", metavar="PATH|-", help="text file to continue, or - to read stdin")
    add_sampling_arguments(p)
    p.add_argument("--from", dest="from_node", metavar="NODE", help="continue an existing node instead")
    p.add_argument("--no-memory", action="store_true", help="do not retrieve past fragments")
    p.add_argument(
        "--adapter",
        default=None,
        help='personal adapter for a share of the branches: "personal" (the active one), "none", a name '
        "or a folder; with --backend openai, a name the server serves (default: model.adapter)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_continue)

    p = sub.add_parser("pick", help="choose a continuation")
    p.add_argument("node", help="node id (a prefix of at least 4 characters is enough)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pick)

    p = sub.add_parser("show", help="show a tree, or a node with its context and provenance")
    p.add_argument("id", metavar="TREE|NODE")
    p.add_argument("--json", action="store_true")
    p.add_argument("--signals", action="store_true", help="per-token signals: p, entropy, ease, ...")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("trees", help="list trees")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_trees)

    p = sub.add_parser(
        "import",
        help="import trees saved by Loom, loomsidian or Tapestry Loom (JSON)",
        description="Import a Loom tree, a loomsidian data.json (or one note's export) or a Tapestry Loom "
        "weave's JSON form. Importing the same file again merges into the trees it made.",
    )
    p.add_argument("file")
    p.add_argument("--format", choices=FORMATS, default=None, help="the file's format (default: detected)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export a tree as a Loom file or JSONL")
    p.add_argument("tree")
    p.add_argument("--format", choices=["loom", "jsonl"], default="loom")
    p.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("prepare", help="prepare the default models (first time: about a minute)")
    p.add_argument(
        "--demo", action="store_true", help="also make a demo notes folder and a config watching it (once)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_prepare)


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", type=int, default=None, help="number of continuations (1..64)")
    p.add_argument("--max-tokens", type=int, default=None, help="tokens per continuation")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=None, help="branch i uses seed+i: reproducible")
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    p.add_argument("--model", default=None, help="model folder (default: the bundled Gemma 3 270M)")
    p.add_argument("--backend", default=None, help="sampling backend: local or openai")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server, for --backend openai")
    on_off = argparse.BooleanOptionalAction
    p.add_argument("--signals", action=on_off, default=None, help="per-token signals (sampling.signals)")
    p.add_argument("--oversample", type=int, default=None, help="sample this many, offer -n representatives")


def read_text_arg(path: str) -> str:
    """Text from a file or stdin, refusing what is not UTF-8 text."""
    if path == "-":
        data = sys.stdin.buffer.read()
        where = "standard input"
    else:
        file = Path(path)
        if not file.exists():
            raise InvalidInput(f"{path} does not exist: give a text file, or - to read stdin")
        if file.is_dir():
            raise InvalidInput(f"{path} is a folder: give a text file")
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {path} ({exc.strerror}): check its permissions") from None
        where = path
    if b"\x00" in data[:8192]:
        raise InvalidInput(f"{where} looks binary (it has NUL bytes): give a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{where} is not UTF-8 (bad byte at {exc.start}): convert it, e.g. `iconv -t utf-8`"
        ) from None
    if not text.strip():
        raise InvalidInput(f"{where} is empty: there is nothing to continue")
    return text


def _apply_model_flags(app: App, args: argparse.Namespace) -> None:
    changes = {
        "model__path": args.model,
        "model__backend": args.backend,
        "model__base_url": args.base_url,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if args.backend == "openai" and args.model:
        changes["model__name"] = args.model
        changes.pop("model__path")
    if changes:
        app.config = app.config.replace(**changes)


def cmd_continue(args: argparse.Namespace, app: App) -> int:
    options = options_from(
        app.config.sampling,
        n=args.n,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
        stop=tuple(args.stop) if args.stop else None,
        signals=args.signals,
    )
    _apply_model_flags(app, args)
    if args.adapter is not None:
        problem = adapter_backend_problem(args.adapter, app.config.model.backend, "--adapter")
        if problem:  # with the openai backend, a name the server serves; never a folder
            raise InvalidInput(problem)
        app.config = app.config.replace(model__adapter=args.adapter)
    if args.from_node:
        parent = app.store.get_node(app.store.resolve_node_id(args.from_node))
        tree = app.store.get_tree(parent.tree_id)
    else:
        text = read_text_arg(args.path)
        if not args.no_memory:
            app.open_memory_beside()
        app.sampler  # noqa: B018 - load the model before storing anything
        source = "cli" if args.path == "-" else f"file:{Path(args.path).name}"
        tree, parent = app.store.create_tree(text, source=source)
    source_desc = {"kind": "tree", "tree_id": tree.id, "node_id": parent.id}
    live = LiveBranches(options.n, sys.stdout) if sys.stdout.isatty() and not args.json else None
    try:
        outcome = make_offer(
            app,
            parent.id,
            options,
            source=source_desc,
            use_memory=not args.no_memory,
            oversample=args.oversample,
            on_token=live,  # on a terminal, the N branches grow in place as they are sampled
            on_begin=lambda _offer, _context: app.lighten_memory(),  # searched: the query copy goes
        )
    finally:
        if live is not None:
            live.close()
    app.release_sampler()  # sampling is over: the model's memory goes before the embedder indexes
    app.index_pending()
    adapter_problem = getattr(app.sampler, "adapter_problem", None)
    if adapter_problem:
        print(f"warning: {adapter_problem}", file=sys.stderr)
    if args.json:
        payload = {
            "tree_id": tree.id,
            "parent_id": parent.id,
            "offer_id": outcome.offer.id,
            "continuations": [
                {
                    "node_id": n.id,
                    "text": n.text,
                    "finish_reason": n.meta.get("finish_reason"),
                    "adapter": n.meta.get("adapter"),
                    "tokens": [t.as_dict() for t in n.tokens or ()],
                }
                for n in outcome.nodes
            ],
            "provenance": outcome.context.provenance,
        }
        _print_json(payload)
        return 0
    if app.memory_warning:
        print(f"warning: {app.memory_warning}", file=sys.stderr)
    _print_offer(tree, parent, outcome.nodes)
    return 0


def _print_offer(tree: Tree, parent: Node, nodes: list[Node]) -> None:
    print(f"tree {tree.id[:12]}  offer at {parent.id[:12]}  ({len(nodes)} continuations)")
    for i, n in enumerate(nodes, 1):
        by = f"· {n.meta['adapter']} " if n.meta.get("adapter", "none") != "none" else ""
        print(f"\n── {i} · {n.id[:12]} {by}" + "─" * 40)
        print(n.text)
    print("\npick one with: ambient pick NODE")


def cmd_pick(args: argparse.Namespace, app: App) -> int:
    node = app.store.pick(app.store.resolve_node_id(args.node))
    app.index_pending()
    if args.json:
        _print_json(node.as_dict())
    else:
        print(f"picked {node.id[:12]}: {_preview(node.text)}")
    return 0


def cmd_show(args: argparse.Namespace, app: App) -> int:
    store = app.store
    try:
        node_id = store.resolve_node_id(args.id)
    except NotFound:
        return _show_tree(app, store.get_tree(store.resolve_tree_id(args.id)), args.json)
    return _show_node(app, store.get_node(node_id), args.json, getattr(args, "signals", False))


def _show_tree(app: App, tree: Tree, as_json: bool) -> int:
    nodes = app.store.tree_nodes(tree.id)
    if as_json:
        _print_json({"tree": tree.as_dict(), "nodes": [n.as_dict(tokens=False) for n in nodes]})
        return 0
    print(f"tree {tree.id}  {tree.title!r}  source={tree.source}  nodes={len(nodes)}")
    by_parent: dict[str | None, list[Node]] = {}
    for n in nodes:
        by_parent.setdefault(n.parent_id, []).append(n)
    stack = [(by_parent[None][0], 0)] if None in by_parent else []
    while stack:
        node, depth = stack.pop()
        mark = {"picked": "*", "offered": "?", "pruned": "x"}[str(node.status)]
        star = " [bookmark]" if node.bookmarked else ""
        print(f"{'  ' * depth}{mark} {node.id[:12]} {_preview(node.text, 70)}{star}")
        stack.extend((c, depth + 1) for c in reversed(by_parent.get(node.id, [])))
    return 0


def _show_node(app: App, node: Node, as_json: bool, signals: bool = False) -> int:
    store = app.store
    ancestry = store.ancestry(node.id)
    children = store.children(node.id)
    revisions = store.revisions(node.id)
    if as_json:
        payload = node.as_dict()
        payload["ancestry"] = [n.id for n in ancestry]
        payload["full_text"] = "".join(n.text for n in ancestry)
        payload["children"] = [c.id for c in children]
        payload["revisions"] = [{"rev": r.rev, "text": r.text, "edited_at": r.edited_at} for r in revisions]
        if signals:
            payload["signals"] = {
                "tokens": signals_view.signal_rows(node),
                "surprise": signals_view.node_surprise(store, node),
                **signals_view.offer_facts(store, node),
            }
        _print_json(payload)
        return 0
    print(f"node {node.id}  tree {node.tree_id}  {node.status}  by {node.author.kind} {node.author.name}")
    print("path: " + " > ".join(n.id[:8] for n in ancestry))
    print("\n" + "".join(n.text for n in ancestry[:-1]) + f"[[{node.text}]]\n")
    if node.provenance:
        print("provenance:")
        print(json.dumps(node.provenance, indent=2, ensure_ascii=False))
    if node.tokens:
        print(
            "tokens: " + " ".join(f"{t.text!r}:{t.logprob:.2f}" for t in node.tokens if t.logprob is not None)
        )
    if signals:
        print(signals_view.render(store, node))
    for r in revisions:
        print(f"revision {r.rev}: {_preview(r.text)}")
    for c in children:
        print(f"child {c.id[:12]} ({c.status}): {_preview(c.text)}")
    return 0


def cmd_trees(args: argparse.Namespace, app: App) -> int:
    trees = app.store.list_trees()
    if args.json:
        _print_json([t.as_dict() for t in trees])
        return 0
    for t in trees:
        print(f"{t.id[:12]}  {t.source:<20.20}  {t.title[:60]}")
    if not trees:
        print("no trees yet: try `ambient continue FILE` or `ambient import LOOM.json`")
    return 0


def cmd_import(args: argparse.Namespace, app: App) -> int:
    imported = import_file(app.store, args.file, args.format)
    totals = imported.totals()
    with nodes_bar(totals["added"] + totals["edited"], "remembering", shown(args.json)) as progress:
        indexed = app.index_pending(progress)  # embedding the new nodes is most of an import's time
    if args.json:
        trees = [{"tree_id": t.id, "title": t.title, **counts} for t, counts in imported.trees]
        _print_json(
            {
                "format": imported.format,
                "tree_id": trees[0]["tree_id"],
                **totals,
                "trees": trees,
                "not_kept": imported.not_kept,
                "indexed": indexed,
            }
        )
        return 0
    for tree, counts in imported.trees:
        print(
            f"imported {args.file} ({imported.format}) as tree {tree.id[:12]} {tree.title[:40]!r}: "
            f"{counts['nodes']} nodes ({counts['added']} new, {counts['edited']} changed, "
            f"{counts['unchanged']} unchanged)"
        )
    if imported.not_kept:
        print(f"not kept as the file had it: {'; '.join(imported.not_kept)}")
    return 0


def cmd_export(args: argparse.Namespace, app: App) -> int:
    tree_id = app.store.resolve_tree_id(args.tree)
    if args.format == "loom":
        body = json.dumps(export_loom(app.store, tree_id), ensure_ascii=False, indent=1) + "\n"
    else:
        body = "".join(line + "\n" for line in export_jsonl(app.store, tree_id))
    if args.output == "-":
        sys.stdout.write(body)
    else:
        write_atomic(Path(args.output), body)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_prepare(args: argparse.Namespace, app: App) -> int:
    from ambient.models import PREPARE_STEPS, resolve_model_path

    with steps_bar(PREPARE_STEPS, shown(args.json)) as on_step:
        result: dict[str, Any] = {"model": str(resolve_model_path(app.config, on_step))}
    try:
        from ambient.memory import prepare_embedder

        result["embedder"] = str(prepare_embedder(app.config))
    except ImportError:
        pass
    if args.demo:
        result.update(make_demo(app))
    if args.json:
        _print_json(result)
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


DEMO_NOTE = """# Welcome to ambient

Write in this note with any editor and save it. A moment later ambient offers
a few ways it could go on, in the web UI and in a sidecar file beside your data.
Nothing is ever written here unless you accept a continuation yourself.

The lighthouse keeper had not spoken to anyone in three weeks when
"""


def make_demo(app: App) -> dict[str, str]:
    """A demo notes folder with one note, and a config that watches it, unless a config exists."""
    home = app.config.home
    folder = home / "notes"
    config_file = app.config.file or home / "ambient.toml"
    made: dict[str, str] = {}
    if not folder.exists():
        folder.mkdir(parents=True)
        (folder / "welcome.md").write_text(DEMO_NOTE, encoding="utf-8")
        made["demo notes"] = str(folder)
    if not config_file.exists():
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(
            f"# ambient settings; see README.md\n\n[sources.notes]\nfolders = [{json.dumps(str(folder))}]\n",
            encoding="utf-8",
        )
        made["config"] = str(config_file)
    return made


def _preview(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, ensure_ascii=False, indent=2))
