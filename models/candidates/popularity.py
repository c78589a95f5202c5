"""Popularity: the trending fallback for users (and pages) we know little about.

Overall trending items, or those of one category: the user's strongest
category (:func:`top_category`, from their engaged items and a category
lookup) or the viewed item's.

Examples
--------
>>> from models.popularity import Popularity
>>> pop = Popularity(half_life=None)
>>> _ = pop.update_many([
...     {"item_id": "a", "type": "purchase", "ts": 0.0, "item": {"category": "hats"}},
...     {"item_id": "b", "type": "click", "ts": 0.0, "item": {"category": "shoes"}},
... ])
>>> [(c.item_id, c.reason) for c in popularity(pop, now=0.0)]
[('a', 'trending now'), ('b', 'trending now')]
>>> [(c.item_id, c.reason) for c in popularity(pop, now=0.0, category="shoes")]
[('b', 'trending in shoes')]
"""

from __future__ import annotations

from models.candidates.types import Candidate, CategoryOf, PopularityCounts, Trajectory

SOURCE = "popularity"
DEFAULT_K = 100
DEFAULT_CATEGORY_SEEDS = 20


def top_category(
    trajectory: Trajectory | None,
    category_of: CategoryOf | None,
    now: float | None = None,
    n_items: int = DEFAULT_CATEGORY_SEEDS,
) -> str | None:
    """The category with the most engagement weight among the user's top items, if any.

    >>> from models.trajectory import UserTrajectory
    >>> user = UserTrajectory()
    >>> _ = user.update_many([{"item_id": i, "type": "click", "ts": 0.0} for i in "aab"])
    >>> top_category(user, {"a": "hats", "b": "shoes"}.get)
    'hats'
    """
    if trajectory is None or category_of is None:
        return None
    weights: dict[str, float] = {}
    for item, weight in trajectory.top_items(n_items, now):
        category = category_of(item)
        if category is not None:
            weights[category] = weights.get(category, 0.0) + weight
    if not weights:
        return None
    return min(weights, key=lambda c: (-weights[c], c))


def popularity(
    counts: PopularityCounts,
    *,
    now: float,
    k: int = DEFAULT_K,
    category: str | None = None,
) -> list[Candidate]:
    """The ``k`` most popular items at ``now``, in ``category`` if given.

    A category with no counts yet falls back to overall popularity.
    """
    found = counts.top(k, now, category) if category is not None else []
    if found:
        reason = f"trending in {category}"
    else:
        found = counts.top(k, now)
        reason = "trending now"
        category = None
    return [
        Candidate(item, score, SOURCE, reason, {"count": score, "category": category})
        for item, score in found
    ]
