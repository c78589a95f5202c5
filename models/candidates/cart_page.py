"""Cart page (Etsy): nearest purchase tokens to the cart token of the last carted item.

When the index does not know the item's cart token (rarely carted items), its
click token stands in. The co-occurrence version (no model needed) reads what
people bought after carting the item, else after clicking it.

Examples
--------
>>> import numpy as np
>>> from models.ann_index import TokenIndex
>>> tokens = [("lamp", "click"), ("bulb", "purchase"), ("sofa", "purchase")]
>>> index = TokenIndex.build(tokens, np.array([[1, 0], [1, 0.1], [0, 1]]), M=8)
>>> [(c.item_id, c.evidence["via"]) for c in cart_embedding("lamp", index, k=1)]
[('bulb', 'click')]
"""

from __future__ import annotations

from models.candidates.cooccurrence import cooccurrence_of_tokens
from models.candidates.types import Candidate, EmbeddingIndex, NameOf, NeighbourLookup

EMBEDDING_SOURCE = "cart_embedding"
COOCCURRENCE_SOURCE = "cart_cooccurrence"
DEFAULT_K = 100
#: Token types of the carted item tried in order.
FALLBACK_TYPES = ("cart", "click")


def cart_embedding(
    carted_item: str,
    index: EmbeddingIndex,
    *,
    k: int = DEFAULT_K,
    target_type: str = "purchase",
    name_of: NameOf = str,
) -> list[Candidate]:
    """The ``k`` nearest ``target_type`` tokens to the item's cart token, else its click token."""
    for via in FALLBACK_TYPES:
        if index.vector((carted_item, via)) is None:
            continue
        reason = f"to complete your basket with {name_of(carted_item)}"
        return [
            Candidate(
                item,
                similarity,
                EMBEDDING_SOURCE,
                reason,
                {"seed": (carted_item, via), "via": via},
            )
            for item, similarity in index.neighbours((carted_item, via), target_type, k)
            if item != carted_item
        ]
    return []


def cart_cooccurrence(
    carted_item: str,
    lookup: NeighbourLookup,
    *,
    now: float,
    k: int = DEFAULT_K,
    name_of: NameOf = str,
) -> list[Candidate]:
    """What people bought after carting the item (else after clicking it)."""
    for via in FALLBACK_TYPES:
        found = cooccurrence_of_tokens(
            [(carted_item, via)],
            lookup,
            now=now,
            per_seed=k,
            target_weights={"purchase": 1.0},
            source=COOCCURRENCE_SOURCE,
            name_of=name_of,
        )
        found = [c for c in found if c.item_id != carted_item]
        if found:
            return found
    return []
