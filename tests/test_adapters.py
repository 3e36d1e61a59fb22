"""AMBIENT_HOME/adapters: versions written whole or not at all, the active one, and when a new one may be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ambient import adapters


def _manifest(name: str) -> dict[str, object]:
    return {"format": adapters.FORMAT, "name": name, "base_model": {"name": "m", "fingerprint": "f"}}


def _fill(manifest: dict[str, object], active: bool):
    def fill(tmp: Path) -> dict[str, object]:
        (tmp / adapters.WEIGHTS).write_bytes(b"w")
        (tmp / adapters.PEFT_CONFIG).write_text("{}")
        return {**manifest, "active": active}

    return fill


def test_versions_and_the_active_one(tmp_path: Path) -> None:
    assert adapters.next_name(tmp_path) == "personal-001" and adapters.active_name(tmp_path) is None
    path, manifest = adapters.write(tmp_path, "personal-001", _fill(_manifest("x"), True))
    assert manifest["name"] == "personal-001" and path.name == "personal-001"
    assert json.loads((path / adapters.MANIFEST).read_text())["active"] is True
    assert adapters.active_name(tmp_path) == "personal-001"
    adapters.write(tmp_path, adapters.next_name(tmp_path), _fill(_manifest("y"), False))
    assert adapters.names(tmp_path) == ["personal-001", "personal-002"]
    assert adapters.active_name(tmp_path) == "personal-001"  # an inactive new one changes nothing
    assert adapters.resolve("personal", tmp_path) == path
    assert adapters.resolve("none", tmp_path) is None
    assert adapters.resolve("personal-002", tmp_path) == adapters.folder(tmp_path) / "personal-002"
    assert oct((adapters.folder(tmp_path)).stat().st_mode & 0o777) == "0o700"


def test_a_failed_or_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    adapters.write(tmp_path, "personal-001", _fill(_manifest("x"), True))

    def broken(tmp: Path) -> dict[str, object]:
        (tmp / adapters.WEIGHTS).write_bytes(b"half")
        raise KeyboardInterrupt  # Ctrl-C while saving

    with pytest.raises(KeyboardInterrupt):
        adapters.write(tmp_path, "personal-002", broken)
    assert adapters.names(tmp_path) == ["personal-001"] and adapters.active_name(tmp_path) == "personal-001"
    assert not list(adapters.folder(tmp_path).glob(".tmp-*"))
    stale = adapters.folder(tmp_path) / ".tmp-personal-003-999999999-1"  # left by a process now gone
    stale.mkdir()
    assert adapters.clean_temporary(tmp_path) == 1 and not stale.exists()


@pytest.mark.parametrize(
    ("evaluation", "active", "says"),
    [
        (
            {
                "diversity_base": 0.5,
                "diversity_personal": 0.45,
                "accuracy_base": 0.4,
                "accuracy_personal": 0.6,
            },
            True,
            "active",
        ),
        ({"diversity_base": 0.5, "diversity_personal": 0.35}, False, "30% less diverse"),
        ({"accuracy_base": 0.6, "accuracy_personal": 0.5}, False, "less often than the base model"),
        ({}, True, "active"),
        (
            {"chosen_gain_per_token": -2.36, "diversity_base": 0.66, "diversity_personal": 0.69},
            False,
            "lost fluency",
        ),
    ],
)
def test_when_a_new_adapter_becomes_active(evaluation: dict[str, float], active: bool, says: str) -> None:
    ok, status = adapters.verdict(evaluation)
    assert ok is active and says in status
    if not ok:
        assert "the previous adapter stays in use" in status
