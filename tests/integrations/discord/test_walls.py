"""Walls between places, through the real bot and real memory (embedded chromadb, and a Chroma server).

A diary sentence saved in a note must never reach a Discord server's prompt, nor
anything the bot posts; with an explicit share it does; a second server never
sees the first server's chat (and the other way round). Each negative check has
its positive twin, so a retrieval that finds nothing at all cannot pass them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ambient.app import App
from ambient.config import Config
from ambient.offers import make_offer
from ambient.sampling.base import SamplingOptions
from ambient.scopes import view_for
from tests.fakes import FakeSampler
from tests.integrations.discord.conftest import World, make_config, make_world

DIARY = "The amber violin was hidden beneath the orchard well, wrapped in my grandmother's shawl."
OTHER_SERVER = "Our raid leader hid the amber violin skin inside the orchard dungeon well."
CHAT = (
    ("Alice", "Has anyone seen where the old violin ended up?"),
    ("Bob", "Someone said it was hidden near a well in an orchard."),
)


@pytest.fixture(params=["embedded", "server"])
def memory_config(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    changes: dict[str, Any] = {"memory__enabled": True, "memory__min_score": 0.2}
    if request.param == "server":
        url = request.getfixturevalue("chroma_server")
        changes.update(memory__url=url, memory__collection=f"walls-{uuid.uuid4().hex[:12]}")
    return make_config(tmp_path, **changes)


@pytest.fixture
async def world(memory_config: Config) -> AsyncIterator[World]:
    app = App(memory_config, sampler=FakeSampler())
    assert app.memory is not None, app.memory_warning
    world = await make_world(app)
    world.allow(listen_channels=("general",), channels=("general",))
    yield world
    await world.discord.stop()
    app.close()


def seed(world: World) -> tuple[str, str]:
    """A private note and a second server's chat, as their places store them; both indexed."""
    store = world.store
    _, note = store.create_tree(DIARY, source="note:/home/me/diary.md", scope="notes")
    _, other = store.create_tree(OTHER_SERVER, source="discord:999/1", scope="discord:999")
    return note.id, other.id


async def pull(world: World) -> list[dict[str, Any]]:
    """Talk about the violin in #general, `!continue`, and return the retrieved records of the offer."""
    general = world.discord.channel("general")
    for who, text in CHAT:
        await world.discord.say(text, general, who)
    await world.hub.idle()
    world.app.index_pending()
    await world.discord.say("!continue 2", general, "Carol")
    posted = world.offers()
    assert posted, "the bot posted no continuation"
    provenance = world.node(posted[-1]).provenance
    assert provenance is not None and provenance["memory"] == "on"
    retrieved: list[dict[str, Any]] = provenance["retrieved"]
    return retrieved


async def test_a_note_never_reaches_a_discord_prompt_or_post(world: World) -> None:
    note_id, other_id = seed(world)
    retrieved = await pull(world)
    scope = f"discord:{world.discord.guild.id}"
    assert {r["scope"] for r in retrieved} <= {scope}, retrieved
    assert note_id not in {r["node_id"] for r in retrieved} and other_id not in {
        r["node_id"] for r in retrieved
    }
    assert all("amber" not in s.content and "grandmother" not in s.content for s in world.discord.sent)
    # the twin: the same memory, asked from a private place, finds the diary by meaning
    private = world.app.require_memory().search(CHAT[1][1], k=3, view=view_for("notes", {}))
    assert private and private[0].node_id == note_id and private[0].scope == "notes"


async def test_an_explicit_share_lets_the_note_in(world: World) -> None:
    note_id, other_id = seed(world)
    scope = f"discord:{world.discord.guild.id}"
    world.app.config = world.app.config.replace(memory__share={scope: ("notes",)})
    retrieved = await pull(world)
    assert note_id in {r["node_id"] for r in retrieved}, retrieved
    assert next(r for r in retrieved if r["node_id"] == note_id)["scope"] == "notes"
    assert other_id not in {r["node_id"] for r in retrieved}  # sharing notes opens nothing else


async def test_a_second_server_never_sees_the_first(world: World) -> None:
    note_id, other_id = seed(world)
    await pull(world)  # the first server's chat is stored and indexed
    first = {
        n.id
        for t in world.store.list_trees()
        if t.scope.startswith("discord:") and t.scope != "discord:999"
        for n in world.store.tree_nodes(t.id)
    }
    world.app.index_pending()
    outcome = make_offer(
        world.app,
        other_id,
        SamplingOptions(n=1, max_tokens=2),
        source_text="Where did the violin end up, near which well?",
    )
    retrieved = outcome.context.provenance["retrieved"]
    assert {r["scope"] for r in retrieved} <= {"discord:999"}, retrieved
    assert not first & {r["node_id"] for r in retrieved} and note_id not in {r["node_id"] for r in retrieved}
    # the twin: the first server's chat is findable by meaning from inside the first server
    inside = world.app.require_memory().search(
        "Where did the violin end up, near which well?",
        k=4,
        view=view_for(f"discord:{world.discord.guild.id}", {}),
    )
    assert first & {f.node_id for f in inside}
