"""Bad input: empty and attachment-only messages, deletions, long histories, rate limits, lost connections."""

from __future__ import annotations

import json

import discord

from ambient.tree import Status
from integrations.discord.branches import tree_source
from tests.integrations.discord.conftest import World


def lines_of(world: World, channel: discord.TextChannel) -> list[str]:
    tree = world.store.find_tree(tree_source(channel.guild.id, channel.id))
    nodes = [] if tree is None else world.store.tree_nodes(tree.id)[1:]
    return [n.text for n in nodes if n.author.kind == "human"]


async def test_attachments_and_embeds_without_text_are_kept_as_markers(world: World) -> None:
    world.allow(listen_channels=("general",), channels=("general",))
    general = world.discord.channel("general")
    await world.discord.say("", general, "Alice", attachments=["/tmp/holiday.png"])
    await world.discord.say_embed(general, "Bob", "Weather in Oslo")
    await world.discord.say("   ", general, "Carol")  # nothing to say: not a line
    assert lines_of(world, general) == [
        "Alice_0_nick: [attachment: holiday.png]\n",
        "Bob_1_nick: [embed: Weather in Oslo]\n",
    ]
    assert world.discord.sent == []


async def test_deleted_messages_leave_the_context(world: World) -> None:
    world.allow(listen_channels=("general",), channels=("general",))
    general = world.discord.channel("general")
    await world.discord.say("keep this", general, "Alice")
    regret = await world.discord.say("my password is hunter2", general, "Bob")
    await world.discord.say("and this", general, "Carol")
    await world.discord.delete(regret)
    await world.discord.say("!continue 1", general, "Alice")
    prompt = world.sampler.prompts[-1]
    assert "hunter2" not in prompt and prompt.startswith("Alice_0_nick: keep this\n")
    assert len(world.hub.forgotten) == 1  # forgotten, not only hidden: the text is nowhere in the store
    assert not any("hunter2" in n.text for n in world.store.iter_nodes())
    assert not any("hunter2" in json.dumps(a) for a in world.store.actions())


async def test_edited_messages_are_followed_and_the_old_text_kept(world: World) -> None:
    world.allow(listen_channels=("general",), channels=("general",))
    general = world.discord.channel("general")
    await world.discord.say("the meeting is on Tuesday", general, "Alice")
    typo = await world.discord.say("bring the mpas", general, "Bob")
    await world.discord.edit(typo, "bring the maps")
    await world.discord.say("!continue 1", general, "Carol")
    prompt = world.sampler.prompts[-1]
    assert "bring the maps" in prompt and "mpas" not in prompt
    [tree] = world.store.list_trees()
    [node] = [n for n in world.store.tree_nodes(tree.id) if "maps" in n.text]
    assert [r.text for r in world.store.revisions(node.id)] == ["Bob_1_nick: bring the mpas\n"]


async def test_menu_on_a_message_deleted_meanwhile(world: World) -> None:
    general = world.discord.channel("general")
    await world.discord.say("something", general, "Alice")
    gone = await world.discord.say("soon gone", general, "Bob")
    raw = world.discord.raw_message(general.id, gone.id)
    await world.discord.delete(gone)
    payload = world.discord._payload(
        2,
        general,
        "Carol",
        {
            "id": "2",
            "name": "Continue from here",
            "type": 3,
            "guild_id": str(general.guild.id),
            "target_id": str(gone.id),
            "resolved": {"messages": {str(gone.id): raw}},
        },
    )
    interaction = await world.discord._dispatch(payload)
    assert "deleted" in (interaction.replies[-1].content or "")
    assert world.discord.sent == [] and world.sampler.prompts == []
    assert world.store.list_trees() == []  # nothing stored for a message that is gone


async def test_a_very_long_history_is_cut_to_the_window(world: World) -> None:
    world.allow(history_window=30)
    general = world.discord.channel("general")
    for i in range(300):
        await world.discord.say(f"line {i}", general, ("Alice", "Bob")[i % 2])
    await world.discord.say("!continue 1", general, "Carol")
    prompt = world.sampler.prompts[-1]
    assert prompt.count("\n") == 30
    assert prompt.startswith("Alice_0_nick: line 270\n") and prompt.endswith("Bob_1_nick: line 299\n")
    assert len(lines_of(world, general)) == 30  # only the window was stored


