"""Notes: watch folders of notes and offer continuations beside each note as it is saved.

Configured by ``[sources.notes]`` (:class:`~integrations.files.options.NotesOptions`).
"""

from integrations.files.source import NotesSource

SOURCE = NotesSource

__all__ = ["SOURCE", "NotesSource"]
