"""T x K voting (Whatnot's first guard rail): the neighbours most of your recent items agree on.

For each of the user's last ``T`` distinct engaged items take the ``K`` nearest
neighbours of its token and let every seed vote for its neighbours with weight

    ``w_seed = type_weight[strongest type of the seed] * recency ** position``

(position 0 is the most recent seed). An item's score is the weighted mean of
its (non-negative) similarities over *all* seeds, a seed that does not list the
item voting 0, which approximates the similarity to the weighted average of the
seeds' embeddings. One off-taste click is one vote: it cannot outweigh several
items that agree, which the raw last-item neighbours would not survive.

The user's own recent items are skipped (the point is what they have not met).

Examples
--------
>>> import numpy as np
>>> from models.ann_index import TokenIndex
>>> from models.trajectory import UserTrajectory
>>> vectors = np.array([[1, 0], [1, 0.1], [1, 0.2], [0, 1]])
>>> index = TokenIndex.build([(i, "click") for i in "abcz"], vectors, M=8)
>>> user = UserTrajectory()
>>> _ = user.update_many(
...     [{"item_id": i, "type": "click", "ts": float(t)} for t, i in enumerate("ab")]
... )
>>> [c.item_id for c in tk_voting(user, index, k_per_seed=1)]
['c']
"""

from __future__ import annotations

from collections.abc import Mapping

from models.candidates.types import VERB, Candidate, EmbeddingIndex, NameOf, Trajectory
from models.trajectory import DEFAULT_TYPE_WEIGHTS

SOURCE = "tk_voting"
DEFAULT_T = 10
DEFAULT_K = 50
DEFAULT_RECENCY = 0.85


def voting_seeds(
    trajectory: Trajectory,
    t: int = DEFAULT_T,
    type_weights: Mapping[str, float] = DEFAULT_TYPE_WEIGHTS,
    recency: float = DEFAULT_RECENCY,
) -> list[tuple[str, str, float]]:
    """The last ``t`` distinct items as ``(item_id, strongest type, vote weight)``, newest first.

    >>> from models.trajectory import UserTrajectory
    >>> user = UserTrajectory()
    >>> _ = user.update_many([{"item_id": "a", "type": "cart", "ts": 0.0},
    ...                       {"item_id": "b", "type": "click", "ts": 1.0},
    ...                       {"item_id": "a", "type": "view", "ts": 2.0}])
    >>> voting_seeds(user, 2, recency=0.5)
    [('a', 'cart', 5.0), ('b', 'click', 1.0)]
    """
    order: list[str] = []
    strongest: dict[str, str] = {}
    for item, etype, _ in reversed(trajectory.recent()):
        kept = strongest.get(item)
        if kept is None:
            if len(order) == t:
                continue  # still scan: an older, stronger token of a kept item counts
            order.append(item)
            strongest[item] = etype
        elif type_weights.get(etype, 0.0) > type_weights.get(kept, 0.0):
            strongest[item] = etype
    return [
        (item, strongest[item], type_weights.get(strongest[item], 0.0) * recency**position)
        for position, item in enumerate(order)
    ]


def tk_voting(
    trajectory: Trajectory,
    index: EmbeddingIndex,
    *,
    t: int = DEFAULT_T,
    k_per_seed: int = DEFAULT_K,
    target_type: str = "click",
    type_weights: Mapping[str, float] = DEFAULT_TYPE_WEIGHTS,
    recency: float = DEFAULT_RECENCY,
    name_of: NameOf = str,
) -> list[Candidate]:
    """Merge the ``t`` x ``k_per_seed`` neighbours of the user's recent items by weighted vote.

    Parameters
    ----------
    trajectory
        The user's state.
    index
        Token embeddings. A seed is looked up as its strongest token, else as
        its click token.
    t, k_per_seed
        Seeds (distinct recent items) and neighbours per seed.
    target_type
        Token type of the neighbours (click: items like these).
    type_weights, recency
        Vote weight of a seed: its strongest type's weight times
        ``recency ** position``.
    name_of
        Item id -> name used in reasons.

    Returns
    -------
    list of Candidate
        Best weighted mean similarity first; the reason names the seed whose
        vote counted most.
    """
    seeds = voting_seeds(trajectory, t, type_weights, recency)
    seen = {item for item, _, _ in seeds}
    total_weight = sum(w for _, _, w in seeds)
    if total_weight <= 0.0:
        return []
    votes: dict[str, float] = {}
    voters: dict[str, int] = {}
    top_voter: dict[str, tuple[float, str, str]] = {}
    for seed, etype, weight in seeds:
        found = index.neighbours((seed, etype), target_type, k_per_seed)
        if not found and etype != "click":
            found = index.neighbours((seed, "click"), target_type, k_per_seed)
        for item, similarity in found:
            if item in seen or similarity <= 0.0:
                continue
            vote = weight * similarity
            votes[item] = votes.get(item, 0.0) + vote
            voters[item] = voters.get(item, 0) + 1
            if vote > top_voter.get(item, (0.0, "", ""))[0]:
                top_voter[item] = (vote, seed, etype)
    out = []
    for item, vote in votes.items():
        _, seed, etype = top_voter[item]
        n = voters[item]
        reason = f"like {name_of(seed)}, which you {VERB.get(etype, etype)}"
        if n > 1:
            reason += f", and {n - 1} more of your recent items"
        out.append(
            Candidate(
                item,
                vote / total_weight,
                SOURCE,
                reason,
                {"voters": n, "seeds": len(seeds), "top_seed": (seed, etype)},
            )
        )
    out.sort(key=lambda c: (-c.score, c.item_id))
    return out
