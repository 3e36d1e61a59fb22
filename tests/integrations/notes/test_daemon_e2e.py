"""End to end through the real daemon: a save -> offers visible through the REST API (tiny real model).

Also: accepting (through the running source, as the API's accept route would) inserts at the point
and makes no new offer; and the daemon never writes the note on its own.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ambient.app import App
from ambient.config import load_config
from ambient.daemon import Daemon
from ambient.server import Server, serve
from integrations.notes.source import NotesSource
from tests.integrations.notes.conftest import wait_for

pytestmark = [pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning"), pytest.mark.strict_loop]


class Api:
    def __init__(self, server: Server, session: aiohttp.ClientSession) -> None:
        self.base = f"http://127.0.0.1:{server.port}"
        self.session = session
        self.headers = {"Authorization": f"Bearer {server.token}"}

    async def get(self, path: str) -> Any:
        async with self.session.get(self.base + path, headers=self.headers) as response:
            assert response.status == 200, await response.text()
            return await response.json()


@pytest.fixture
async def running(tmp_path: Path, model_path: Path) -> AsyncIterator[tuple[Daemon, Api, Path]]:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "journal.md").write_text("Monday.\n")
    config = load_config(env={"AMBIENT_HOME": str(tmp_path / "home")}).replace(
        model__backend="local",
        model__path=str(model_path),
        model__device="cpu",
        memory__enabled=False,
        server__port=0,
        sampling__n=3,
        sampling__max_tokens=6,
        sources={"notes": {"folders": [str(notes)], "quiet_ms": 150}},
    )
    app = App(config)
    async with serve(config, app) as server, aiohttp.ClientSession() as session:
        yield server.daemon, Api(server, session), notes
    app.close()


def notes_source(daemon: Daemon) -> NotesSource:
    source = daemon.sources.get("notes")
    assert isinstance(source, NotesSource), daemon.sources.status()
    return source


async def note_offers(api: Api, note: Path) -> list[dict[str, Any]]:
    trees = (await api.get("/api/trees"))["trees"]
    mine = [t for t in trees if t["source"] == f"note:{note}"]
    if not mine:
        return []
    view = await api.get(f"/api/trees/{mine[0]['id']}")
    return [o for o in view["offers"] if o["state"] in ("done", "failed", "cancelled")]


async def test_a_save_leads_to_offers_through_the_api_and_accept_inserts_them(
    running: tuple[Daemon, Api, Path],
) -> None:
    daemon, api, notes = running
    note = notes / "journal.md"
    await wait_for(lambda: notes_source(daemon).status()["watching"])
    note.write_text("Monday.\nThe river was grey")
    offers: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + 60
    while not offers:
        assert asyncio.get_running_loop().time() < deadline, daemon.status()
        await asyncio.sleep(0.1)
        offers = await note_offers(api, note)
    [offer] = offers
    assert offer["state"] == "done" and len(offer["node_ids"]) == 3
    point = (await api.get(f"/api/nodes/{offer['parent_id']}"))["node"]
    assert point["meta"]["point"] == len("Monday.\nThe river was grey")
    first = (await api.get(f"/api/nodes/{offer['node_ids'][0]}"))["node"]
    assert first["author"]["kind"] == "model" and first["provenance"]["source"]["path"] == str(note)

    # Offers were made and the note is exactly as the person left it.
    before = note.read_bytes(), os.stat(note).st_mtime_ns
    await asyncio.sleep(1.0)
    assert (note.read_bytes(), os.stat(note).st_mtime_ns) == before

    # A person accepts one: it goes in at the point; ambient's own write brings no new offer.
    source = notes_source(daemon)
    result = await source.accept(first["id"])
    # read as written: a continuation may hold a bare CR, which universal newlines would turn into LF
    assert note.read_bytes().decode() == "Monday.\nThe river was grey" + first["text"]
    assert result.point == point["meta"]["point"]
    await asyncio.sleep(1.0)
    assert len(await note_offers(api, note)) == 1
    sidecars = list((daemon.config.home / "sidecars").rglob("journal.md.offers.md"))
    assert sidecars and "(accepted)" in sidecars[0].read_text()
