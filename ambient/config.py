"""One configuration object: ``ambient.toml`` plus ``AMBIENT_*`` environment variables.

Precedence (highest first): explicit overrides (command-line flags), environment
variables, the TOML file, the defaults below.

Each TOML table maps to one typed dataclass section. Environment variables are
named ``AMBIENT_<SECTION>_<KEY>`` (for example ``AMBIENT_SAMPLING_N=8``); a few
short aliases exist (``AMBIENT_HOME``, ``AMBIENT_MODEL``). Unknown keys and bad
values raise :class:`ConfigError` naming the key and how to fix it, and so does
plain ``http://`` to another host without ``allow_plain_http`` (:mod:`ambient.remote`).

Every field declares what it allows next to its default (a range, choices, a pattern, or
explicitly anything: :mod:`ambient.settings`), and :func:`parse_section` checks each table it
reads against those rules, so a bad value stops start-up with one line naming the key, the
value and what is allowed, e.g. ``sampling.n must be 1..64, got 0: fix it in ambient.toml or
AMBIENT_SAMPLING_N``.

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
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

from ambient import remote, settings
from ambient.errors import ConfigError
from ambient.scopes import check_share
from ambient.security import LOOPBACK_HOSTS
from ambient.settings import each, free, matching, nonempty, one_of, one_of_live, template, within

T = TypeVar("T")

CONFIG_FILENAME = "ambient.toml"


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """``$AMBIENT_HOME``, else ``$XDG_DATA_HOME/ambient``, else ``~/.local/share/ambient``."""
    env = os.environ if env is None else env
    if env.get("AMBIENT_HOME"):
        return Path(env["AMBIENT_HOME"]).expanduser()
    xdg = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser() / "ambient"


# The most continuations one offer may have: the same number as ambient.sampling.base.MAX_N
# (importing it here would import in a circle; tests/test_config.py keeps the two equal).
MAX_N = 64
MAX_TOKENS = 4096  # tokens per continuation, as SamplingOptions.validate allows
MAX_TEMPERATURE = 5  # as the API allows (ambient.api.SAMPLING)
MAX_TOP_LOGPROBS = 20  # alternatives per token, as SamplingOptions.validate allows
# model.backend's choices: the built-in ones, and every name ambient.sampling.registry.register_backend adds.
BACKENDS: set[str] = {"local", "openai"}
FRAGMENT_FIELDS = {"text": "", "score": 0.0, "node_id": "", "tree_id": "", "source": ""}  # ambient.context
_SEED_MAX = 2**31 - 1  # what the local sampler draws when no seed is given
_COLLECTION = r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]"  # Chroma's rule for a collection name
_ORIGIN = r"[a-z][a-z0-9+.-]*://[a-z0-9._~%!$&'()+,;=:\[\]-]+"  # scheme://host[:port], lower case
_ORIGIN_WHAT = "an origin, scheme://host[:port] in lower case without a path, e.g. app://obsidian.md"
_ADAPTER = r"personal|none|[^\s].*"  # the active personal adapter, none, or an adapter's name or folder
_ADAPTER_WHAT = '"personal" (the active one of `ambient tune`), "none", or an adapter\'s name or folder'
_REMOTE = "a server address, checked by ambient.remote (plain http:// to another host needs allow_plain_http)"


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """Which language model samples continuations."""

    backend: str = field(default="local", metadata=one_of_live(BACKENDS))  # "local", "openai" or registered
    path: str = field(  # "default" = bundled Gemma 3 270M base, or a folder
        default="default", metadata=free('"default" or a folder, checked when the model loads')
    )
    device: str = field(
        default="auto", metadata=matching(r"auto|cpu|cuda(:[0-9]+)?", "auto, cpu, cuda or cuda:N")
    )
    threads: int = field(default=0, metadata=within(0, note="0 = one per core"))
    # local backend: key/value caches of recent prompt prefixes (0 = off)
    prefix_cache_mb: int = field(default=256, metadata=within(0, 1_048_576, note="megabytes; 0 = off"))
    base_url: str = field(default="", metadata=free(_REMOTE))  # for backend = "openai"
    name: str = field(default="", metadata=free("any model name the server knows"))  # openai backend
    api_key: str = field(  # openai backend; never logged, never in repr
        default="", repr=False, metadata=free("a secret, sent only to model.base_url")
    )
    context_length: int = field(  # openai backend: 0 = ask the server (else 2048)
        default=0, metadata=within(0, note="0 = ask the server")
    )
    timeout: float = field(  # openai backend: seconds to wait for the server's next byte
        default=60.0, metadata=within(0, 3600, above=True, note="seconds")
    )
    allow_plain_http: bool = False  # true: base_url may be http:// to another host (prompts unencrypted)
    # the personal adapter (`ambient tune`) that writes a share of each offer's branches; with the openai
    # backend, a name the server serves (vLLM's --lora-modules NAME=FOLDER)
    adapter: str = field(default="personal", metadata=matching(_ADAPTER, _ADAPTER_WHAT))
    adapter_share: float = field(  # the rest are the base model's: one offer mixes both
        default=0.5, metadata=within(0, 1, note="the share of each offer's branches the adapter writes")
    )

    def __post_init__(self) -> None:
        problem = adapter_backend_problem(self.adapter, self.backend)
        if problem:
            raise ConfigError(problem)


def adapter_backend_problem(adapter: str, backend: str, setting: str = "model.adapter") -> str | None:
    """Why ``adapter`` cannot go with ``backend`` (None: it can), as one line naming ``setting`` and the fix.

    The local model takes any adapter. The ``openai`` backend takes one the server serves by name
    (vLLM: ``--lora-modules NAME=FOLDER``; checked against the server's ``/v1/models`` when it
    samples), never a folder: the server cannot read ambient's files. ``"personal"`` (the default of
    ``model.adapter``) passes here, and the sampler says why the home's active adapter is not used;
    asked for on the command line (``setting`` = ``--adapter``) it is refused. Other backends take none.
    """
    in_config = setting.startswith("model.")
    if backend == "local" or adapter == "none" or (adapter == "personal" and in_config):
        return None
    said = f"{setting} = {adapter!r}" if in_config else f"{setting} {adapter}"
    backend_is = f"model.backend is {backend!r}" if in_config else f"the backend is {backend!r}"
    drop = 'set model.adapter = "none"' if in_config else f"drop {setting}"
    use = "set model.adapter = NAME" if in_config else f"pass {setting} NAME"
    if backend == "openai" and adapter == "personal":
        return (
            f"{said} needs the local model, but {backend_is}: the server cannot read ambient's adapter "
            f"files; load the adapter's folder into the server by name (vLLM: --enable-lora --lora-modules "
            f"NAME=FOLDER) and {use}, or {drop}"
        )
    if backend == "openai":
        if not _is_folder(adapter):
            return None
        return (
            f"{said} is a folder, but {backend_is}: the server cannot read ambient's adapter folders; "
            f"load it into the server by name (vLLM: --enable-lora --lora-modules NAME={adapter}) and "
            f"{use}, or {drop}"
        )
    return (
        f"{said} needs the local model, but {backend_is}: a server's model cannot take ambient's "
        f'adapters; {drop} or set model.backend = "local"'
    )


def _is_folder(value: str) -> bool:
    """``value`` names a folder rather than a model name a server serves."""
    if value.startswith(("/", "~", "./", "../", ".\\", "..\\")) or value in (".", ".."):
        return True
    return any(sep in value for sep in "/\\") and Path(value).expanduser().is_dir()


@dataclasses.dataclass(frozen=True)
class SamplingSection:
    """Default sampling settings for every offer."""

    n: int = field(default=4, metadata=within(1, MAX_N))
    max_tokens: int = field(default=48, metadata=within(1, MAX_TOKENS))
    temperature: float = field(default=0.9, metadata=within(0, MAX_TEMPERATURE, note="0 is greedy"))
    top_p: float = field(default=1.0, metadata=within(0, 1, above=True))
    top_k: int = field(default=0, metadata=within(0, note="0 = off"))
    top_logprobs: int = field(default=5, metadata=within(0, MAX_TOP_LOGPROBS))
    stop: tuple[str, ...] = field(default=(), metadata=each(nonempty("a text, not empty", blanks=True)))
    seed: int | None = field(default=None, metadata=within(0, _SEED_MAX))
    signals: bool = True  # per-token signals (entropy, ease, attention, surprise) where the backend has them
    oversample: int = field(  # 0 = off; else sample this many, cluster them, offer n representatives
        default=0, metadata=within("n", MAX_N, off=0, off_means="off", note="at least sampling.n")
    )


@dataclasses.dataclass(frozen=True)
class MemorySection:
    """The vector store that makes every node findable by meaning."""

    enabled: bool = True
    url: str = field(  # empty = embedded chromadb under AMBIENT_HOME; else a Chroma server
        default="", metadata=free(f"empty (embedded) or {_REMOTE}")
    )
    allow_plain_http: bool = False  # true: url may be http:// to another host (node texts unencrypted)
    collection: str = field(
        default="ambient-nodes",
        metadata=matching(
            _COLLECTION,
            "3-512 letters, digits, '.', '_' or '-', starting and ending with a letter or digit",
            note="a Chroma collection name",
        ),
    )
    embedder: str = field(  # "default" = all-MiniLM-L6-v2, or a folder
        default="default", metadata=free('"default" or a folder, checked when the embedder loads')
    )
    k: int = field(default=4, metadata=within(1, 200))  # fragments retrieved per context
    min_score: float = field(default=0.25, metadata=within(-1, 1, note="a cosine similarity"))
    # Opt-in openings in the walls between places (ambient/scopes.py): a scope -> the scopes (or
    # "private") its offers may also retrieve from, e.g. "discord:123" = ["notes"]. Off by default.
    share: Mapping[str, tuple[str, ...]] = field(
        default_factory=dict, metadata=free("checked by ambient.scopes.check_share")
    )
    include_pruned: bool = False  # let pruned nodes be retrieved too

    def __post_init__(self) -> None:
        object.__setattr__(self, "share", check_share(self.share))


@dataclasses.dataclass(frozen=True)
class ContextSection:
    """How a prompt is assembled."""

    budget: int = field(  # prompt tokens; 0 = the model's context length minus max_tokens
        default=0, metadata=within(0, note="prompt tokens; 0 = the model's context length minus max_tokens")
    )
    memory_header: str = field(default="Related fragments from earlier:\n", metadata=free("any text"))
    fragment_template: str = field(default="---\n{text}\n", metadata=template(FRAGMENT_FIELDS))
    memory_footer: str = field(default="---\n\n", metadata=free("any text"))
    memory_share: float = field(  # at most this share of the budget goes to memory
        default=0.35, metadata=within(0, 1)
    )


@dataclasses.dataclass(frozen=True)
class ServerSection:
    """The daemon's HTTP API and web UI."""

    host: str = field(
        default="127.0.0.1",
        metadata=one_of(
            *LOOPBACK_HOSTS, note="the daemon listens only on the loopback address; use an SSH tunnel"
        ),
    )
    port: int = field(default=8765, metadata=within(0, 65535, note="0 picks a free port"))
    max_body_bytes: int = field(default=1_000_000, metadata=within(1024, 1_073_741_824))
    debounce_ms: int = field(default=400, metadata=within(0, 60_000))
    # Browser and Electron apps that may call the APIs for other apps (/v1) with a client key, by
    # their Origin (e.g. "app://obsidian.md" for Obsidian plugins); apps that send none need no entry.
    client_origins: tuple[str, ...] = field(default=(), metadata=each(matching(_ORIGIN, _ORIGIN_WHAT)))


