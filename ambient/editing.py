"""A person's edit of a node: the domain rule, shared by the API and anything else that edits.

Model text is never overwritten: editing a model's continuation adds the new
text as a person's node beside it (recorded as an edit, and picked). A
person's own node (or a root) is revised in place, its earlier text kept as a
revision.
"""

from __future__ import annotations

from ambient.app import App
from ambient.tree import HUMAN, Action, Author, Node


def edit_node(app: App, node_id: str, text: str) -> tuple[Node, bool, str]:
    """Apply a person's edit; returns ``(node now holding the text, whether it is new, the edited id)``."""
    store = app.store
    node = store.get_node(node_id)
    if not node.author.is_model or node.parent_id is None:
        return store.edit(node_id, text), False, node_id
    if text == node.text:
        return node, False, node_id
    new = store.add_node(node.parent_id, text, author=Author(HUMAN), meta={"edited_from": node.id})
    store.record(Action.EDIT, node.id, {"new_node_id": new.id, "before": node.text, "after": text})
    return store.pick(new.id, {"edited_from": node.id, "via": "ui"}), True, node_id
