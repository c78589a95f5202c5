"""Etsy's online user module: cart neighbours of the user's last clicked and carted items.

Seeds are the user's last 4 clicked items (looked up as click tokens) and last
4 carted items (cart tokens); each seed contributes its ``per_seed`` (200)
nearest *cart* tokens, so click -> cart gives complements of what was browsed
and cart -> cart what goes with the basket: 8 x 200 candidates at most. An
item reached from several seeds keeps its best similarity; the reason names
that seed.

Seed items themselves are kept: "clicked A" -> "carted A" is a real signal.

Examples
--------
>>> import numpy as np
>>> from models.ann_index import TokenIndex
>>> from models.trajectory import UserTrajectory
>>> tokens = [("a", "click"), ("b", "cart"), ("c", "cart")]
>>> index = TokenIndex.build(tokens, np.array([[1, 0], [1, 0.1], [0, 1]]), M=8)
>>> user = UserTrajectory()
>>> _ = user.update({"item_id": "a", "type": "click", "ts": 0.0})
>>> [(c.item_id, c.reason) for c in etsy_user(user, index, per_seed=1)]
[('b', 'because you clicked a: people cart this next')]
"""

from __future__ import annotations

from collections.abc import Sequence

from models.candidates.types import (
    VERB,
    Candidate,
    EmbeddingIndex,
    NameOf,
    Trajectory,
    best_per_item,
)

SOURCE = "etsy_user"
DEFAULT_SEED_TYPES = ("click", "cart")
DEFAULT_SEEDS_PER_TYPE = 4
DEFAULT_PER_SEED = 200


def etsy_user(
    trajectory: Trajectory,
    index: EmbeddingIndex,
    *,
    seed_types: Sequence[str] = DEFAULT_SEED_TYPES,
    seeds_per_type: int = DEFAULT_SEEDS_PER_TYPE,
    per_seed: int = DEFAULT_PER_SEED,
    target_type: str = "cart",
    name_of: NameOf = str,
) -> list[Candidate]:
    """Nearest ``target_type`` tokens to the user's recent click and cart tokens.

    Parameters
    ----------
    trajectory
        The user's state (:meth:`seeds` gives the last distinct items per type).
    index
        Token embeddings (one index per token type).
    seed_types, seeds_per_type
        Which interaction types seed the search, and how many items of each.
    per_seed
        Neighbours taken per seed token (Etsy: 200).
    target_type
        Token type of the neighbours (Etsy's user module: cart).
    name_of
        Item id -> name used in reasons.

    Returns
    -------
    list of Candidate
        One per item, best similarity first.
    """
    found: list[Candidate] = []
    for seed_type in seed_types:
        for seed in trajectory.seeds(seed_type, seeds_per_type):
            reason = (
                f"because you {VERB.get(seed_type, seed_type)} {name_of(seed)}: "
                f"people {target_type} this next"
            )
            for item, similarity in index.neighbours((seed, seed_type), target_type, per_seed):
                found.append(
                    Candidate(
                        item,
                        similarity,
                        SOURCE,
                        reason,
                        {"seed": (seed, seed_type), "similarity": similarity},
                    )
                )
    return best_per_item(found)
