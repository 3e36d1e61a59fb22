"""What the memory index holds for one node: a document that stands on its own, a vector, metadata.

A node's own text is often a fragment of a sentence (a continuation starts
mid-line), so the **document** stored for it is a short lead (the last
``LEAD_CHARS`` characters of its ancestry, cut at a word boundary) followed by
the node's own text (its first ``MAX_TEXT_CHARS`` characters)::

    document = lead + text           metadata["lead_chars"] = len(lead)

Search returns the node's own text as :attr:`Fragment.text` and the lead as
:attr:`Fragment.lead`, so a result can be read (and put in a prompt) in context.

The **vector** is the embedding of the node's own text; only a node shorter
than ``EMBED_LEAD_BELOW`` characters (a word or two, like `` filters.``) gets
up to ``EMBED_LEAD_CHARS`` of its lead embedded with it. Measured on the Loom
demo tree with paraphrased queries (each naming what one node says in other
words), embedding a 240-character lead with every node put 6 of 10 targets in
the top 5; embedding the node's text alone put 8 of 10 there (9 of 13 with
three short-node queries added), and embedding took a half to a third of the time.

Three hashes decide what a sync does: ``hash`` (embedder, format, embedded
text) changed: embed again; ``doc_hash`` (the stored document) changed: store
the new document with the old vector; only other metadata (status, times)
changed: update the metadata. ``text_hash`` (the node's own text) changing
means the descendants' leads must be rebuilt too.

The metadata carries the tree's ``scope`` and ``wall`` (:mod:`ambient.scopes`), so
retrieval can keep each place's material inside its walls with a plain filter.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from typing import Any

from ambient.scopes import wall_of
from ambient.store import TreeStore
from ambient.tree import Node, Tree

LEAD_CHARS = 240
MAX_TEXT_CHARS = 4000
EMBED_LEAD_BELOW = 40
EMBED_LEAD_CHARS = 120
DOC_VERSION = 2  # bump when the document layout changes: every hash changes with it
# Bump when only the metadata changes (e.g. scopes were added): the next sync compares every entry
# and rewrites metadata, without embedding anything again.
METADATA_VERSION = 2
_CACHE_LIMIT = 200_000


@dataclasses.dataclass(frozen=True)
class Doc:
    id: str
    document: str
    embed_text: str
    metadata: dict[str, Any]

    @property
    def hash(self) -> str:
        return str(self.metadata["hash"])

    @property
    def doc_hash(self) -> str:
        return str(self.metadata["doc_hash"])

    @property
    def text_hash(self) -> str:
        return str(self.metadata["text_hash"])


def digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:24]


class DocBuilder:
    """Builds :class:`Doc` objects, caching the tails of ancestors and the trees.

    One builder lives for one sync; it reads the store only for parents it has
    not seen yet.
    """

    def __init__(self, store: TreeStore, embedder_identity: str) -> None:
        self.store = store
        self.identity = embedder_identity
        self._tails: dict[str, tuple[str | None, str]] = {}
        self._trees: dict[str, Tree] = {}

    def remember(self, nodes: Iterable[Node]) -> None:
        if len(self._tails) > _CACHE_LIMIT:
            self._tails.clear()
        for n in nodes:
            self._tails[n.id] = (n.parent_id, n.text[-LEAD_CHARS:])

    def build(self, node: Node) -> Doc:
        lead = self.lead(node.parent_id)
        text = node.text[:MAX_TEXT_CHARS]
        embed_text = text
        if len(text.strip()) < EMBED_LEAD_BELOW:
            embed_text = (
                _from_word(lead[-EMBED_LEAD_CHARS:]) + text if len(lead) > EMBED_LEAD_CHARS else lead + text
            )
        metadata: dict[str, Any] = {
            "tree_id": node.tree_id,
            "node_id": node.id,
            "parent_id": node.parent_id or "",
            "status": str(node.status),
            "author": node.author.kind,
            "author_name": node.author.name,
            "source": self.tree(node.tree_id).source,
            "scope": self.tree(node.tree_id).scope,
            "wall": wall_of(self.tree(node.tree_id).scope),
            "created_at": node.created_at,
            "updated_at": node.updated_at,
            "lead_chars": len(lead),
            "text_hash": digest(node.text),
            "doc_hash": digest(lead, text),
            "hash": digest(self.identity, str(DOC_VERSION), embed_text),
        }
        return Doc(node.id, lead + text, embed_text, metadata)

    def lead(self, parent_id: str | None) -> str:
        """The last ``LEAD_CHARS`` characters of the text from the root down to ``parent_id``."""
        pieces: list[str] = []
        size = 0
        current = parent_id
        while current is not None and size < LEAD_CHARS:
            parent, tail = self._tail(current)
            pieces.append(tail)
            size += len(tail)
            current = parent
        joined = "".join(reversed(pieces))
        if len(joined) <= LEAD_CHARS:
            return joined
        return _from_word(joined[-LEAD_CHARS:])

    def _tail(self, node_id: str) -> tuple[str | None, str]:
        found = self._tails.get(node_id)
        if found is None:
            node = self.store.get_node(node_id)
            found = (node.parent_id, node.text[-LEAD_CHARS:])
            self._tails[node_id] = found
        return found

    def tree(self, tree_id: str) -> Tree:
        found = self._trees.get(tree_id)
        if found is None:
            found = self._trees[tree_id] = self.store.get_tree(tree_id)
        return found


def _from_word(text: str) -> str:
    """Drop a leading partial word (up to 30 characters) so a lead never starts mid-word."""
    for i, ch in enumerate(text[:30]):
        if ch.isspace():
            return text[i + 1 :]
    return text


def descendants(store: TreeStore, node_ids: Iterable[str]) -> list[Node]:
    """Every node below the given ones (their leads may include the text that changed)."""
    wanted = set(node_ids)
    trees = {store.get_node(i).tree_id for i in wanted}
    found: list[Node] = []
    for tree_id in trees:
        children: dict[str, list[Node]] = {}
        for n in store.tree_nodes(tree_id):
            if n.parent_id is not None:
                children.setdefault(n.parent_id, []).append(n)
        seen = set(wanted)
        stack = list(wanted)
        while stack:
            for child in children.get(stack.pop(), []):
                if child.id not in seen:
                    seen.add(child.id)
                    found.append(child)
                    stack.append(child.id)
    return found
