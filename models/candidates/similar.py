"""``/items/{id}/similar``: the answer for one token, degrading gracefully when data is thin.

:func:`similar_items` fills ``k`` slots from a chain of sources, each adding
only items not already in the answer:

1. ``model``: the live model's nearest ``to_type`` tokens to ``(item, from)``
   (the item's item-level vector when that token is rare or unknown; with
   ``to_type=None``, item-level neighbours, one per item). A seed the model saw
   fewer than ``min_count`` times gets no model answer and the chain goes on.
   Measured (benchmarks/RESULTS.md): 2 or 3 lifts the two-hour Taobao slice
   (novel item->item 2.5% -> 3.0-3.2%) but costs the dev users more (9.9% ->
   7.7-6.7%): per-user sequences give rare items useful vectors there, so the
   default is 1;
2. ``cooccurrence``: the token's streaming co-occurrence targets
   (:class:`~models.cooccurrence.TokenNeighbours`, P(q|p)), for items newer
   than the model or with few neighbours in it;
3. ``category``: what is trending in the item's category, then ``seller``:
   the seller's other items;
4. ``trending``: what is trending overall.

The answer says which sources it used (``sources``), so a client can tell a
model neighbour from a trending fill. The item itself is never a candidate of
an item-level or same-type answer; across types it may be ("clicked A" ->
"carted A" is a real signal).

Examples
--------
>>> from models.popularity import Popularity
>>> pop = Popularity(half_life=None)
>>> _ = pop.update_many([{"item_id": i, "type": "click", "ts": 0.0,
...                       "item": {"category": c}} for i, c in
...                      [("a", "hats"), ("b", "hats"), ("b", "hats"), ("z", "shoes")]])
>>> answer = similar_items("a", "click", k=3, now=0.0, popularity=pop,
...                        category_of={"a": "hats", "b": "hats"}.get)
>>> [(c.item_id, c.source) for c in answer.items], answer.sources
([('b', 'category'), ('z', 'trending')], ('category', 'trending'))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from models.ann_index import UNTYPED
from models.candidates.cooccurrence import DEFAULT_TARGET_WEIGHTS, TARGET_PHRASE
from models.candidates.types import (
    VERB,
    Candidate,
    CategoryOf,
    NameOf,
    NeighbourLookup,
    PopularityCounts,
    SellerItems,
    SellerOf,
    TrainedModel,
)
from models.sessions import INTERACTION_TYPES

#: The fallback chain, in order.
SOURCES: tuple[str, ...] = ("model", "cooccurrence", "category", "seller", "trending")
#: Training occurrences a seed token needs before the model answers for it.
DEFAULT_MIN_COUNT = 1


@dataclass(frozen=True)
class SimilarItems:
    """The answer: ``items`` best first, and the ``sources`` that filled them, in order."""

    item_id: str
    from_type: str
    to_type: str | None
    items: list[Candidate]
    sources: tuple[str, ...]


def _count(model: TrainedModel, token: Any) -> int | None:
    """How often the model's embedding saw ``token`` (``None``: the model does not say)."""
    embedding = getattr(model, "embedding", None)
    if embedding is None:
        return None
    row = embedding.index_of(token)
    return 0 if row is None else int(embedding.counts[row])


def _model_neighbours(
    model: TrainedModel | None,
    item_id: str,
    from_type: str,
    to_type: str | None,
    k: int,
    min_count: int,
) -> list[tuple[str, float]]:
    index = getattr(model, "index", None) if model is not None else None
    if index is None:
        return []

    def known(token: Any) -> bool:
        count = _count(model, token)
        return count is None or count >= min_count

    item_token = (item_id, UNTYPED)
    if to_type is None:
        return index.neighbours(item_id, UNTYPED, k) if known(item_token) else []
    vector = index.vector((item_id, from_type)) if known((item_id, from_type)) else None
    if vector is None and known(item_token):  # a rare or unseen token: its item stands in
        vector = index.vector(item_id)
    if vector is None:
        return []
    found = index.query(vector, to_type, k + 1)
    same_token = from_type == to_type
    return [(item, s) for item, s in found if not (same_token and item == item_id)][:k]


