"""Message flows through dpytest: the prefix command, the thread, N continuations, listening, silence."""

from __future__ import annotations

import discord
import discord.ext.test as dpytest
import pytest
from discord.ext import commands
from discord.ext.test import backend

from ambient.tree import Status
from integrations.discord.branches import tree_source
from integrations.discord.limits import CONTINUED
from tests.integrations.discord.conftest import World


async def conversation(world: World, channel: str = "general") -> discord.TextChannel:
    general = world.discord.channel(channel)
    await world.discord.say("shall we plan the trip?", general, "Alice")
    await world.discord.say("yes, the mountains", general, "Bob")
    return general


async def test_prefix_command_opens_a_thread_and_posts_n_numbered_continuations(world: World) -> None:
    general = await conversation(world)
    await world.discord.say("!continue", general, "Carol")
    offers = world.offers()
    assert [s.content.split(" ", 1)[0] for s in offers] == ["**1.**", "**2.**", "**3.**"]
    thread = world.discord.thread(offers[0].channel_id)
    assert thread.parent_id == general.id
    assert all(s.channel_id == thread.id for s in world.discord.sent)  # nothing posted in the channel
    assert all(len(s.custom_ids) == 3 for s in offers)  # Pick, More like this, Branch
    assert [c.split(":")[1] for c in offers[0].custom_ids] == ["pick", "more", "branch"]
    prompt = world.sampler.prompts[-1]
    assert prompt == "Alice_0_nick: shall we plan the trip?\nBob_1_nick: yes, the mountains\n"
    assert "!continue" not in prompt  # the command is not part of the conversation


async def test_the_thread_hangs_below_the_message_it_was_opened_on(world: World) -> None:
    general = await conversation(world)
    await world.discord.say("!continue 2", general, "Carol")
    offers = world.offers()
    assert len(offers) == 2
    thread = world.discord.thread(offers[0].channel_id)
    bob = world.bot.trees.node_for_message(world.bot.place_of(general), thread.id)  # type: ignore[arg-type]
    assert bob is not None and world.store.get_node(bob).text == "Bob_1_nick: yes, the mountains\n"
    assert all(world.node(s).parent_id == bob for s in offers)
    tree = world.store.find_tree(tree_source(general.guild.id, general.id))
    assert tree is not None and world.node(offers[0]).tree_id == tree.id


async def test_replying_with_the_command_continues_from_that_message(world: World) -> None:
    general = await conversation(world)
    first = await world.discord.say("first idea: a lake", general, "Alice")
    await world.discord.say("second idea: a city", general, "Bob")
    await world.discord.reply("!continue 1", to=first, member="Carol")
    prompt = world.sampler.prompts[-1]
    assert prompt.endswith("Alice_0_nick: first idea: a lake\n") and "second idea" not in prompt
    (offer,) = world.offers()
    assert offer.channel_id == first.id  # the thread is opened on the message replied to


async def test_bad_arguments_get_the_usage_by_dm(world: World) -> None:
    general = await conversation(world)
    with pytest.raises(commands.BadArgument):
        await world.discord.say("!continue lots", general, "Carol")
    (usage,) = world.discord.dms_to("Carol")
    expected = "usage: `!continue [n] [temperature]`, e.g. `!continue 4 0.8`"
    assert usage == f"Your `!continue` in {general.mention}: {expected}"
    with pytest.raises(commands.TooManyArguments):
        await world.discord.say("!continue 2 0.5 please", general, "Carol")
    assert len(world.discord.dms_to("Carol")) == 2
    assert world.discord.sent == []  # nothing in the channel


async def test_too_many_continuations_are_refused_by_dm(world: World) -> None:
    general = await conversation(world)
    await world.discord.say("!continue 50", general, "Carol")
    assert "n must be between 1 and 6" in world.discord.dms_to("Carol")[-1]
    assert world.sampler.prompts == [] and world.discord.sent == []


