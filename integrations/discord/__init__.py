"""Discord: pull continuations of a conversation into a thread and pick one with a button."""

from integrations.discord.source import DiscordSource

SOURCE = DiscordSource

__all__ = ["SOURCE", "DiscordSource"]
