"""What every candidate source returns, and the behaviour the sources depend on.

A :class:`Candidate` is one item a source proposes, with the source's score,
a human sentence saying why (``reason``) and the raw facts behind it
(``evidence``: seed token, neighbour similarity, co-occurrence share...).
After :func:`models.candidates.merge.merge` one candidate per item remains and
keeps every contribution in :attr:`Candidate.contributions`.

The sources never import the state classes' concrete types for what they call:
they take the small :class:`typing.Protocol` s below, so a table value, a
replayed object or a hand-made test double all work.

Examples
--------
>>> c = Candidate("lamp", 0.31, "cooccurrence", "because you carted Desk A")
>>> c.sources, c.reasons
(('cooccurrence',), ('because you carted Desk A',))
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from models.sessions import Token


@dataclass(slots=True)
class Candidate:
    """One proposed item.

    Parameters
    ----------
    item_id
        The item.
    score
        The source's own score (larger is better; scales differ per source
        until :func:`~models.candidates.merge.merge` normalises them).
    source
        Name of the source (for a merged candidate: its strongest contributor).
    reason
        A sentence for people, e.g. ``"because you carted Lamp A; 31% who did bought this"``.
    evidence
        Machine-readable facts behind the reason.
    contributions
        For a merged candidate, the per-source candidates it was merged from,
        strongest first; empty for a source's own output.
    """

    item_id: str
    score: float
    source: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    contributions: tuple[Candidate, ...] = ()

    @property
    def sources(self) -> tuple[str, ...]:
        """Every contributing source, strongest first."""
        if not self.contributions:
            return (self.source,)
        return tuple(c.source for c in self.contributions)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every contributing reason, strongest first."""
        if not self.contributions:
            return (self.reason,)
        return tuple(c.reason for c in self.contributions)


# -- state the sources read -----------------------------------------------------
@runtime_checkable
class CooccurrenceNeighbours(Protocol):
    """One source token's co-occurrence targets (:class:`~models.cooccurrence.TokenNeighbours`)."""

    def top(self, target_type: str, k: int, now: float) -> list[tuple[str, float, float]]:
        """Top ``k`` targets of one type as ``(item_id, count, P(q|p))``."""
        ...


#: Finds a token's co-occurrence neighbours (the agent keeps them in a table).
NeighbourLookup = Callable[[Token], CooccurrenceNeighbours | None]


class Trajectory(Protocol):
    """A user's recent behaviour (:class:`~models.trajectory.UserTrajectory`)."""

    purchased: Any  # a container of item ids

    def seeds(self, type: str, n: int = ...) -> list[str]: ...

    def recent(self, n: int | None = None) -> list[tuple[str, str, float]]: ...

    def tokens(self) -> list[Token]: ...

    def top_items(self, k: int, now: float | None = None) -> list[tuple[str, float]]: ...

    def top_sellers(self, k: int, now: float | None = None) -> list[tuple[str, float]]: ...


class Bandit(Protocol):
    """Thompson sampling over a user's arms (:class:`~models.bandit.UserBandit`)."""

    def sample(self, rng: np.random.Generator, now: float | None = None) -> tuple[str, str] | None:
        """One ``(kind, id)`` arm, ``kind`` ``"item"`` or ``"seller"``."""
        ...


class PopularityCounts(Protocol):
    """Trending items (:class:`~models.popularity.Popularity`)."""

    def top(self, k: int, now: float, category: str | None = None) -> list[tuple[str, float]]: ...


class EmbeddingIndex(Protocol):
    """Nearest tokens of a type (:class:`~models.ann_index.TokenIndex`)."""

    def neighbours(self, token: Hashable, target_type: str, k: int) -> list[tuple[str, float]]: ...

    def query(self, vector: np.ndarray, target_type: str, k: int) -> list[tuple[str, float]]: ...

    def vector(self, token: Hashable) -> np.ndarray | None: ...


class UserFactors(Protocol):
    """User -> item scores (:class:`~models.factorization.MatrixFactorization`)."""

    def user_vector(self, user_id: str) -> np.ndarray | None: ...

    def recommend(
        self, user_id: str, k: int = ..., exclude: Iterable[str] = ...
    ) -> list[tuple[str, float]]: ...


class TrainedModel(Protocol):
    """What the trainer publishes: either part may be missing."""

    index: EmbeddingIndex | None
    factorization: UserFactors | None


@dataclass(frozen=True, slots=True)
class ModelParts:
    """A plain :class:`TrainedModel` (the agent may pass its own object instead)."""

    index: EmbeddingIndex | None = None
    factorization: UserFactors | None = None
    version: str = ""


class Ranker(Protocol):
    """The second pass: reorders (and may cut) a user's merged candidates.

    ``context`` is the request's :class:`~models.surfaces.SurfaceContext`
    (``None`` when a caller has none): what a learned ranker's features read.
    """

    def rank(
        self, user_id: str, candidates: Sequence[Candidate], context: Any = None
    ) -> list[Candidate]: ...


#: Item id -> something printable (a title) for reasons; ``str`` by default.
NameOf = Callable[[str], str]
#: Item id -> seller id, or ``None`` when unknown.
SellerOf = Callable[[str], str | None]
#: Seller id -> that seller's items.
SellerItems = Callable[[str], Iterable[str]]
#: Item id -> category, or ``None`` when unknown.
CategoryOf = Callable[[str], str | None]

#: Past-tense verbs for reasons ("because you carted ...").
VERB = {
    "view": "viewed",
    "click": "clicked",
    "favorite": "favourited",
    "cart": "carted",
    "purchase": "bought",
}


def best_per_item(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Keep each item's highest-scoring candidate, best first (ties by item id).

    >>> best_per_item([Candidate("a", 0.1, "s", ""), Candidate("a", 0.5, "s", "")])[0].score
    0.5
    """
    best: dict[str, Candidate] = {}
    for c in candidates:
        kept = best.get(c.item_id)
        if kept is None or c.score > kept.score:
            best[c.item_id] = c
    return sorted(best.values(), key=lambda c: (-c.score, c.item_id))
