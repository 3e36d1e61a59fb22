"""One configuration object: ``ambient.toml`` plus ``AMBIENT_*`` environment variables.

Precedence (highest first): explicit overrides (command-line flags), environment
variables, the TOML file, the defaults below.

Each TOML table maps to one typed dataclass section. Environment variables are
named ``AMBIENT_<SECTION>_<KEY>`` (for example ``AMBIENT_SAMPLING_N=8``); a few
short aliases exist (``AMBIENT_HOME``, ``AMBIENT_MODEL``). Unknown keys and bad
values raise :class:`ConfigError` naming the key and how to fix it, and so does
plain ``http://`` to another host without ``allow_plain_http`` (:mod:`ambient.remote`).

Integrations declare their own options dataclass and parse their table with
:func:`parse_section`, so every option in ambient is validated the same way.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from ambient import remote
from ambient.errors import ConfigError
from ambient.scopes import check_share

T = TypeVar("T")

CONFIG_FILENAME = "ambient.toml"


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """``$AMBIENT_HOME``, else ``$XDG_DATA_HOME/ambient``, else ``~/.local/share/ambient``."""
    env = os.environ if env is None else env
    if env.get("AMBIENT_HOME"):
        return Path(env["AMBIENT_HOME"]).expanduser()
    xdg = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser() / "ambient"


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """Which language model samples continuations."""

    backend: str = "local"  # "local" (transformers + torch) or "openai"
    path: str = "default"  # "default" = bundled Gemma 3 270M base, or a folder
    device: str = "auto"  # "auto", "cpu", "cuda"
    threads: int = 0  # 0 = one per core
    prefix_cache_mb: int = 256  # local backend: key/value caches of recent prompt prefixes (0 = off)
    base_url: str = ""  # for backend = "openai"
    name: str = ""  # model name for the openai backend
    api_key: str = dataclasses.field(default="", repr=False)  # openai backend; never logged, never in repr
    context_length: int = 0  # openai backend: 0 = ask the server (else 2048)
    timeout: float = 60.0  # openai backend: seconds to wait for the server's next byte
    allow_plain_http: bool = False  # true: base_url may be http:// to another host (prompts unencrypted)


@dataclasses.dataclass(frozen=True)
class SamplingSection:
    """Default sampling settings for every offer."""

    n: int = 4
    max_tokens: int = 48
    temperature: float = 0.9
    top_p: float = 1.0
    top_k: int = 0
    top_logprobs: int = 5
    stop: tuple[str, ...] = ()
    seed: int | None = None
    signals: bool = True  # per-token signals (entropy, ease, attention, surprise) where the backend has them
    oversample: int = 0  # 0 = off; else sample this many, cluster them, offer n representatives


@dataclasses.dataclass(frozen=True)
class MemorySection:
    """The vector store that makes every node findable by meaning."""

    enabled: bool = True
    url: str = ""  # empty = embedded chromadb under AMBIENT_HOME; else a Chroma server
    allow_plain_http: bool = False  # true: url may be http:// to another host (node texts unencrypted)
    collection: str = "ambient-nodes"
    embedder: str = "default"  # "default" = all-MiniLM-L6-v2, or a folder
    k: int = 4  # fragments retrieved per context
    min_score: float = 0.25
    # Opt-in openings in the walls between places (ambient/scopes.py): a scope -> the scopes (or
    # "private") its offers may also retrieve from, e.g. "discord:123" = ["notes"]. Off by default.
    share: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    include_pruned: bool = False  # let pruned nodes be retrieved too

    def __post_init__(self) -> None:
        object.__setattr__(self, "share", check_share(self.share))


@dataclasses.dataclass(frozen=True)
class ContextSection:
    """How a prompt is assembled."""

    budget: int = 0  # prompt tokens; 0 = the model's context length minus max_tokens
    memory_header: str = "Related fragments from earlier:\n"
    fragment_template: str = "---\n{text}\n"
    memory_footer: str = "---\n\n"
    memory_share: float = 0.35  # at most this share of the budget goes to memory


@dataclasses.dataclass(frozen=True)
class ServerSection:
    """The daemon's HTTP API and web UI."""

    host: str = "127.0.0.1"
    port: int = 8765
    max_body_bytes: int = 1_000_000
    debounce_ms: int = 400