async def test_a_rate_limit_that_lasts_is_told_and_leaves_no_half_pull(world: World) -> None:
    """discord.py raises RateLimited (a wait over 30 s) on the 2nd continuation: the 1st is taken back."""
    general = world.discord.channel("general")
    await world.discord.say("hello", general, "Alice")
    world.discord.rate_limit_next(retry_after=36.2, after=1)
    interaction = await world.discord.slash(general, "Bob")
    assert interaction.texts()[-1] == "Discord is rate-limiting this bot for 37 s: try again then."
    assert interaction.replies[-1].ephemeral
    assert len(world.offers()) == 1  # the first continuation was posted...
    assert not any(world.discord.still_posted(s) for s in world.discord.sent)  # ...and deleted again
    again = await world.discord.slash(world.discord.thread(world.offers()[0].channel_id), "Bob")
    assert "3 continuations" in again.texts()[-1]  # later, in the same thread, a pull goes through


async def test_a_prefix_pull_under_a_lasting_limit_is_told_by_direct_message(world: World) -> None:
    general = world.discord.channel("general")
    await world.discord.say("hello", general, "Alice")
    world.discord.rate_limit_next(retry_after=45.0)
    await world.discord.say("!continue", general, "Bob")
    assert world.discord.dms_to("Bob") == [
        f"Your `!continue` in {general.mention}: Discord is rate-limiting this bot for 45 s: try again then."
    ]
    assert world.offers() == []


async def test_a_pick_under_a_lasting_limit_stays_stored_and_posts_once_later(world: World) -> None:
    general = world.discord.channel("general")
    await world.discord.say("hello", general, "Alice")
    await world.discord.slash(general, "Bob")
    first = world.offers()[0]
    world.discord.rate_limit_next(retry_after=40.0)
    failed = await world.discord.click(first, "pick", "Bob")
    assert failed.texts()[-1] == (
        "Picked and saved, but Discord is rate-limiting this bot for 40 s: press Pick again then."
    )
    assert world.node(first).status == Status.PICKED
    posted = len(world.discord.sent)
    again = await world.discord.click(first, "pick", "Bob")
    assert "Picked" in again.texts()[-1]
    assert [s.content for s in world.discord.sent[posted:]] == [world.node(first).text.strip()]


async def test_a_lost_connection_never_loses_a_pick(world: World) -> None:
    general = world.discord.channel("general")
    await world.discord.say("hello", general, "Alice")
    await world.discord.slash(general, "Bob")
    first, second = world.offers()[:2]
    world.discord.send_failures.append(ConnectionResetError("gateway gone"))  # posting the pick fails
    failed = await world.discord.click(first, "pick", "Bob")
    assert "Picked and saved" in (failed.replies[-1].content or "")
    assert world.node(first).status == Status.PICKED  # stored before anything was posted
    await world.discord.drop_gateway()
    await world.bot.hub.idle()
    assert world.bot.disconnects == 1
    assert world.node(first).status == Status.PICKED
    again = await world.discord.click(first, "pick", "Bob")  # after the reconnect: posted now
    assert "Picked" in (again.replies[-1].content or "")
    assert world.discord.sent[-1].content == world.node(first).text.strip()
    await world.discord.click(second, "pick", "Carol")
    assert world.node(second).status == Status.PICKED


async def test_a_failing_model_is_reported_not_fatal(world: World) -> None:
    world.sampler.fail_after = 1
    general = world.discord.channel("general")
    await world.discord.say("hello", general, "Alice")
    interaction = await world.discord.slash(general, "Bob")
    assert "Something went wrong (RuntimeError)" in (interaction.replies[-1].content or "")
    world.sampler.fail_after = None
    interaction = await world.discord.slash(world.discord.thread(general.last_message_id or 0), "Bob")
    assert len(world.offers()) == 3


async def test_model_text_never_pings_anyone(world: World) -> None:
    general = world.discord.channel("general")
    await world.discord.say("@everyone look", general, "Alice")
    await world.discord.slash(general, "Bob")
    await world.discord.click(world.offers()[0], "pick", "Bob")
    assert world.discord.sent
    assert all(s.allowed_mentions == {"parse": []} for s in world.discord.sent)


async def test_nothing_to_continue(world: World) -> None:
    interaction = await world.discord.slash(world.discord.channel("general"), "Alice")
    assert "nothing to continue" in (interaction.replies[-1].content or "")
