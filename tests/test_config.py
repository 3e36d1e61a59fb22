from pathlib import Path

import pytest

from ambient.config import SamplingSection, load_config, parse_section
from ambient.errors import ConfigError


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
        ('[sampling]\nn = "many"\n', "sampling.n must be int"),
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
