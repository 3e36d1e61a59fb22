"""Offers that are diverse on purpose: oversample, embed, cluster, offer one representative per cluster.

``choose(vectors, k)`` groups M candidate continuations (unit embedding vectors)
into at most ``k`` clusters by average-linkage agglomerative clustering on cosine
distance (deterministic; M is small, 16 or so), and returns for each cluster its
medoid (the member closest on average to the others) with the share of the M
samples the cluster holds: "this kind of continuation came up in 7 of 16 samples".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True)
class Pick:
    """One offered continuation: its index among the samples, its cluster's members and share."""

    index: int
    members: tuple[int, ...]
    share: float


def distances(vectors: Vectors) -> npt.NDArray[np.float64]:
    """Cosine distances (1 - similarity) between unit vectors, ``[M, M]``."""
    v = np.asarray(vectors, dtype=np.float64)
    return np.clip(1.0 - v @ v.T, 0.0, 2.0)  # type: ignore[no-any-return]


def mean_pairwise_distance(vectors: Vectors) -> float:
    """Mean cosine distance over distinct pairs (0 for fewer than two): the diversity of a set."""
    m = len(vectors)
    if m < 2:
        return 0.0
    d = distances(vectors)
    return float(d[np.triu_indices(m, 1)].mean())


def cluster(vectors: Vectors, k: int) -> list[list[int]]:
    """At most ``k`` clusters of row indices (average linkage), largest first, ties by first member."""
    d = distances(vectors)
    groups: list[list[int]] = [[i] for i in range(len(vectors))]
    while len(groups) > max(1, k):
        best = (float("inf"), 0, 1)
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                link = float(d[np.ix_(groups[a], groups[b])].mean())
                if link < best[0]:
                    best = (link, a, b)
        _, a, b = best
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def medoid(vectors: Vectors, members: Sequence[int]) -> int:
    """The member with the smallest mean distance to the others."""
    d = distances(vectors[list(members)])
    return int(members[int(d.mean(1).argmin())])


def choose(vectors: Vectors, k: int) -> list[Pick]:
    """One representative per cluster, largest cluster first, each with its share of all samples."""
    total = len(vectors)
    return [Pick(medoid(vectors, g), tuple(g), len(g) / total) for g in cluster(vectors, k)]