async def test_listening_stores_every_message_and_never_posts(world: World) -> None:
    world.allow(listen_channels=("general",), channels=("general",))
    general = world.discord.channel("general")
    for i, who in enumerate(["Alice", "Bob", "Carol"] * 4):
        await world.discord.say(f"message {i}: continue? @everyone ambient, what next?", general, who)
    assert world.discord.sent == []  # the bot never posts anything nobody asked for
    assert world.sampler.prompts == []
    tree = world.store.find_tree(tree_source(general.guild.id, general.id))
    assert tree is not None
    nodes = world.store.tree_nodes(tree.id)[1:]
    assert len(nodes) == 12 and all(n.status == Status.PICKED and n.author.kind == "human" for n in nodes)
    assert nodes[-1].text.startswith("Carol_2_nick: message 11")


async def test_without_listening_nothing_is_stored(world: World) -> None:
    general = await conversation(world)
    assert world.store.list_trees() == []
    assert general is not None


async def test_silent_in_channels_that_are_not_allowed(world: World) -> None:
    world.allow(channels=("general",), listen_channels=("general",))
    random = world.discord.channel("random")
    await world.discord.say("anyone here?", random, "Alice")
    await world.discord.say("!continue", random, "Bob")
    await world.discord.say("!continue 99", random, "Bob")
    assert world.discord.sent == []
    assert world.sampler.prompts == [] and world.store.list_trees() == []


async def test_silent_in_servers_that_are_not_allowed(world: World) -> None:
    world.bot.options = world.bot.options.__class__(guilds=(1,))
    general = await conversation(world)
    await world.discord.say("!continue", general, "Bob")
    assert world.discord.sent == [] and world.store.list_trees() == []


async def test_role_is_required_for_the_prefix_command(world: World) -> None:
    world.allow(role="Thinkers")
    general = await conversation(world)
    await world.discord.say("!continue", general, "Bob")
    assert world.offers() == [] and world.discord.sent == []  # refused by DM, not in the channel
    assert (
        "you need the role 'Thinkers' to use ambient here: ask a moderator" in world.discord.dms_to("Bob")[-1]
    )
    role = backend.make_role("Thinkers", world.discord.guild)
    await dpytest.add_role(world.discord.member("Bob"), role)
    await world.discord.say("!continue", general, "Bob")
    assert len(world.offers()) == 3


async def test_long_continuations_are_split_with_a_marker(world: World) -> None:
    world.app.config = world.app.config.replace(sampling__max_tokens=400, sampling__n=1)
    general = await conversation(world)
    await world.discord.say("!continue", general, "Carol")
    posted = world.discord.sent
    assert len(posted) == 2
    assert all(len(s.content) <= 2000 for s in posted)
    assert posted[0].content.endswith(CONTINUED) and not posted[0].custom_ids
    assert posted[1].custom_ids  # the buttons come with the last part
    assert posted[0].content.startswith("**1.** b0w0")


async def test_listening_in_a_thread_stores_a_branch(world: World) -> None:
    world.allow(listen_channels=("general",), channels=("general",))
    general = await conversation(world)
    await world.discord.say("!continue 1", general, "Carol")
    thread = world.discord.thread(world.offers()[0].channel_id)
    await world.discord.say("in the thread now", thread, "Alice")
    await world.discord.say("and still here", thread, "Bob")
    await world.discord.say("meanwhile in the channel", general, "Carol")
    assert len(world.discord.sent) == 1  # only the continuation someone asked for
    tree = world.store.find_tree(tree_source(general.guild.id, general.id))
    assert tree is not None
    by_text = {n.text: n for n in world.store.tree_nodes(tree.id)}
    anchor = by_text["Bob_1_nick: yes, the mountains\n"]
    alice = by_text["Alice_0_nick: in the thread now\n"]
    assert alice.parent_id == anchor.id
    assert by_text["Bob_1_nick: and still here\n"].parent_id == alice.id
    assert by_text["Carol_2_nick: meanwhile in the channel\n"].parent_id == anchor.id  # the channel goes on
