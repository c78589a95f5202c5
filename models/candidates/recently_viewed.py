"""Continue shopping: the user's own recent items, by decayed, type-weighted engagement.

On real shop logs most next-day carts and purchases are of items the user
already looked at (Taobao: the user's own items hold every repeat target; a
list of them in recency order is the strongest plain baseline), so home keeps
a "recently viewed" source. An item's score is the sum over the user's kept
events on it of the type's weight times ``2 ** (-(now - ts) / half_life)``:
an item carted yesterday outranks one glanced at once, a fresh view outranks
an old one. Items older than the kept events (a heavy user's) still come from
the trajectory's engagement sketch, after them (``older_weight`` times their
decayed engagement). Purchased items are removed later by the surface's filters.

Examples
--------
>>> from models.trajectory import UserTrajectory
>>> user = UserTrajectory()
>>> _ = user.update_many([{"item_id": i, "type": t, "ts": ts} for i, t, ts in
...                       [("a", "click", 0.0), ("b", "cart", 0.0), ("c", "click", 86400.0)]])
>>> [(c.item_id, round(c.score, 2), c.reason)
...  for c in recently_viewed(user, now=86400.0, older_weight=0.0)]
[('b', 2.5, 'in your cart'), ('c', 2.0, 'you viewed this'), ('a', 1.0, 'you viewed this')]
"""

from __future__ import annotations

from collections.abc import Mapping

from models.candidates.types import Candidate, Trajectory

SOURCE = "recently_viewed"
DEFAULT_K = 200
#: Half-life of an event's weight in this source: a day, measured on Taobao (vs 6 h, 3 and 7 days).
DEFAULT_HALF_LIFE = 86_400.0
#: Weight of one event per type (stronger intent counts more).
DEFAULT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "favorite": 3.0,
    "cart": 5.0,
    "purchase": 8.0,
}
#: Weight of an item's long-term engagement (the trajectory's sketch): orders older items.
DEFAULT_OLDER_WEIGHT = 0.01
#: What the reason says, by the strongest type the user had with the item.
REASONS = {"cart": "in your cart", "favorite": "in your favourites", "purchase": "you bought this"}


def recently_viewed(
    trajectory: Trajectory,
    *,
    now: float,
    k: int = DEFAULT_K,
    half_life: float = DEFAULT_HALF_LIFE,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
    older_weight: float = DEFAULT_OLDER_WEIGHT,
) -> list[Candidate]:
    """The user's own items by decayed, type-weighted engagement at ``now``.

    Parameters
    ----------
    trajectory
        The user's state (its kept recent events).
    now
        Read time.
    k
        Candidates returned.
    half_life
        Seconds for an event's weight to halve.
    weights
        Weight of one event per interaction type (missing types count 0).
    older_weight
        Multiplier of the trajectory's decayed engagement weight
        (:meth:`~models.trajectory.UserTrajectory.top_items`), added to every
        item's score: it brings in items older than the kept events, after them.

    Returns
    -------
    list of Candidate
        Best score first (ties: the most recent first).
    """
    score: dict[str, float] = {}
    last: dict[str, float] = {}
    strongest: dict[str, str] = {}
    for item, etype, ts in trajectory.recent():
        weight = weights.get(etype, 0.0)
        if weight <= 0.0:
            continue
        score[item] = score.get(item, 0.0) + weight * 2.0 ** (-max(now - ts, 0.0) / half_life)
        last[item] = max(last.get(item, ts), ts)
        if weight > weights.get(strongest.get(item, ""), 0.0):
            strongest[item] = etype
    if older_weight > 0.0:
        for item, engagement in trajectory.top_items(max(k, len(score)), now):
            score[item] = score.get(item, 0.0) + older_weight * engagement
            strongest.setdefault(item, "view")
    never = float("-inf")
    ranked = sorted(score, key=lambda item: (-score[item], -last.get(item, never), item))[:k]
    return [
        Candidate(
            item,
            score[item],
            SOURCE,
            REASONS.get(strongest[item], "you viewed this"),
            {"last_ts": last.get(item), "strongest": strongest[item]},
        )
        for item in ranked
    ]