@dataclasses.dataclass(frozen=True)
class TuneSection:
    """`ambient tune`: a personal adapter for the local model, trained on what you pick."""

    # Picks made in your private places (notes, speech, the UI, the CLI) always count; a shared
    # place's (a Discord server) only when named here, e.g. ["discord:123456789"].
    shared_places: tuple[str, ...] = field(
        default=(), metadata=each(matching(r"[a-z]+:[^\s]+", "a shared place's scope, e.g. discord:123"))
    )
    min_pairs: int = field(default=40, metadata=within(2, note="preference pairs needed to tune"))
    holdout: float = field(default=0.2, metadata=within(0, 0.9, note="the newest pairs kept for evaluation"))
    rank: int = field(default=8, metadata=within(1, 256, note="LoRA rank"))
    alpha: int = field(default=16, metadata=within(1, 4096, note="LoRA alpha"))
    learning_rate: float = field(default=1e-3, metadata=within(0, 1, above=True))
    beta: float = field(default=0.1, metadata=within(0, 100, above=True, note="DPO beta"))
    objective: str = field(default="dpo", metadata=one_of("dpo", "dpo-mean", "rpo"))
    nll_weight: float = field(  # "rpo": DPO plus the chosen branch's likelihood, so its text stays fluent
        default=1.0, metadata=within(0, 100, note="the weight of the chosen branch's likelihood (rpo)")
    )
    context_tokens: int = field(default=256, metadata=within(16, 8192, note="prompt tokens read per pick"))
    epochs: int = field(default=1, metadata=within(1, 20, note="passes over the picks"))
    min_steps: int = field(  # few picks: more passes, up to this many optimiser steps (one per pick)
        default=16, metadata=within(0, 10_000, note="optimiser steps at least")
    )
    range_prompts: int = field(  # offers sampled base vs personal to measure the range kept (0 = skip)
        default=4, metadata=within(0, 64, note="0 = do not measure")
    )
    max_diversity_drop: float = field(
        default=0.2, metadata=within(0, 1, note="a new adapter losing more diversity is not activated")
    )
    max_likelihood_loss: float = field(  # nor one finding your held-out picks this much less likely
        default=1.0, metadata=within(0, 100, note="nats per token; 0 = no limit")
    )
    every_picks: int = field(  # the daemon tunes when idle after this many new picks
        default=0, metadata=within(0, note="0 = off")
    )
    seed: int = field(default=0, metadata=within(0, _SEED_MAX))


