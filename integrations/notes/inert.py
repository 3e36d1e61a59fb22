"""Text made inert in Markdown: shown verbatim in a previewer, never a live link, image or HTML.

A sidecar is read in Markdown previewers (Obsidian, VS Code, a forge's file
view), and model text there could hold ``![x](https://tracker/pixel)`` (an image
fetched as soon as the preview opens), ``[click](https://...)``,
``<https://...>``, a bare URL that a previewer turns into a link, or raw HTML
(``<img onerror=...>``, ``<iframe>``, ``<a href>``). So every text that comes
from the model, a note or a file name goes into a code block or a code span:
CommonMark shows their content literally (no link, image, autolink, HTML,
emphasis or escape is recognised inside), and linkifiers leave code alone.
The fence is longer than any run of backticks in the text, so the text cannot
close it early.
"""

from __future__ import annotations

import re

_BACKTICKS = re.compile(r"`+")
_LINE_END = re.compile(r"\r\n|\r|\n")
NEWLINE_MARK = " ⏎ "


def _fence(text: str, least: int) -> str:
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    return "`" * max(least, longest + 1)


def code_block(text: str) -> list[str]:
    """The lines of a fenced code block showing ``text`` verbatim."""
    fence = _fence(text, 3)
    return [fence, *_LINE_END.split(text), fence]


def code_span(text: str) -> str:
    """An inline code span showing ``text`` on one line (line endings shown as ⏎)."""
    flat = _LINE_END.sub(NEWLINE_MARK, text)
    fence = _fence(flat, 1)
    return f"{fence} {flat} {fence}"  # CommonMark takes off one space on each side
