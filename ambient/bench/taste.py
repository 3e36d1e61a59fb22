"""A simulated person with a hidden taste, for tuning's test data and ``ambient bench tune``.

The rule (the person's taste, never shown to the model): **they like continuations that name
concrete, everyday objects** from :data:`OBJECTS`. A continuation's score is how many words of it
name one (a plural counts too). Shown an offer, the person picks the one continuation with the
highest score when it is the only one with that score and the score is at least 1; otherwise they
pick nothing (the offer stays ignored and gives no preference pairs).

``tests/data/make_picks.py`` applies the rule to offers the real default model made from the
Loom fixture's texts, and the benchmark measures how often a model's offers satisfy it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_OBJECT_WORDS = """
    apple bag basket bed bell belt blanket boat book boot bottle bowl box bread bridge brush bucket
    button cake candle cap car card carpet chair chest clock cloak coat coin comb cup curtain desk
    door drawer drum envelope fork glass glove hammer hat helmet jar jug key knife ladder lamp
    lantern letter lock map match mirror nail needle notebook paper pen pencil phone photograph
    pillow pipe plate pocket pot purse ring rope saddle scarf shelf shirt shoe shovel sign sock
    spoon stick stool suitcase sword table telephone ticket towel train tray truck umbrella vase
    wagon wallet watch wheel whistle window
"""
OBJECTS = frozenset(_OBJECT_WORDS.split())

_WORD = re.compile(r"[A-Za-z]+")


def _singular(word: str) -> str:
    if word.endswith("es") and word[:-2] in OBJECTS:
        return word[:-2]
    if word.endswith("s") and word[:-1] in OBJECTS:
        return word[:-1]
    return word


def score(text: str) -> int:
    """How many words of ``text`` name an object of :data:`OBJECTS`."""
    return sum(_singular(w.lower()) in OBJECTS for w in _WORD.findall(text))


def satisfies(text: str) -> bool:
    """Whether ``text`` names at least one object: what the person looks for."""
    return score(text) > 0


def choose(texts: Sequence[str]) -> int | None:
    """The index the person picks among ``texts``, or None when no single one stands out."""
    scores = [score(t) for t in texts]
    if not scores:
        return None
    best = max(scores)
    if best < 1 or scores.count(best) > 1:
        return None
    return scores.index(best)
