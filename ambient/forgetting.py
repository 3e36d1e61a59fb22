"""Forgetting, across everything ambient keeps: the store, the memory index, and places' derived files.

``forget`` removes a node (spliced out of its tree), a subtree, whole trees, or
a whole place (its trees: by source, or by scope such as ``discord:<server>``)
from the store, with their revisions and pick-log rows; then from the memory
index, rebuilding the entries that began with the forgotten text. Each place
then removes what it derived (:meth:`ambient.sources.Source.forgotten`, e.g. the
notes place's sidecars): the caller passes the places in. Nothing that was
forgotten can be found, retrieved or exported afterwards. There is no tuning
data yet to forget; when there is, it goes here too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from ambient.app import App
from ambient.errors import InvalidInput, NotFound
from ambient.store import Forgotten
from ambient.tree import Tree

# A place's clean-up: told what was forgotten (and the removed trees as they were), says what it removed.
PlaceCleanup = Callable[[App, Forgotten, Sequence[Tree]], list[str]]


@dataclasses.dataclass(frozen=True)
class Target:
    """What to forget: exactly one of a node (alone or with its subtree), trees, or a place."""

    node_id: str | None = None
    subtree: bool = False
    tree_ids: tuple[str, ...] = ()
    place: str | None = None

    def check(self) -> Target:
        given = [self.node_id is not None, bool(self.tree_ids), self.place is not None]
        if sum(given) != 1:
            raise InvalidInput("say what to forget: a node, --tree TREE, or --place PLACE (one of them)")
        if self.subtree and self.node_id is None:
            raise InvalidInput("--subtree goes with a node: ambient forget NODE --subtree")
        return self


@dataclasses.dataclass
class Report:
    forgotten: Forgotten
    index_entries: int
    index: str  # "updated", or why it was not
    places: list[str]

    def as_dict(self) -> dict[str, Any]:
        """What was removed, as data (the CLI's --json and the API's answer)."""
        f = self.forgotten
        return {
            "node_ids": f.node_ids,
            "tree_ids": f.tree_ids,
            "moved_ids": f.moved_ids,
            "offers": f.offers,
            "revisions": f.revisions,
            "actions": f.actions,
            "index_entries": self.index_entries,
            "lines": self.lines(),
        }

    def lines(self) -> list[str]:
        f = self.forgotten
        lines = [
            f"forgot {len(f.node_ids)} node(s)"
            + (f" in {len(f.tree_ids)} whole tree(s)" if f.tree_ids else "")
            + (f"; {len(f.moved_ids)} node(s) below moved up to the parent" if f.moved_ids else ""),
            f"store: {f.offers} offer(s), {f.revisions} earlier text(s), {f.actions} pick-log row(s) removed",
            f"memory index: {self.index_entries} entries removed ({self.index})",
        ]
        return lines + self.places


def forget(app: App, target: Target, cleanups: Sequence[PlaceCleanup] = ()) -> Report:
    """Blocking: forget ``target`` everywhere; returns what was removed."""
    store = app.store
    target.check()
    if target.node_id is not None:
        removed_trees: list[Tree] = []
        done = store.forget_node(target.node_id, subtree=target.subtree)
    else:
        tree_ids = list(target.tree_ids) or store.trees_of_place(target.place or "")
        if not tree_ids:
            raise NotFound(
                f"no trees of the place {target.place!r}: write it as trees name their source "
                "(note:PATH, discord:SERVER/CHANNEL, speech:SESSION) or as a scope (notes, discord:SERVER); "
                "`ambient trees` lists them"
            )
        removed_trees = [store.get_tree(t) for t in tree_ids]
        done = store.forget_trees(tree_ids)
    entries, index = _forget_in_memory(app, done)
    places = [line for cleanup in cleanups for line in cleanup(app, done, removed_trees)]
    return Report(done, entries, index, places)


def _forget_in_memory(app: App, done: Forgotten) -> tuple[int, str]:
    if not app.config.memory.enabled:
        return 0, "memory is off"
    memory = app.memory
    if memory is None:  # the full pass of the next sync drops the entries of nodes that are gone
        return 0, f"not reachable now ({app.memory_warning}); `ambient reindex` removes them"
    return memory.forget(app.store, done.node_ids, done.moved_ids), "updated"
