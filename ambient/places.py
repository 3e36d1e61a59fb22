"""The installed places, found through the ``ambient.sources`` entry points (as llm finds its plugins).

Each entry point names a :class:`~ambient.sources.Source` subclass; its entry
point's name is the place's name and the name of its ``[sources.NAME]`` table.
ambient's own places (notes, Discord, speech, manual) register the same way in
ambient's ``pyproject.toml``, so an outside package adds a place without any
change to ambient.

Loading a place imports its module; a place whose module fails to import (a
missing dependency) is reported in one line and left out, never a crash.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ambient.config import Config, parse_section
from ambient.errors import ConfigError, NotFound
from ambient.sources import Source

_LOGGER = logging.getLogger(__name__)

GROUP = "ambient.sources"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_lock = threading.Lock()


@functools.cache
def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        if not _NAME.fullmatch(ep.name):
            _LOGGER.warning("ignoring the place %r (%s): a name is lower-case letters, digits and '_'",
                            ep.name, ep.value)
            continue
        found.setdefault(ep.name, ep)  # the first on sys.path wins, as for imports
    return found


def names() -> list[str]:
    """The names of the installed places."""
    return sorted(_entry_points())


@functools.cache
def _load(name: str) -> type[Source]:
    ep = _entry_points().get(name)
    if ep is None:
        raise ConfigError(
            f"unknown source [sources.{name}]: installed places are {', '.join(names()) or 'none'}; "
            "remove the table, check its spelling, or install the package that adds it"
        )
    try:
        cls = ep.load()
    except ModuleNotFoundError as exc:
        raise ConfigError(f"source {name!r} needs the package {exc.name!r}: install it") from exc
    except ImportError as exc:
        raise ConfigError(f"source {name!r} cannot be imported ({exc}): reinstall its package") from exc
    if not (isinstance(cls, type) and issubclass(cls, Source)):
        raise ConfigError(f"the place {name!r} ({ep.value}) is not a subclass of ambient.sources.Source")
    if getattr(cls, "name", name) != name:
        raise ConfigError(f"the place {ep.value} is registered as {name!r} but calls itself {cls.name!r}")
    return cls


def load(name: str) -> type[Source]:
    """The place called ``name`` (or an earlier name of it); ConfigError naming the fix if there is none."""
    with _lock:  # importing is not re-entrant across threads for the same module
        if name not in _entry_points():
            for cls in installed().values():
                if name in cls.aliases:
                    return cls
        return _load(name)


def installed() -> dict[str, type[Source]]:
    """Every installed place that loads; the others are reported in the log."""
    out: dict[str, type[Source]] = {}
    for name in names():
        try:
            out[name] = _load(name)
        except ConfigError as exc:
            _LOGGER.warning("place %s is not available: %s", name, exc)
    return out


def refresh() -> None:
    """Forget what was found (after installing a place in this process)."""
    with _lock:
        _entry_points.cache_clear()
        _load.cache_clear()


def table(config: Config, cls: type[Source]) -> Mapping[str, Any]:
    """The ``[sources.NAME]`` table of a place (or of an earlier name of it, with a warning)."""
    if cls.name in config.sources:
        return config.sources[cls.name]
    for alias in cls.aliases:
        if alias in config.sources:
            _LOGGER.warning("[sources.%s] is an old name: rename the table to [sources.%s]", alias, cls.name)
            return config.sources[alias]
    return {}


def options(config: Config, cls: type[Source]) -> Any:
    """The typed options of a place, from its table (unknown keys and wrong types are refused)."""
    return parse_section(cls.options_class, table(config, cls), f"sources.{cls.name}")


CORE_SCOPES = {"cli": "cli", "loom": "import"}  # trees the core makes: `ambient continue`, Loom imports


def scope_of(tree_source: str, home: Path) -> str:
    """The scope of a tree named ``tree_source`` (a place: ``note:PATH``, ``discord:SERVER/CHANNEL``, ...)
    in the AMBIENT_HOME ``home``.

    Each installed place answers for its own trees; the core's are ``cli`` (``ambient continue``,
    ``file:NAME``) and ``import`` (``loom``).
    """
    for cls in installed().values():
        found = cls.scope_of(tree_source, home)
        if found:
            return found
    if tree_source in CORE_SCOPES or tree_source.startswith("file:"):
        return CORE_SCOPES.get(tree_source, "cli")
    raise NotFound(
        f"unknown place {tree_source!r}: write it as trees name their source, e.g. note:/path/to/note.md, "
        "discord:<server id>/<channel id>, speech:<session>, ui or cli"
    )


def configured(config: Config) -> list[str]:
    """The places to try in a daemon: every autostarting place, then each ``[sources.NAME]`` table.

    A table's name may be an earlier name of a place: it counts as that place.
    """
    wanted: list[str] = [name for name, cls in installed().items() if cls.autostart]
    for name in config.sources:
        try:
            wanted.append(load(name).name)
        except ConfigError:
            wanted.append(name)  # SourceHost reports it in one line
    return list(dict.fromkeys(wanted))