@dataclasses.dataclass(frozen=True)
class Config:
    home: Path
    model: ModelSection = ModelSection()
    sampling: SamplingSection = SamplingSection()
    memory: MemorySection = MemorySection()
    context: ContextSection = ContextSection()
    server: ServerSection = ServerSection()
    tune: TuneSection = TuneSection()
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

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    def replace(self, **sections: Any) -> Config:
        """A copy with some sections (or fields given as ``section__key``) replaced."""
        changes: dict[str, Any] = {}
        for key, value in sections.items():
            if "__" in key:
                section, name = key.split("__", 1)
                current = changes.get(section, getattr(self, section))
                changes[section] = dataclasses.replace(current, **{name: value})
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
    "tune": TuneSection,
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
    """Build dataclass ``cls`` from ``table``, rejecting unknown keys, bad types and values its rules refuse.

    Strings (from the environment) are converted to the field's type; then every field's
    rule (:mod:`ambient.settings`) is checked.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in fields:
            raise ConfigError(f"unknown key '{where}.{key}': expected one of {', '.join(sorted(fields))}")
        values[key] = _coerce(raw, hints[key], f"{where}.{key}")
    section = cls(**values)
    settings.check(section, where)
    return section


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
        raise ConfigError(f"{key} must be {name}, got {value!r}: {settings.fix_hint(key)}") from None
    return value
