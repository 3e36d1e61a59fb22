"""Slash command, context menu and buttons, through discord.py's own command tree and view store.

Only the Interaction at the edge is a stand-in: a real ``discord.Interaction``
parsed from a gateway payload, whose HTTP replies are recorded.
"""

from __future__ import annotations

import discord
from discord.ext.test import backend
from discord.ui.view import ViewStore

from ambient.tree import Action, Status
from integrations.discord.branches import ChannelTrees
from tests.integrations.discord.conftest import World
from tests.integrations.discord.harness import StandInInteraction


async def conversation(world: World) -> list[discord.Message]:
    general = world.discord.channel("general")
    return [
        await world.discord.say("what should the story be about?", general, "Alice"),
        await world.discord.say("a lighthouse keeper", general, "Bob"),
        await world.discord.say("who finds a letter", general, "Carol"),
    ]


def ephemeral_texts(interaction: StandInInteraction) -> list[str]:
    return [r.content or "" for r in interaction.replies if r.ephemeral and r.content]


async def test_slash_command_defers_then_posts_in_a_thread(world: World) -> None:
    await conversation(world)
    general = world.discord.channel("general")
    interaction = await world.discord.slash(general, "Bob", n=2, temperature=0.5)
    first = interaction.replies[0]
    assert first.kind == "defer" and first.ephemeral  # acknowledged before sampling
    assert first.at - interaction.created < 3.0
    offers = world.offers()
    assert len(offers) == 2
    thread = world.discord.thread(offers[0].channel_id)
    assert thread.id == general.last_message_id or thread.parent_id == general.id
    assert f"2 continuations in {thread.mention}" in ephemeral_texts(interaction)[-1]
    event = world.hub.events[-1]
    assert (event.overrides.n, event.overrides.temperature, event.debounce) == (2, 0.5, False)
    assert event.text is not None and event.text.endswith("Carol_2_nick: who finds a letter\n")


async def test_acknowledged_within_three_seconds_while_sampling_runs(world: World) -> None:
    world.sampler.delay = 0.05  # 5 tokens: sampling takes a quarter of a second
    await conversation(world)
    interaction = await world.discord.slash(world.discord.channel("general"), "Alice")
    defer, *rest = interaction.replies
    assert defer.kind == "defer" and defer.at - interaction.created < 0.1
    assert rest[-1].at - defer.at > 0.2  # the answer came after sampling, as a followup
    assert rest[-1].kind == "followup"


async def test_context_menu_continues_from_that_message(world: World) -> None:
    messages = await conversation(world)
    interaction = await world.discord.context_menu(messages[1], "Carol")
    assert interaction.replies[0].kind == "defer"
    offers = world.offers()
    assert len(offers) == 3 and {s.channel_id for s in offers} == {messages[1].id}  # thread on that message
    prompt = world.sampler.prompts[-1]
    assert prompt.endswith("Bob_1_nick: a lighthouse keeper\n") and "letter" not in prompt


async def test_pick_records_the_choice_and_posts_it_as_the_next_line(world: World) -> None:
    await conversation(world)
    await world.discord.slash(world.discord.channel("general"), "Alice")
    second = world.offers()[1]
    world.discord.sent.clear()
    interaction = await world.discord.click(second, "pick", "Bob")
    node = world.node(second)
    assert node.status == Status.PICKED
    picks = [a for a in world.store.actions(node.offer_id) if a["action"] == Action.PICK]
    assert picks[-1]["data"]["by"] == "Bob_1_nick" and picks[-1]["data"]["via"] == "discord"
    (line,) = world.discord.sent
    assert line.channel_id == second.channel_id and line.content == node.text.strip() and not line.custom_ids
    assert "Picked" in ephemeral_texts(interaction)[-1]
    again = await world.discord.click(second, "pick", "Carol")
    assert "already picked" in ephemeral_texts(again)[-1]
    assert len(world.discord.sent) == 1


async def test_continue_in_the_thread_goes_on_from_the_picked_node(world: World) -> None:
    await conversation(world)
    await world.discord.slash(world.discord.channel("general"), "Alice")
    picked = world.offers()[0]
    await world.discord.click(picked, "pick", "Bob")
    thread = world.discord.thread(picked.channel_id)
    await world.discord.slash(thread, "Carol", n=2)
    newest = world.offers()[-2:]
    assert all(world.node(s).parent_id == world.node(picked).id for s in newest)
    assert world.sampler.prompts[-1].endswith(world.node(picked).text + "\n")
    await world.discord.say("I like where this goes", thread, "Alice")  # a person in the thread
    await world.discord.say("!continue 1", thread, "Bob")
    human = world.store.get_node(world.node(world.offers()[-1]).parent_id or "")
    assert human.text == "Alice_0_nick: I like where this goes\n"
    assert human.parent_id == world.node(picked).id


async def test_more_like_this_samples_again_from_the_same_point(world: World) -> None:
    await conversation(world)
    await world.discord.slash(world.discord.channel("general"), "Alice", n=2)
    first = world.offers()[0]
    interaction = await world.discord.click(first, "more", "Carol")
    newest = world.offers()[2:]
    assert len(newest) == 2  # same n as the offer it came from
    assert {world.node(s).parent_id for s in newest} == {world.node(first).parent_id}
    assert world.node(newest[0]).offer_id != world.node(first).offer_id
    assert Action.REGENERATE in [a["action"] for a in world.store.actions(world.node(first).offer_id)]
    assert "more continuations" in ephemeral_texts(interaction)[-1]


