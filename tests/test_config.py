import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ambient import config as config_module
from ambient import places, settings
from ambient.cli import main
from ambient.config import BACKENDS, SamplingSection, load_config, parse_section
from ambient.errors import ConfigError, InvalidInput
from ambient.sampling.base import MAX_N, SamplingOptions
from ambient.sampling.registry import register_backend
from tests.fakes import FakeSampler

REPO = Path(__file__).resolve().parents[1]


def test_defaults_use_ambient_home(tmp_path: Path) -> None:
    config = load_config(env={"AMBIENT_HOME": str(tmp_path)})
    assert config.home == tmp_path
    assert config.db_path == tmp_path / "ambient.sqlite3"
    assert config.server.host == "127.0.0.1"
    assert config.model.path == "default"
    assert config.file is None


def test_xdg_default_home(tmp_path: Path) -> None:
    config = load_config(env={"XDG_DATA_HOME": str(tmp_path)})
    assert config.home == tmp_path / "ambient"


def test_toml_then_env_precedence(tmp_path: Path) -> None:
    (tmp_path / "ambient.toml").write_text('[sampling]\nn = 6\ntemperature = 0.5\n[model]\npath = "/m"\n')
    env = {"AMBIENT_HOME": str(tmp_path), "AMBIENT_SAMPLING_N": "3", "AMBIENT_MODEL": "/other"}
    config = load_config(env=env)
    assert config.sampling.n == 3  # environment wins
    assert config.sampling.temperature == 0.5  # from the file
    assert config.model.path == "/other"
    assert config.file == tmp_path / "ambient.toml"


def test_sources_tables_and_env(tmp_path: Path) -> None:
    (tmp_path / "ambient.toml").write_text('[sources.notes]\nfolders = ["/x"]\n')
    config = load_config(env={"AMBIENT_HOME": str(tmp_path), "AMBIENT_DISCORD_TOKEN": "secret"})
    assert config.sources["notes"] == {"folders": ["/x"]}
    assert config.sources["discord"] == {"token": "secret"}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[sampling]\nnn = 3\n", "unknown key 'sampling.nn'"),
        ("[samplin]\nn = 3\n", "unknown table [samplin]"),
        (
            '[sampling]\nn = "many"\n',
            "sampling.n must be int, got 'many': fix it in ambient.toml or AMBIENT_SAMPLING_N",
        ),
        ("[sampling\n", "not valid TOML"),
        ('[memory]\nurl = "http://chroma.example:8000"\n', "memory.url = 'http://chroma.example:8000' would"),
        ('[memory]\nallow_plain_http = "maybe"\n', "memory.allow_plain_http must be bool"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "ambient.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(env={"AMBIENT_HOME": str(tmp_path)})


def test_bad_env_value_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sampling.temperature must be float"):
        load_config(env={"AMBIENT_HOME": str(tmp_path), "AMBIENT_SAMPLING_TEMPERATURE": "hot"})


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={"AMBIENT_HOME": str(tmp_path)})


def test_parse_section_coerces_lists_and_optionals() -> None:
    section = parse_section(SamplingSection, {"stop": "\n,END", "seed": "none"}, "sampling")
    assert section.stop == ("\n", "END")
    assert section.seed is None
    assert parse_section(SamplingSection, {"seed": "7"}, "sampling").seed == 7


def test_replace_sections(tmp_path: Path) -> None:
    config = load_config(env={"AMBIENT_HOME": str(tmp_path)})
    changed = config.replace(model__path="/tiny", sampling__n=2)
    assert changed.model.path == "/tiny" and changed.sampling.n == 2
    assert config.model.path == "default"


def test_plain_http_allowance_from_file_and_environment(tmp_path: Path) -> None:
    (tmp_path / "ambient.toml").write_text(
        '[model]\nbackend = "openai"\nbase_url = "http://gpu.example:8000"\nallow_plain_http = true\n'
    )
    config = load_config(env={"AMBIENT_HOME": str(tmp_path)})
    assert config.model.allow_plain_http and config.model.base_url == "http://gpu.example:8000"
    assert not config.memory.allow_plain_http  # off by default
    with pytest.raises(ConfigError, match="model.base_url = 'http://gpu.example:8000' would send text"):
        load_config(env={"AMBIENT_HOME": str(tmp_path), "AMBIENT_MODEL_ALLOW_PLAIN_HTTP": "false"})


