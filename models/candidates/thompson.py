"""Thompson sampling (Whatnot's third guard rail): neighbours of one sampled favourite.

The user's bandit (:class:`~models.bandit.UserBandit`) draws one arm from the
Beta posteriors of the sellers (or items) the user engaged with: mostly the
favourite, sometimes another, never a stranger. The arm is the reference point
of a neighbour search:

* item arm: the nearest tokens to that item's token (click token first);
* seller arm: the nearest tokens to the mean vector of the seller's items,
  taken from ``seller_items(seller)`` when given, else the user's own recent
  items whose ``seller_of`` is that seller.

The same ``rng`` state gives the same arm, so a request is reproducible.

Examples
--------
>>> import numpy as np
>>> from models.ann_index import TokenIndex
>>> from models.bandit import UserBandit
>>> vectors = np.array([[1, 0], [1, 0.1], [0, 1]])
>>> index = TokenIndex.build([(i, "click") for i in "abz"], vectors, M=8)
>>> bandit = UserBandit()
>>> bandit.update({"item_id": "a", "type": "cart", "ts": 0.0})
>>> [c.item_id for c in thompson(bandit, index, np.random.default_rng(0), k=1)]
['b']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.candidates.types import (
    Bandit,
    Candidate,
    EmbeddingIndex,
    NameOf,
    SellerItems,
    SellerOf,
    Trajectory,
)

SOURCE = "thompson"
DEFAULT_K = 100
#: Token types tried, in order, for an item's vector.
LOOKUP_TYPES = ("click", "cart", "purchase", "favorite", "view")


def item_vector(index: EmbeddingIndex, item: str, types: Sequence[str] = LOOKUP_TYPES):
    """The first of the item's tokens (in ``types`` order) that the index knows, and its type."""
    for etype in types:
        vector = index.vector((item, etype))
        if vector is not None:
            return vector, etype
    return None, None


def arm_items(
    seller: str,
    trajectory: Trajectory | None = None,
    seller_items: SellerItems | None = None,
    seller_of: SellerOf | None = None,
) -> list[str]:
    """A seller's items: from the lookup if given, else the user's recent items of that seller."""
    if seller_items is not None:
        return list(dict.fromkeys(seller_items(seller)))
    if trajectory is None or seller_of is None:
        return []
    return list(dict.fromkeys(i for i, _, _ in trajectory.recent() if seller_of(i) == seller))


def thompson(
    bandit: Bandit,
    index: EmbeddingIndex,
    rng: np.random.Generator,
    *,
    now: float | None = None,
    k: int = DEFAULT_K,
    target_type: str = "click",
    trajectory: Trajectory | None = None,
    seller_items: SellerItems | None = None,
    seller_of: SellerOf | None = None,
    name_of: NameOf = str,
) -> list[Candidate]:
    """Sample one arm from the user's bandit and return its ``k`` nearest neighbours.

    Parameters
    ----------
    bandit
        The user's Thompson-sampling state.
    index
        Token embeddings.
    rng
        Random generator (seed it for reproducible answers).
    now
        Event time for the bandit (resolves pending impressions).
    k, target_type
        Neighbours returned and their token type.
    trajectory, seller_items, seller_of
        Where a seller arm's items come from (see the module docstring).
    name_of
        Item id -> name used in reasons.

    Returns
    -------
    list of Candidate
        Best similarity first; ``evidence["arm"]`` is the sampled arm.
    """
    arm = bandit.sample(rng, now)
    if arm is None:
        return []
    kind, arm_id = arm
    if kind == "seller":
        items = arm_items(arm_id, trajectory, seller_items, seller_of)
        vectors = [v for v in (item_vector(index, i)[0] for i in items) if v is not None]
        if not vectors:
            return []
        centre = np.mean(np.asarray(vectors, dtype=np.float64), axis=0)
        found = index.query(centre, target_type, k)
        reason = f"from the kind of shop you keep coming back to ({arm_id})"
    else:
        _, etype = item_vector(index, arm_id)
        if etype is None:
            return []
        found = index.neighbours((arm_id, etype), target_type, k)
        reason = f"more like {name_of(arm_id)}, one of your favourites"
    out = [
        Candidate(item, similarity, SOURCE, reason, {"arm": arm, "similarity": similarity})
        for item, similarity in found
    ]
    out.sort(key=lambda c: (-c.score, c.item_id))
    return out
