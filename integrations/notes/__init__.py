"""Notes: watch folders of notes and offer continuations beside each note as it is saved.

Configured by ``[sources.notes]`` (:class:`~integrations.notes.options.NotesOptions`).
"""
