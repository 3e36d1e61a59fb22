"""Where text leaves the machine: loopback or not, the plain-http rule, what `ambient run` says at start."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ambient import remote
from ambient.cli import main
from ambient.config import Config, load_config
from ambient.errors import ConfigError
from ambient.memory.location import Location

REPO = Path(__file__).resolve().parent.parent


def config_with(tmp_path: Path, **env: str) -> Config:
    return load_config(env={"AMBIENT_HOME": str(tmp_path), **env})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.45.6.7", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("128.0.0.1", False),
        ("10.0.0.5", False),
        ("0.0.0.0", False),
        ("::ffff:10.0.0.5", False),
        ("gpu.example", False),
        ("localhost.example", False),
        ("2001:db8::1", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert remote.is_loopback(host) is loopback


def test_addresses_name_host_and_port() -> None:
    assert remote.model_address("gpu.example").host_port == "gpu.example:80"
    assert remote.model_address("https://gpu.example/v1").host_port == "gpu.example:443"
    assert remote.memory_address("http://chroma.example").host_port == "chroma.example:8000"
    assert remote.memory_address("chroma.example:9000") == remote.Address("http", "chroma.example", 9000)
    v6 = remote.memory_address("http://[2001:db8::1]:8000")
    assert v6.host_port == "[2001:db8::1]:8000" and not v6.loopback and v6.plain


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://chroma.example", r"memory.url = 'ftp://chroma.example' is not a server address: use http://"),
        ("http://chroma.example:99999", r"memory.url = 'http://chroma.example:99999' has a bad port"),
    ],
)
def test_bad_addresses_name_the_key(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        remote.memory_address(url)


def test_plain_http_to_another_host_is_refused_naming_key_value_and_fix(tmp_path: Path) -> None:
    (tmp_path / "ambient.toml").write_text(
        '[model]\nbackend = "openai"\nbase_url = "http://gpu.example:8000"\nname = "m"\n'
    )
    with pytest.raises(ConfigError) as err:
        config_with(tmp_path)
    message = str(err.value)
    assert message.startswith("model.base_url = 'http://gpu.example:8000' would send text unencrypted")
    assert "https://" in message and "model.allow_plain_http = true" in message
    assert "ssh -L 8000:127.0.0.1:8000 gpu.example" in message and "\n" not in message


def test_memory_url_from_the_environment_is_checked_the_same_way(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"memory.url = 'chroma.example:8000' would send text unencrypted"):
        config_with(tmp_path, AMBIENT_MEMORY_URL="chroma.example:8000")  # no scheme means http
    allowed = config_with(
        tmp_path, AMBIENT_MEMORY_URL="chroma.example:8000", AMBIENT_MEMORY_ALLOW_PLAIN_HTTP="true"
    )
    assert allowed.memory.allow_plain_http and allowed.memory.url == "chroma.example:8000"


def test_the_allowance_is_per_service(tmp_path: Path) -> None:
    env = {
        "AMBIENT_MODEL_BACKEND": "openai",
        "AMBIENT_MODEL_BASE_URL": "http://gpu.example:8000",
        "AMBIENT_MEMORY_ALLOW_PLAIN_HTTP": "1",  # the wrong one
    }
    with pytest.raises(ConfigError, match="model.allow_plain_http"):
        config_with(tmp_path, **env)
    config = config_with(tmp_path, **env, AMBIENT_MODEL_ALLOW_PLAIN_HTTP="1")
    assert config.model.allow_plain_http and config.model.base_url == "http://gpu.example:8000"


@pytest.mark.parametrize(
    "env",
    [
        {"AMBIENT_MODEL_BACKEND": "openai", "AMBIENT_MODEL_BASE_URL": "https://gpu.example:8000"},
        {"AMBIENT_MODEL_BACKEND": "openai", "AMBIENT_MODEL_BASE_URL": "http://127.0.0.1:8080"},
        {"AMBIENT_MODEL_BACKEND": "openai", "AMBIENT_MODEL_BASE_URL": "http://[::1]:8080"},
        {"AMBIENT_MEMORY_URL": "https://chroma.example"},
        {"AMBIENT_MEMORY_URL": "http://localhost:8000"},
        # the URL is not used, so it sends nothing: the local backend, memory off
        {"AMBIENT_MODEL_BASE_URL": "http://gpu.example:8000"},
        {"AMBIENT_MEMORY_URL": "http://chroma.example:8000", "AMBIENT_MEMORY_ENABLED": "false"},
    ],
)
def test_https_and_loopback_and_unused_urls_are_allowed(tmp_path: Path, env: dict[str, str]) -> None:
    config = config_with(tmp_path, **env)
    assert config.model.base_url == env.get("AMBIENT_MODEL_BASE_URL", "")


def test_overrides_are_checked_too(tmp_path: Path) -> None:
    """`ambient continue --backend openai --base-url URL` goes through Config.replace."""
    config = config_with(tmp_path)
    with pytest.raises(ConfigError, match="model.base_url = 'http://gpu.example:8000'"):
        config.replace(model__backend="openai", model__base_url="http://gpu.example:8000")
    changed = config.replace(model__backend="openai", model__base_url="https://gpu.example:8000")
    assert changed.model.base_url == "https://gpu.example:8000"


def test_refused_config_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path))
    monkeypatch.setenv("AMBIENT_MEMORY_URL", "http://chroma.example:8000")
    assert main(["trees"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ambient: memory.url = 'http://chroma.example:8000' would send text unencrypted")
    assert err.count("\n") == 1


def test_nothing_is_announced_by_default_or_for_loopback(tmp_path: Path) -> None:
    assert remote.announcements(config_with(tmp_path)) == []
    local = config_with(
        tmp_path,
        AMBIENT_MODEL_BACKEND="openai",
        AMBIENT_MODEL_BASE_URL="http://127.0.0.1:8080",
        AMBIENT_MEMORY_URL="http://localhost:8000",
    )
    assert [s.role for s in remote.services(local)] == ["sampling", "memory"]
    assert remote.announcements(local) == []


def test_announcements_say_which_text_goes_to_which_host(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        AMBIENT_MODEL_BACKEND="openai",
        AMBIENT_MODEL_BASE_URL="https://gpu.example:8000/v1",
        AMBIENT_MEMORY_URL="http://chroma.example",
        AMBIENT_MEMORY_ALLOW_PLAIN_HTTP="yes",
    )
    assert remote.announcements(config) == [
        "sampling (model.base_url): every prompt (the text around your change and the memory retrieved "
        "for it) goes to gpu.example:8000, over https",
        "memory (memory.url): the text of every node and its embedding is stored on chroma.example:8000, "
        "and every search sends the embedding of its query there, "
        "unencrypted (memory.allow_plain_http = true)",
    ]


def test_memory_location_uses_the_same_address(tmp_path: Path) -> None:
    config = config_with(tmp_path, AMBIENT_MEMORY_URL="https://chroma.example")
    assert Location.from_config(config)._server_address() == ("chroma.example", 443, True)
    plain = config_with(tmp_path, AMBIENT_MEMORY_URL="127.0.0.1")
    assert Location.from_config(plain)._server_address() == ("127.0.0.1", 8000, False)


def _stderr_until(proc: subprocess.Popen[bytes], end: str, timeout: float = 60.0) -> str:
    """What the process wrote to stderr, up to the line with ``end`` (raw reads: no buffer hides a line)."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    said = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 65536)
            said += chunk
            if end.encode() in said:
                return said.decode()
            if not chunk:
                break
        assert proc.poll() is None, said.decode(errors="replace")
    raise AssertionError(f"ambient run did not print {end!r}: {said.decode(errors='replace')}")


def test_run_says_at_start_which_text_leaves_the_machine(tmp_path: Path) -> None:
    """The openai backend does not reach its server until the first offer, so an unreachable host is fine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBIENT_")}
    env.update(
        AMBIENT_HOME=str(tmp_path),
        AMBIENT_MODEL_BACKEND="openai",
        AMBIENT_MODEL_BASE_URL="https://gpu.invalid:8000",
        AMBIENT_MODEL_NAME="m",
        AMBIENT_MODEL_CONTEXT_LENGTH="2048",
        AMBIENT_MEMORY_ENABLED="false",
        PYTHONPATH=str(REPO),
    )
    run = "import sys; from ambient.cli import main; sys.exit(main(['run', '--port', '0', '--no-browser']))"
    proc = subprocess.Popen(
        [sys.executable, "-c", run], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        said = _stderr_until(proc, "Ctrl-C stops")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "  sampling (model.base_url): every prompt" in said
    assert "goes to gpu.invalid:8000, over https" in said
    assert "memory (memory.url)" not in said