# ------------------------------------------------------------------ values each setting allows
# (section, key, bad value, the one line that refuses it, without "section.key ")
REFUSED = [
    ("sampling", "n", 0, "must be 1..64, got 0"),
    ("sampling", "n", 65, "must be 1..64, got 65"),
    ("sampling", "top_p", 9, "must be above 0 and at most 1, got 9.0"),
    ("sampling", "top_p", 0, "must be above 0 and at most 1, got 0.0"),
    ("sampling", "temperature", -0.1, "must be 0..5 (0 is greedy), got -0.1"),
    ("sampling", "temperature", 5.5, "must be 0..5 (0 is greedy), got 5.5"),
    ("sampling", "max_tokens", 4097, "must be 1..4096, got 4097"),
    ("sampling", "top_k", -1, "must be 0 or more (0 = off), got -1"),
    ("sampling", "top_logprobs", 21, "must be 0..20, got 21"),
    ("sampling", "oversample", 2, "must be 0 (off) or 4..64 (at least sampling.n), got 2"),
    ("sampling", "oversample", 65, "must be 0 (off) or 4..64 (at least sampling.n), got 65"),
    ("sampling", "seed", -1, "must be 0..2147483647, got -1"),
    ("server", "port", 70000, "must be 0..65535 (0 picks a free port), got 70000"),
    ("server", "port", -1, "must be 0..65535 (0 picks a free port), got -1"),
    ("server", "debounce_ms", -1, "must be 0..60000, got -1"),
    ("server", "max_body_bytes", 10, "must be 1024..1073741824, got 10"),
    (
        "server",
        "host",
        "0.0.0.0",
        "must be 127.0.0.1, localhost or ::1 (the daemon listens only on the loopback address; "
        "use an SSH tunnel), got '0.0.0.0'",
    ),
    ("memory", "k", -1, "must be 1..200, got -1"),
    ("memory", "k", 201, "must be 1..200, got 201"),
    ("memory", "min_score", 1.5, "must be -1..1 (a cosine similarity), got 1.5"),
    (
        "memory",
        "collection",
        "a..b",
        "must be 3-512 letters, digits, '.', '_' or '-', starting and ending with a letter or digit "
        "(a Chroma collection name), got 'a..b'",
    ),
    ("context", "memory_share", 1.5, "must be 0..1, got 1.5"),
    (
        "context",
        "budget",
        -1,
        "must be 0 or more (prompt tokens; 0 = the model's context length minus max_tokens), got -1",
    ),
    (
        "context",
        "fragment_template",
        "{txt}",
        "must be a template using only {text}, {score}, {node_id}, {tree_id}, {source} "
        "(write other braces twice: {{ }}), got '{txt}'",
    ),
    ("model", "backend", "bogus", "must be {backends}, got 'bogus'"),  # every backend registered so far
    ("model", "device", "tpu", "must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("model", "threads", -1, "must be 0 or more (0 = one per core), got -1"),
    ("model", "prefix_cache_mb", -1, "must be 0..1048576 (megabytes; 0 = off), got -1"),
    ("model", "context_length", -1, "must be 0 or more (0 = ask the server), got -1"),
    ("model", "timeout", 0, "must be above 0 and at most 3600 (seconds), got 0.0"),
]


def _refusal(section: str, key: str, message: str) -> str:
    return f"{section}.{key} {message}: fix it in ambient.toml or AMBIENT_{section.upper()}_{key.upper()}"


@pytest.mark.parametrize(("section", "key", "value", "message"), REFUSED)
def test_a_bad_value_in_the_file_is_refused_in_one_line(
    tmp_path: Path, section: str, key: str, value: Any, message: str
) -> None:
    (tmp_path / "ambient.toml").write_text(f"[{section}]\n{key} = {json.dumps(value)}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(env={"AMBIENT_HOME": str(tmp_path)})
    assert str(caught.value) == _refusal(section, key, _backends(message))


@pytest.mark.parametrize(("section", "key", "value", "message"), REFUSED)
def test_a_bad_value_in_the_environment_is_refused_the_same_way(
    tmp_path: Path, section: str, key: str, value: Any, message: str
) -> None:
    env = {"AMBIENT_HOME": str(tmp_path), f"AMBIENT_{section.upper()}_{key.upper()}": str(value)}
    with pytest.raises(ConfigError) as caught:
        load_config(env=env)
    assert str(caught.value) == _refusal(section, key, _backends(message))


def _backends(message: str) -> str:
    """Fill in the backends known now (other tests register their own, e.g. "fake")."""
    names = sorted(BACKENDS)
    return message.replace("{backends}", ", ".join(names[:-1]) + " or " + names[-1])


def test_stop_strings_cannot_be_empty(tmp_path: Path) -> None:
    (tmp_path / "ambient.toml").write_text('[sampling]\nstop = ["\\n", ""]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(env={"AMBIENT_HOME": str(tmp_path)})
    assert str(caught.value) == (
        "sampling.stop must be a list whose every item is a text, not empty, got ('\\n', ''): "
        "fix it in ambient.toml or AMBIENT_SAMPLING_STOP"
    )


ACCEPTED = [
    ("sampling", "n", 1),
    ("sampling", "n", 64),
    ("sampling", "top_p", 1),
    ("sampling", "top_p", 0.001),
    ("sampling", "temperature", 0),
    ("sampling", "temperature", 5),
    ("sampling", "max_tokens", 1),
    ("sampling", "max_tokens", 4096),
    ("sampling", "top_k", 0),
    ("sampling", "top_logprobs", 0),
    ("sampling", "top_logprobs", 20),
    ("sampling", "oversample", 4),
    ("sampling", "oversample", 64),
    ("sampling", "seed", 0),
    ("server", "port", 0),
    ("server", "port", 65535),
    ("server", "debounce_ms", 0),
    ("server", "max_body_bytes", 1024),
    ("server", "host", "::1"),
    ("server", "host", "localhost"),
    ("memory", "k", 1),
    ("memory", "k", 200),
    ("memory", "min_score", -1),
    ("memory", "min_score", 1),
    ("memory", "collection", "abc"),
    ("context", "memory_share", 0),
    ("context", "memory_share", 1),
    ("context", "budget", 0),
    ("context", "fragment_template", "{{{source}}} {score:.2f}: {text}\n"),
    ("model", "backend", "openai"),
    ("model", "device", "cuda:1"),
    ("model", "device", "cpu"),
    ("model", "threads", 0),
    ("model", "prefix_cache_mb", 0),
    ("model", "context_length", 0),
    ("model", "timeout", 0.5),
]


@pytest.mark.parametrize(("section", "key", "value"), ACCEPTED)
def test_edge_values_are_accepted_from_the_file_and_the_environment(
    tmp_path: Path, section: str, key: str, value: Any
) -> None:
    (tmp_path / "ambient.toml").write_text(f"[{section}]\n{key} = {json.dumps(value)}\n")
    from_file = getattr(load_config(env={"AMBIENT_HOME": str(tmp_path)}), section)
    env = {"AMBIENT_HOME": str(tmp_path / "other"), f"AMBIENT_{section.upper()}_{key.upper()}": str(value)}
    from_env = getattr(load_config(env=env), section)
    assert getattr(from_file, key) == getattr(from_env, key) == value


def test_oversample_follows_n(tmp_path: Path) -> None:
    env = {"AMBIENT_HOME": str(tmp_path), "AMBIENT_SAMPLING_N": "8", "AMBIENT_SAMPLING_OVERSAMPLE": "6"}
    with pytest.raises(ConfigError, match=r"oversample must be 0 \(off\) or 8..64 \(at least sampling.n\)"):
        load_config(env=env)
    assert load_config(env={**env, "AMBIENT_SAMPLING_N": "2"}).sampling.oversample == 6


def test_a_registered_backend_is_an_allowed_value(tmp_path: Path) -> None:
    env = {"AMBIENT_HOME": str(tmp_path), "AMBIENT_MODEL_BACKEND": "config-test-backend"}
    with pytest.raises(ConfigError, match="model.backend must be "):
        load_config(env=env)
    register_backend("config-test-backend", lambda config: FakeSampler())
    assert load_config(env=env).model.backend == "config-test-backend"


def test_the_sampling_section_allows_what_the_sampler_allows() -> None:
    """The limits are written twice (config cannot import the sampler); they must agree."""
    assert config_module.MAX_N == MAX_N
    edges = {
        "n": (0, 1, MAX_N, MAX_N + 1),
        "max_tokens": (0, 1, 4096, 4097),
        "temperature": (-0.5, 0.0, 5.0),
        "top_p": (0.0, 1e-6, 1.0, 1.5),
        "top_k": (-1, 0, 50),
        "top_logprobs": (-1, 0, 20, 21),
        "stop": (("",), ("\n",)),
    }
    for key, values in edges.items():
        for value in values:
            assert _accepted_by_config(key, value) == _accepted_by_sampler(key, value), (key, value)


def _accepted_by_config(key: str, value: Any) -> bool:
    try:
        parse_section(SamplingSection, {key: value}, "sampling")
    except ConfigError:
        return False
    return True


def _accepted_by_sampler(key: str, value: Any) -> bool:
    try:
        SamplingOptions(**{key: value}).validate()
    except InvalidInput:
        return False
    return True


# ------------------------------------------------------------------ no setting goes unchecked
def _checked_classes() -> list[type[Any]]:
    sections = list(config_module._SECTIONS.values())
    built_in = [places.load(name).options_class for name in ("manual", "notes", "discord", "speech")]
    return sections + built_in


@pytest.mark.parametrize("cls", _checked_classes(), ids=lambda cls: cls.__name__)
def test_every_setting_declares_what_it_allows(cls: type[Any]) -> None:
    assert settings.undeclared(cls) == [], (
        f"{cls.__name__}: give each field a rule from ambient.settings (within, one_of, ...) "
        "or say why it is free(...)"
    )


def test_the_walk_finds_an_unchecked_setting() -> None:
    @dataclasses.dataclass(frozen=True)
    class Loose:
        checked: int = dataclasses.field(default=1, metadata=settings.within(0, 2))
        flag: bool = True  # a bool's type allows only true and false: no rule needed
        unchecked: int = 3
        said_free: str = dataclasses.field(default="", metadata=settings.free("any text"))

    assert settings.undeclared(Loose) == ["unchecked"]
    assert parse_section(Loose, {"unchecked": "-5"}, "loose").unchecked == -5
    with pytest.raises(
        ConfigError, match=r"^sources.loose.checked must be 0..2, got 3: fix it in ambient.toml$"
    ):
        parse_section(Loose, {"checked": 3}, "sources.loose")


# ------------------------------------------------------------------ through the command line
def test_every_command_refuses_a_bad_value_with_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path))
    monkeypatch.setenv("AMBIENT_SAMPLING_N", "0")
    note = tmp_path / "note.md"
    note.write_text("The lighthouse keeper")
    line = "ambient: sampling.n must be 1..64, got 0: fix it in ambient.toml or AMBIENT_SAMPLING_N\n"
    for argv in (["continue", str(note)], ["trees"], ["run", "--no-browser"], ["status"]):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert (captured.err, captured.out) == (line, ""), argv
    assert not (tmp_path / "ambient.sqlite3").exists()  # refused before anything was made


def test_ambient_run_exits_2_on_a_bad_value_in_the_file(tmp_path: Path) -> None:
    (tmp_path / "ambient.toml").write_text("[server]\nport = 70000\n")
    env = {"AMBIENT_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "ambient.cli", "run", "--no-browser"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "ambient: server.port must be 0..65535 (0 picks a free port), got 70000: "
        "fix it in ambient.toml or AMBIENT_SERVER_PORT\n"
    )
    assert done.stdout == ""
