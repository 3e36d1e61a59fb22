"""The ``ambient`` command line.

Each group of core subcommands lives in its own module under
``ambient.commands`` and registers itself with :func:`register`; each installed
place adds its own (:meth:`ambient.sources.Source.add_commands`). Every command
that prints data takes ``--json``. Errors a person can fix print one line and
exit with 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from ambient import __version__, places
from ambient.app import App
from ambient.config import load_config
from ambient.errors import AmbientError

COMMAND_MODULES = (
    "ambient.commands.core",
    "ambient.commands.memory",
    "ambient.commands.daemon",
    "ambient.commands.forget",
    "ambient.commands.backup",
    "ambient.commands.keys",
    "ambient.commands.tune",
    "ambient.commands.bench",
)

EPILOG = """\
examples:
  ambient continue note.md -n 4            branch a text into 4 continuations
  echo "Once upon a time" | ambient continue - --json
  ambient pick 3f2a9c                       choose a continuation (ids can be shortened)
  ambient show 3f2a9c                       a tree, or a node with its provenance
  ambient trees                             list trees
  ambient import loom_demo.json             import a tree saved by Loom
  ambient export TREE --format loom -o out.json
  ambient search "a ship lost at sea" -k 5  find past fragments by meaning
  ambient run                               start the daemon and its web UI
  ambient keys add loom                     a key for another app to use /v1 (docs/clients.md)
  ambient bench sampling                    measure sampling speed

Data lives in $AMBIENT_HOME (default ~/.local/share/ambient); settings in
ambient.toml there (or --config) and AMBIENT_* environment variables.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ambient",
        description="Think with a base language model: branch, pick, remember.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ambient {__version__}")
    parser.add_argument("--config", help="path of ambient.toml (default: $AMBIENT_HOME/ambient.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    for place in places.installed().values():
        place.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    # Idle OpenMP threads sleep instead of spinning: on a busy CPU spinning made decode steps
    # up to 10x slower (measured in `ambient bench sampling`). Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    app: App | None = None
    try:
        app = App(load_config(args.config))
        return int(args.func(args, app) or 0)
    except AmbientError as exc:
        print(f"ambient: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file named on the command line that cannot be read or written
        where = f" {exc.filename}" if exc.filename else ""
        reason = exc.strerror or exc
        print(f"ambient: cannot use{where} ({reason}): check the path and its permissions", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if app is not None:
            app.close()


if __name__ == "__main__":
    sys.exit(main())
