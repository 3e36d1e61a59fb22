"""Installing places in a test the way a package does: a ``*.dist-info`` folder on ``sys.path`` whose
``entry_points.txt`` names them under ``ambient.sources`` (what pip writes for
``[project.entry-points."ambient.sources"]``), with the package's own modules beside it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from ambient import places

Installer = Callable[..., Path]


@pytest.fixture
def install_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Installer]:
    """``install_places({"name": "module:Class"}, files={"pkg/__init__.py": "..."})`` -> the site folder."""
    count = 0

    def install(entries: Mapping[str, str], files: Mapping[str, str] | None = None) -> Path:
        nonlocal count
        count += 1
        site = tmp_path / f"site{count}"
        dist = site / f"ambient_test_places{count}-0.1.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: ambient-test-places{count}\nVersion: 0.1\n"
        )
        lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
        (dist / "entry_points.txt").write_text("[ambient.sources]\n" + lines)
        for rel, text in (files or {}).items():
            path = site / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        monkeypatch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        places.refresh()
        return site

    yield install
    places.refresh()  # sys.path is restored next (monkeypatch): nothing may remember these places
