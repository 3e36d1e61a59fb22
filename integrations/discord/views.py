"""The buttons under each continuation: Pick, More like this, Branch.

Each button's ``custom_id`` carries the node id (``ambient:pick:<node>``), so
a click is understood even after a restart: the buttons are discord.py
*dynamic items*, registered once in the bot's ``setup_hook`` and matched by
pattern, with no state kept in memory.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

if TYPE_CHECKING:
    from integrations.discord.bot import AmbientBot

PICK = "pick"
MORE = "more"
BRANCH = "branch"
_NODE = r"(?P<node>[0-9a-f]{32})"


def custom_id(action: str, node_id: str) -> str:
    return f"ambient:{action}:{node_id}"


def _button(action: str, node_id: str, label: str, style: discord.ButtonStyle) -> discord.ui.Button[Any]:
    return discord.ui.Button(label=label, style=style, custom_id=custom_id(action, node_id))


async def _clicked(action: str, interaction: discord.Interaction[Any], node_id: str) -> None:
    bot: AmbientBot = interaction.client
    await bot.on_button(action, interaction, node_id)


class PickButton(  # type: ignore[call-arg]  # discord.py is skipped by mypy
    discord.ui.DynamicItem[discord.ui.Button[Any]],  # type: ignore[misc]
    template=re.compile(f"ambient:{PICK}:{_NODE}"),
):
    def __init__(self, node_id: str) -> None:
        super().__init__(_button(PICK, node_id, "Pick", discord.ButtonStyle.success))
        self.node_id = node_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> PickButton:
        return cls(match["node"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _clicked(PICK, interaction, self.node_id)


class MoreButton(  # type: ignore[call-arg]  # discord.py is skipped by mypy
    discord.ui.DynamicItem[discord.ui.Button[Any]],  # type: ignore[misc]
    template=re.compile(f"ambient:{MORE}:{_NODE}"),
):
    def __init__(self, node_id: str) -> None:
        super().__init__(_button(MORE, node_id, "More like this", discord.ButtonStyle.secondary))
        self.node_id = node_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> MoreButton:
        return cls(match["node"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _clicked(MORE, interaction, self.node_id)


class BranchButton(  # type: ignore[call-arg]  # discord.py is skipped by mypy
    discord.ui.DynamicItem[discord.ui.Button[Any]],  # type: ignore[misc]
    template=re.compile(f"ambient:{BRANCH}:{_NODE}"),
):
    def __init__(self, node_id: str) -> None:
        super().__init__(_button(BRANCH, node_id, "Branch", discord.ButtonStyle.primary))
        self.node_id = node_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> BranchButton:
        return cls(match["node"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _clicked(BRANCH, interaction, self.node_id)


BUTTONS = (PickButton, MoreButton, BranchButton)


def offer_view(node_id: str) -> discord.ui.View:
    """The three buttons for one continuation (a persistent view: no timeout)."""
    view = discord.ui.View(timeout=None)
    view.add_item(PickButton(node_id))
    view.add_item(MoreButton(node_id))
    view.add_item(BranchButton(node_id))
    return view