async def test_branch_continues_from_this_one(world: World) -> None:
    await conversation(world)
    await world.discord.slash(world.discord.channel("general"), "Alice", n=2)
    first = world.offers()[0]
    await world.discord.click(first, "branch", "Carol")
    newest = world.offers()[2:]
    assert {world.node(s).parent_id for s in newest} == {world.node(first).id}
    assert world.sampler.prompts[-1].endswith(world.node(first).text)  # goes on mid-text
    assert world.node(first).status == Status.OFFERED  # branching is not picking
    await world.discord.click(newest[1], "pick", "Alice")
    assert world.discord.sent[-1].content == (world.node(first).text + world.node(newest[1]).text).strip()


async def test_threads_are_branches_of_the_channels_tree(world: World) -> None:
    messages = await conversation(world)
    await world.discord.context_menu(messages[0], "Alice")
    await world.discord.context_menu(messages[2], "Bob")
    trees = world.store.list_trees()
    assert len(trees) == 1  # one tree per channel
    first, second = world.offers()[0], world.offers()[3]
    assert world.node(first).tree_id == world.node(second).tree_id == trees[0].id
    path = [n.text for n in world.store.ancestry(world.node(second).id)]
    assert path[1:4] == [
        "Alice_0_nick: what should the story be about?\n",
        "Bob_1_nick: a lighthouse keeper\n",
        "Carol_2_nick: who finds a letter\n",
    ]


async def test_buttons_work_after_a_restart(world: World) -> None:
    await conversation(world)
    await world.discord.slash(world.discord.channel("general"), "Alice")
    old = world.offers()[2]
    state = world.discord.state
    state._view_store = ViewStore(state)  # the view store of a fresh process: nothing in memory
    world.bot.trees = ChannelTrees(lambda: world.app.store)
    await world.bot.setup_hook()  # registers the buttons by pattern, as at every start
    await world.discord.click(old, "pick", "Bob")
    assert world.node(old).status == Status.PICKED
    assert world.discord.sent[-1].content == world.node(old).text.strip()


async def test_refusals_are_ephemeral_and_name_the_reason(world: World) -> None:
    world.allow(channels=("general",), role="Thinkers")
    await conversation(world)
    general, random = world.discord.channel("general"), world.discord.channel("random")
    denied = await world.discord.slash(random, "Alice")
    assert ephemeral_texts(denied) == ["ambient is not enabled in this channel."]
    no_role = await world.discord.slash(general, "Alice")
    assert ephemeral_texts(no_role) == [
        "you need the role 'Thinkers' to use ambient here: ask a moderator for it."
    ]
    assert world.discord.sent == [] and world.sampler.prompts == []
    role = backend.make_role("Thinkers", world.discord.guild)
    backend.update_member(world.discord.member("Alice"), roles=[role])
    allowed = await world.discord.slash(general, "Alice")
    assert allowed.replies[0].kind == "defer" and len(world.offers()) == 3
    backend.update_member(world.discord.member("Alice"), roles=[])
    click = await world.discord.click(world.offers()[0], "pick", "Alice")
    assert ephemeral_texts(click) == [
        "you need the role 'Thinkers' to use ambient here: ask a moderator for it."
    ]
    assert world.node(world.offers()[0]).status == Status.OFFERED


async def test_missing_permission_to_create_threads(world: World) -> None:
    await conversation(world)
    general = world.discord.channel("general")
    await world.discord.deny_bot(general, create_public_threads=False)
    interaction = await world.discord.slash(general, "Alice")
    (text,) = ephemeral_texts(interaction)
    assert "'Create Public Threads' permission" in text and general.mention in text
    assert world.discord.sent == [] and world.sampler.prompts == []
    await world.discord.say("!continue", general, "Bob")  # the prefix command says it too, by DM
    assert "'Create Public Threads' permission" in world.discord.dms_to("Bob")[-1]
    assert world.discord.sent == []


async def test_missing_permission_to_read_history(world: World) -> None:
    await conversation(world)
    general = world.discord.channel("general")
    await world.discord.deny_bot(general, read_message_history=False)
    interaction = await world.discord.slash(general, "Alice")
    (text,) = ephemeral_texts(interaction)
    assert "'Read Message History' permission" in text
    assert world.discord.sent == []


async def test_thread_already_opened_on_the_message_is_reused(world: World) -> None:
    messages = await conversation(world)
    await world.discord.context_menu(messages[1], "Alice")
    await world.discord.context_menu(messages[1], "Bob")
    assert {s.channel_id for s in world.offers()} == {messages[1].id}
    assert len(world.offers()) == 6


async def test_commands_are_registered_in_each_allowed_server(world: World) -> None:
    registered: dict[int, list[dict[str, object]]] = {}

    async def bulk_upsert_guild_commands(
        application_id: int, guild_id: int, payload: list[dict[str, object]]
    ):  # type: ignore[no-untyped-def]
        registered[int(guild_id)] = payload
        return []

    world.bot.tree._http.bulk_upsert_guild_commands = bulk_upsert_guild_commands  # the HTTP edge of the tree
    world.discord.state.application_id = world.bot.user.id
    await world.bot.sync_commands()
    (commands,) = registered.values()
    by_name = {c["name"]: c for c in commands}
    assert by_name["continue"]["type"] == 1 and by_name["Continue from here"]["type"] == 3
    options = {o["name"]: o for o in by_name["continue"]["options"]}  # type: ignore[attr-defined, union-attr]
    assert options["n"]["max_value"] == 10 and options["temperature"]["type"] == 10