@dataclasses.dataclass(frozen=True)
class Config:
    home: Path
    model: ModelSection = ModelSection()
    sampling: SamplingSection = SamplingSection()
    memory: MemorySection = MemorySection()
    context: ContextSection = ContextSection()
    server: ServerSection = ServerSection()
    # Raw tables of integrations ([sources.notes], [sources.discord], ...);
    # each integration parses its own with parse_section().
    sources: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    file: Path | None = None

    @property
    def db_path(self) -> Path:
        return self.home / "ambient.sqlite3"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def memory_dir(self) -> Path:
        return self.home / "memory"

    def replace(self, **sections: Any) -> Config:
        """A copy with some sections (or fields given as ``section__key``) replaced."""
        changes: dict[str, Any] = {}
        for key, value in sections.items():
            if "__" in key:
                section, field = key.split("__", 1)
                current = changes.get(section, getattr(self, section))
                changes[section] = dataclasses.replace(current, **{field: value})
            else:
                changes[key] = value
        changed = dataclasses.replace(self, **changes)
        remote.check(changed)
        return changed


_SECTIONS: dict[str, type[Any]] = {
    "model": ModelSection,
    "sampling": SamplingSection,
    "memory": MemorySection,
    "context": ContextSection,
    "server": ServerSection,
}
_ALIASES = {"AMBIENT_MODEL": ("model", "path"), "AMBIENT_DISCORD_TOKEN": ("sources.discord", "token")}


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read the config file (if any) and the environment into a :class:`Config`."""
    env = os.environ if env is None else env
    home = default_home(env)
    file = Path(path).expanduser() if path else home / CONFIG_FILENAME
    data: dict[str, Any] = {}
    if path and not file.is_file():
        raise ConfigError(f"config file {file} does not exist: create it or drop --config")
    if file.is_file():
        data = _read_toml(file)
    else:
        file = None  # type: ignore[assignment]
    if "home" in data:
        home = Path(str(data.pop("home"))).expanduser()
        if env.get("AMBIENT_HOME"):
            home = Path(env["AMBIENT_HOME"]).expanduser()
    unknown = set(data) - set(_SECTIONS) - {"sources"}
    if unknown:
        raise ConfigError(
            f"unknown table [{sorted(unknown)[0]}] in {file}: "
            f"expected one of {', '.join(sorted([*_SECTIONS, 'sources']))}"
        )
    tables: dict[str, dict[str, Any]] = {name: dict(data.get(name, {})) for name in _SECTIONS}
    sources: dict[str, dict[str, Any]] = {k: dict(v) for k, v in data.get("sources", {}).items()}
    _apply_env(env, tables, sources)
    sections = {name: parse_section(cls, tables[name], name) for name, cls in _SECTIONS.items()}
    config = Config(home=home, sources=sources, file=file, **sections)
    remote.check(config)
    return config


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML ({exc}): fix the file or move it away") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {file} ({exc.strerror}): check its permissions") from exc


def _apply_env(
    env: Mapping[str, str],
    tables: dict[str, dict[str, Any]],
    sources: dict[str, dict[str, Any]],
) -> None:
    for var, value in env.items():
        if not var.startswith("AMBIENT_") or var == "AMBIENT_HOME":
            continue
        if var in _ALIASES:
            section, key = _ALIASES[var]
        else:
            rest = var[len("AMBIENT_") :].lower()
            section, _, key = rest.partition("_")
            if section not in tables or not key:
                continue  # not a config variable (e.g. AMBIENT_TOKEN used by the CLI)
        if section.startswith("sources."):
            sources.setdefault(section.split(".", 1)[1], {})[key] = value
        else:
            tables[section][key] = value


def parse_section(cls: type[T], table: Mapping[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``table``, rejecting unknown keys and bad types.

    Strings (from the environment) are converted to the field's type.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in fields:
            raise ConfigError(f"unknown key '{where}.{key}': expected one of {', '.join(sorted(fields))}")
        values[key] = _coerce(raw, hints[key], f"{where}.{key}")
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("", "none", "null"))
        if is_none and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_coerce(v, args[0], key) for v in value)
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, got {value!r}")
        return value
    return _coerce_scalar(value, hint, key)


def _coerce_scalar(value: Any, hint: Any, key: str) -> Any:
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if hint is str:
            if not isinstance(value, str | int | float):
                raise ValueError(value)
            return str(value)
        if hint is Path:
            return Path(str(value)).expanduser()
    except (TypeError, ValueError):
        name = getattr(hint, "__name__", str(hint))
        raise ConfigError(
            f"{key} must be {name}, got {value!r}: fix it in ambient.toml or the environment"
        ) from None
    return value
