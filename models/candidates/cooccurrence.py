"""Co-occurrence candidates: what other people did next after the user's recent tokens.

Needs no trained model (the agent keeps the counts per event), so it carries
the list from the first minutes. Seeds are the user's last distinct items per
interaction type (``seeds_per_type`` each, purchases and carts first); each
seed token's top co-occurring targets of every ``target_types`` type (any pair
of types) become candidates scored by ``P(q|p)``, the share of the seed's
occurrences followed by the target, times the target type's weight. An item
reached several ways keeps its best score; the reason quotes the share:
"because you carted Lamp A; 31% who did bought this".

Examples
--------
>>> from models.cooccurrence import build_neighbours
>>> from models.trajectory import UserTrajectory
>>> events = [
...     {"user_id": f"u{n}", "item_id": item, "type": etype, "ts": 0.0}
...     for n in range(3) for item, etype in [("lamp", "cart"), ("bulb", "purchase")]
... ]
>>> table = build_neighbours(events, half_life=None)
>>> user = UserTrajectory()
>>> _ = user.update({"item_id": "lamp", "type": "cart", "ts": 0.0})
>>> [(c.item_id, c.reason) for c in cooccurrence(user, table.get, now=0.0)]
[('bulb', 'because you carted lamp; 100% who did bought this')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from models.candidates.types import VERB, Candidate, NameOf, NeighbourLookup, Trajectory
from models.sessions import Token

SOURCE = "cooccurrence"
DEFAULT_SEED_TYPES = ("purchase", "cart", "favorite", "click", "view")
DEFAULT_SEEDS_PER_TYPE = 4
DEFAULT_PER_SEED = 50
#: How much a target of each type is worth (a purchase next is the strongest signal).
DEFAULT_TARGET_WEIGHTS: dict[str, float] = {
    "purchase": 1.0,
    "cart": 0.8,
    "favorite": 0.6,
    "click": 0.5,
}
#: What people did, for reasons ("31% who did bought this").
TARGET_PHRASE = {
    "view": "viewed",
    "click": "clicked",
    "favorite": "favourited",
    "cart": "carted",
    "purchase": "bought",
}


def cooccurrence(
    trajectory: Trajectory,
    lookup: NeighbourLookup,
    *,
    now: float,
    seed_types: Sequence[str] = DEFAULT_SEED_TYPES,
    seeds_per_type: int = DEFAULT_SEEDS_PER_TYPE,
    per_seed: int = DEFAULT_PER_SEED,
    target_weights: Mapping[str, float] = DEFAULT_TARGET_WEIGHTS,
    name_of: NameOf = str,
) -> list[Candidate]:
    """Top co-occurring targets of the user's seed tokens.

    Parameters
    ----------
    trajectory
        The user's state (:meth:`seeds` per type).
    lookup
        Token -> its :class:`~models.cooccurrence.TokenNeighbours` (or ``None``).
    now
        Read time of the decayed counts.
    seed_types, seeds_per_type
        Which of the user's tokens seed the search.
    per_seed
        Targets read per seed token and target type.
    target_weights
        Target types read, and the weight of each.
    name_of
        Item id -> name used in reasons.

    Returns
    -------
    list of Candidate
        Best weighted ``P(q|p)`` first.
    """
    seeds = [
        (seed, seed_type)
        for seed_type in seed_types
        for seed in trajectory.seeds(seed_type, seeds_per_type)
    ]
    return cooccurrence_of_tokens(
        seeds,
        lookup,
        now=now,
        per_seed=per_seed,
        target_weights=target_weights,
        name_of=name_of,
    )


def cooccurrence_of_tokens(
    seeds: Iterable[Token],
    lookup: NeighbourLookup,
    *,
    now: float,
    per_seed: int = DEFAULT_PER_SEED,
    target_weights: Mapping[str, float] = DEFAULT_TARGET_WEIGHTS,
    source: str = SOURCE,
    name_of: NameOf = str,
) -> list[Candidate]:
    """Top co-occurring targets of given seed tokens (the item and cart pages use it too).

    Parameters as for :func:`cooccurrence`; ``source`` names the candidates.
    """
    best: dict[str, Candidate] = {}
    for seed, seed_type in seeds:
        neighbours = lookup((seed, seed_type))
        if neighbours is None:
            continue
        for target_type, weight in target_weights.items():
            for item, count, share in neighbours.top(target_type, per_seed, now):
                score = weight * share
                kept = best.get(item)
                if kept is not None and kept.score >= score:
                    continue
                best[item] = Candidate(
                    item,
                    score,
                    source,
                    f"because you {VERB.get(seed_type, seed_type)} {name_of(seed)}; "
                    f"{share:.0%} who did {TARGET_PHRASE.get(target_type, target_type)} this",
                    {
                        "seed": (seed, seed_type),
                        "target_type": target_type,
                        "count": count,
                        "share": share,
                    },
                )
    return sorted(best.values(), key=lambda c: (-c.score, c.item_id))
