"""Item page: neighbours of the item being viewed (Etsy's item-to-item placement).

Two sources: the embedding neighbours of the item's click token (click ->
click: substitutes; add ``"cart"`` to ``target_types`` for complements) and,
needing no model, the tokens that most often follow a click on it.

Examples
--------
>>> import numpy as np
>>> from models.ann_index import TokenIndex
>>> vectors = np.array([[1, 0], [1, 0.1], [0, 1]])
>>> index = TokenIndex.build([(i, "click") for i in "abz"], vectors, M=8)
>>> [(c.item_id, c.reason) for c in item_embedding("a", index, k=1)]
[('b', 'similar to a')]
"""

from __future__ import annotations

from collections.abc import Sequence

from models.candidates.cooccurrence import cooccurrence_of_tokens
from models.candidates.thompson import item_vector
from models.candidates.types import (
    Candidate,
    EmbeddingIndex,
    NameOf,
    NeighbourLookup,
    best_per_item,
)

EMBEDDING_SOURCE = "item_embedding"
COOCCURRENCE_SOURCE = "item_cooccurrence"
DEFAULT_K = 100
#: What the reason says per neighbour type.
PHRASE = {"click": "similar to {}", "cart": "goes with {}", "purchase": "often bought after {}"}


def item_embedding(
    item_id: str,
    index: EmbeddingIndex,
    *,
    k: int = DEFAULT_K,
    target_types: Sequence[str] = ("click",),
    name_of: NameOf = str,
) -> list[Candidate]:
    """Nearest ``target_types`` tokens to the viewed item's token (click token first).

    The viewed item itself is never a candidate.
    """
    vector, etype = item_vector(index, item_id)
    if vector is None:
        return []
    found = []
    for target_type in target_types:
        reason = PHRASE.get(target_type, "near {}").format(name_of(item_id))
        for item, similarity in index.neighbours((item_id, etype), target_type, k):
            if item != item_id:
                found.append(
                    Candidate(
                        item,
                        similarity,
                        EMBEDDING_SOURCE,
                        reason,
                        {"seed": (item_id, etype), "target_type": target_type},
                    )
                )
    return best_per_item(found)


def item_cooccurrence(
    item_id: str,
    lookup: NeighbourLookup,
    *,
    now: float,
    k: int = DEFAULT_K,
    name_of: NameOf = str,
) -> list[Candidate]:
    """What people clicked, carted or bought after clicking the viewed item."""
    found = cooccurrence_of_tokens(
        [(item_id, "click"), (item_id, "view")],
        lookup,
        now=now,
        per_seed=k,
        source=COOCCURRENCE_SOURCE,
        name_of=name_of,
    )
    return [c for c in found if c.item_id != item_id]
