"""Client keys (ambient/keys.py) and `ambient keys add|list|remove`, through ambient.cli.main.

That a running daemon refuses a removed key is tested against the real /v1 in
``tests/integrations/completions/test_sdk.py``.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from ambient.cli import main
from ambient.errors import AmbientError, InvalidInput, NotFound
from ambient.keys import KEYS_FILE, KeyStore


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AMBIENT_MEMORY_ENABLED", "false")
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


# ------------------------------------------------------------------ the store
def test_a_secret_verifies_to_its_key_and_nothing_else_does(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    loom, loom_secret = keys.add("loom")
    obs, obs_secret = keys.add("obsidian", scope="loom", retrieve=True)
    assert loom.scope == "key:loom" and loom.tree_source == "key:loom" and not loom.retrieve
    assert obs.scope == "loom" and obs.retrieve
    assert loom_secret != obs_secret and loom_secret.startswith("amb_")
    assert keys.verify(loom_secret) == loom
    assert keys.verify(obs_secret) == obs
    for wrong in ("", loom_secret[:-1], loom_secret + "x", obs_secret.upper(), "a" * 10_000, "\udcff"):
        assert keys.verify(wrong) is None
    assert [k.name for k in keys.list()] == ["loom", "obsidian"]


def test_only_hashes_are_kept_in_a_private_file(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "home")
    _, secret = keys.add("loom")
    path = tmp_path / "home" / KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700
    raw = path.read_text()
    assert secret not in raw and secret[8:] not in raw  # at most the hint: its first 8 characters
    assert json.loads(raw)["keys"][0]["sha256"] != secret


def test_a_removed_key_is_refused_and_another_process_sees_changes(tmp_path: Path) -> None:
    keys, other = KeyStore(tmp_path), KeyStore(tmp_path)  # e.g. the CLI and the daemon
    assert other.verify("amb_nothing_yet") is None  # no file yet
    key, secret = keys.add("loom")
    assert other.verify(secret) == key
    assert keys.remove("loom") == key
    assert other.verify(secret) is None
    again, new_secret = keys.add("loom")
    assert other.verify(secret) is None and other.verify(new_secret) == again


def test_bad_names_scopes_and_duplicates_are_refused(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    keys.add("loom")
    for name in ("", "x y", "-lead", "a" * 65, "key:loom", "../up"):
        with pytest.raises(InvalidInput, match="a key's name"):
            keys.add(name)
    for scope in ("discord:123", "Notes", "key:", "key:a b", "a/b"):
        with pytest.raises(InvalidInput, match="a key's scope"):
            keys.add("other", scope=scope)
    with pytest.raises(InvalidInput, match="exists"):
        keys.add("loom")
    with pytest.raises(NotFound, match="no key named 'nope'"):
        keys.remove("nope")
    assert [k.name for k in keys.list()] == ["loom"]


def test_keys_added_at_once_are_all_kept(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            KeyStore(tmp_path).add(f"app{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(k.name for k in KeyStore(tmp_path).list()) == [f"app{i}" for i in range(8)]


def test_a_damaged_keys_file_says_how_to_recover(tmp_path: Path) -> None:
    (tmp_path / KEYS_FILE).write_text("{not json")
    with pytest.raises(AmbientError, match="move it away and add the keys again"):
        KeyStore(tmp_path).verify("amb_x")


# ------------------------------------------------------------------ the command
def test_keys_add_list_remove(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "keys", "add", "loom")
    assert code == 0
    secret = next(line for line in out.splitlines() if line.startswith("amb_"))
    assert "shown this once" in out and "/v1" in out and "docs/clients.md" in out
    assert "`ambient mcp`" in out and "AMBIENT_KEY" in out and "docs/mcp.md" in out  # chat apps too
    assert KeyStore(home).verify(secret) is not None

    added = run_json(capsys, "keys", "add", "obsidian", "--scope", "loom", "--retrieve")
    assert added["key"]["scope"] == "loom" and added["key"]["retrieve"] is True
    assert added["key"]["source"] == "key:obsidian"
    assert KeyStore(home).verify(added["secret"]) is not None

    listed = run_json(capsys, "keys", "list")
    assert [k["name"] for k in listed["keys"]] == ["loom", "obsidian"]
    assert secret not in json.dumps(listed) and added["secret"] not in json.dumps(listed)
    code, out, _ = run(capsys, "keys", "list")
    assert "loom" in out and "obsidian" in out and secret not in out

    removed = run_json(capsys, "keys", "remove", "loom")
    assert removed["removed"]["name"] == "loom"
    assert KeyStore(home).verify(secret) is None
    assert [k["name"] for k in run_json(capsys, "keys", "list")["keys"]] == ["obsidian"]
    assert not (home / KEYS_FILE).read_text().count(added["secret"])
    assert stat.S_IMODE(os.stat(home / KEYS_FILE).st_mode) == 0o600


def test_keys_bad_input_is_one_line_and_exit_2(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "keys", "add", "loom")[0] == 0
    for argv, expected in (
        (("keys", "add", "loom"), "exists"),
        (("keys", "add", "x y"), "a key's name"),
        (("keys", "add", "z", "--scope", "discord:1"), "a key's scope"),
        (("keys", "remove", "nope"), "no key named 'nope'"),
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2, argv
        assert expected in err and err.count("\n") == 1 and not out
