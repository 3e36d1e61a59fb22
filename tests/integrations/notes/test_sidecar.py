"""Sidecars render model text inert: hostile continuations, note text and file names stay verbatim
text in a Markdown previewer (rendered here by markdown-it-py, CommonMark with raw HTML on)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from ambient.store import TreeStore
from ambient.tree import MODEL, Author, NewBranch
from integrations.notes import sidecar
from integrations.notes.history import NoteHistory
from integrations.notes.inert import code_block, code_span

HOSTILE = [
    "![pixel](https://tracker.example/p.png?who=you) and [click me](https://evil.example/phish)",
    "<img src=x onerror=alert(1)><script>alert(2)</script>\n<iframe src='https://evil.example/frame'></iframe>",
    "See <https://evil.example/auto>, www.evil.example and https://evil.example/bare, mail me@evil.example",
    "```\nout of the fence?\n```\n# A heading\n[ref]: https://evil.example/ref\n"
    "[x][ref] <a href=//evil.example>a</a>",
    "`` ` ```` backticks `\n\n<div>after a blank line</div>\n\n    indented <b>code</b>",
    "\r\n<details open>carriage returns</details>\r![cr](https://evil.example/cr.png)",
]
SAFE_TAGS = {"h1", "h2", "p", "blockquote", "pre", "code", "em"}


class Rendered(HTMLParser):
    """Tags and text of the rendered HTML outside <code> elements, and the text inside them."""

    def __init__(self, body: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.outside = ""
        self.codes: list[str] = []
        self._depth = 0
        self.feed(body)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._depth:
            raise AssertionError(f"a live <{tag}> inside code")
        self.tags.add(tag)
        if tag == "code":
            self._depth += 1
            self.codes.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "code":
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.codes[-1] += data
        else:
            self.outside += data


def render(markdown: str) -> Rendered:
    return Rendered(MarkdownIt("commonmark").render(markdown))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TreeStore]:
    with TreeStore(tmp_path / "t.sqlite3") as s:
        yield s


def test_hostile_model_text_is_shown_verbatim_and_nothing_is_live(store: TreeStore, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    note = folder / "<img src=x onerror=alert(3)> [n](javascript:alert(4)).md"
    note.write_text("My plans [see](https://evil.example/tail) <b>bold</b>\n\nNext")
    where = sidecar.sidecar_path(tmp_path / "home", folder, note)
    rec = NoteHistory(store).record(str(note), note.read_text(), offer=True, sidecar=str(where))
    assert rec.point_node is not None
    store.add_offer(rec.point_node.id, [NewBranch(t) for t in HOSTILE], author=Author(MODEL, "m"))
    path = sidecar.rewrite(store, store.get_tree(rec.tree.id))
    assert path == where and os.stat(where).st_mode & 0o777 == 0o600
    assert all(os.stat(p).st_mode & 0o777 == 0o700 for p in (where.parent, where.parent.parent))

    page = render(where.read_text())
    assert page.tags <= SAFE_TAGS, page.tags - SAFE_TAGS  # no <a>, <img>, <script>, <iframe>, <div>...
    for word in ("http", "www.", "evil", "javascript", "onerror", "@"):
        assert word not in page.outside, word  # nothing a linkifier could pick up outside code
    for text in HOSTILE:
        shown = text.replace("\r\n", "\n").replace("\r", "\n") + "\n"  # Markdown's line endings
        assert shown in page.codes  # each one whole, verbatim, in a block of its own
    assert any(note.name in code for code in page.codes)
    assert any("[see](https://evil.example/tail) <b>bold</b>" in code for code in page.codes)


@pytest.mark.parametrize("text", ["", "plain", "`", "``x``", " `edge` ", "a\nb", "```", "~~~\n```\n````"])
def test_code_spans_and_blocks_round_trip(text: str) -> None:
    span = render(f"before {code_span(text)} after")
    flat = text.replace("\n", " ⏎ ")
    assert span.tags == {"p", "code"} and span.codes == [flat if flat.strip() else f" {flat} "]
    block = render("\n".join(code_block(text)) + "\n")
    assert block.tags == {"pre", "code"} and block.codes == [text + "\n"]