def _cooccurrence(
    neighbours: NeighbourLookup | None,
    item_id: str,
    from_type: str,
    to_type: str | None,
    k: int,
    now: float,
) -> list[tuple[str, float, float, str]]:
    """``(item, count, P(q|p), target type)``, best P first."""
    if neighbours is None:
        return []
    found = neighbours((item_id, from_type))
    if found is None:
        return []
    types = (to_type,) if to_type is not None else tuple(DEFAULT_TARGET_WEIGHTS)
    rows = [(item, count, min(p, 1.0), t) for t in types for item, count, p in found.top(t, k, now)]
    return sorted(rows, key=lambda r: (-r[2], r[0]))


def similar_items(
    item_id: str,
    from_type: str = "click",
    to_type: str | None = None,
    *,
    k: int = 20,
    now: float,
    model: TrainedModel | None = None,
    neighbours: NeighbourLookup | None = None,
    popularity: PopularityCounts | None = None,
    category_of: CategoryOf | None = None,
    seller_of: SellerOf | None = None,
    seller_items: SellerItems | None = None,
    name_of: NameOf = str,
    min_count: int = DEFAULT_MIN_COUNT,
) -> SimilarItems:
    """The ``k`` items most like ``(item_id, from_type)``, from the model down to trending.

    Parameters
    ----------
    item_id, from_type
        The seed token (e.g. the item a user is looking at, as a click).
    to_type
        Token type of the answer (``"cart"``: what people cart after this);
        ``None``: item level (any interaction, one answer per item).
    k
        Items wanted.
    now
        Read time of decayed counts (co-occurrence, popularity).
    model
        The live model (``.index``: a :class:`~models.ann_index.TokenIndex`
        with an item-level index); ``None`` before the first training.
    neighbours
        Token -> its :class:`~models.cooccurrence.TokenNeighbours` (the stream's).
    popularity
        Trending items (:class:`~models.popularity.Popularity`).
    category_of, seller_of, seller_items
        Catalogue look-ups for the category and seller fallbacks.
    name_of
        Item id -> name for reasons.
    min_count
        Training occurrences a seed token (or its item) needs for the model to
        answer (the model's ``embedding.counts``; a model without them always answers).

    Returns
    -------
    SimilarItems
        At most ``k`` candidates (``source`` names the step that found each,
        ``evidence`` its count and share for co-occurrence) and the sources used.

    Raises
    ------
    ValueError
        ``from_type`` or ``to_type`` is not an interaction type, or ``k < 1``.
    """
    for name, value in (("from_type", from_type), ("to_type", to_type)):
        if value is not None and value not in INTERACTION_TYPES:
            raise ValueError(f"{name}: {value!r}; expected one of {', '.join(INTERACTION_TYPES)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    chosen: dict[str, Candidate] = {}
    excluded = item_id if to_type is None or to_type == from_type else None
    seed = name_of(item_id)

    def add(items: Sequence[tuple[str, float]], source: str, reason: str, **evidence: Any) -> None:
        for item, score in items:
            if len(chosen) >= k:
                return
            if item != excluded and item not in chosen:
                chosen[item] = Candidate(item, float(score), source, reason, dict(evidence))

    add(
        _model_neighbours(model, item_id, from_type, to_type, k, min_count),
        "model",
        f"people who {VERB.get(from_type, from_type)} {seed} "
        + (f"{TARGET_PHRASE.get(to_type, to_type)} this" if to_type else "liked this"),
    )
    for item, count, share, target in _cooccurrence(
        neighbours, item_id, from_type, to_type, k, now
    ):
        add(
            [(item, share)],
            "cooccurrence",
            f"{share:.0%} of sessions that {VERB.get(from_type, from_type)} {seed} "
            f"went on to {target} this",
            count=count,
            p=share,
        )
    category = category_of(item_id) if category_of is not None else None
    if popularity is not None and category is not None and len(chosen) < k:
        add(popularity.top(k + 1, now, category), "category", f"trending in {category}")
    seller = seller_of(item_id) if seller_of is not None else None
    if seller is not None and seller_items is not None and len(chosen) < k:
        add([(i, 0.0) for i in seller_items(seller)], "seller", "more from this seller")
    if popularity is not None and len(chosen) < k:
        add(popularity.top(k + 1, now), "trending", "trending now")
    items = list(chosen.values())
    sources = tuple(dict.fromkeys(c.source for c in items))
    return SimilarItems(item_id, from_type, to_type, items, sources)
