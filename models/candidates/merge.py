"""Merge, filter, explain, and the seam for a learned ranker (the first pass of two).

* :func:`merge` puts every source's candidates on one scale and de-duplicates
  them. Each source's scores are normalised to ``[0, 1]`` (divided by the
  source's best score when none is negative, which keeps ratios such as
  co-occurrence shares meaningful; min-max otherwise, e.g. dot products), then
  an item's first-pass score is the weighted sum over the sources that
  proposed it (a surface's weights): items several sources agree on rise.
  The merged candidate keeps every contribution, strongest first.
* :class:`Filters` drops what must never be shown: already purchased,
  unavailable, sold by an offline seller, explicitly excluded. It takes plain
  sets or callables so the agent can feed it from its tables.
* :func:`explain` turns a merged candidate's reasons into one sentence.
* :class:`~models.candidates.types.Ranker` is the second pass;
  :class:`PassThroughRanker` keeps the first-pass order until a learned
  ranker (Pinterest's multi-task utility) plugs in.

Examples
--------
>>> from models.candidates.types import Candidate
>>> merged = merge([
...     Candidate("lamp", 0.9, "etsy_user", "because you clicked Desk"),
...     Candidate("lamp", 0.31, "cooccurrence", "31% who carted Desk bought this"),
...     Candidate("rug", 0.62, "cooccurrence", "62% who carted Desk bought this"),
... ], weights={"etsy_user": 1.0, "cooccurrence": 0.5})
>>> [(c.item_id, round(c.score, 3), c.sources) for c in merged]
[('lamp', 1.25, ('etsy_user', 'cooccurrence')), ('rug', 0.5, ('cooccurrence',))]
>>> Filters(exclude={"rug"}).apply(merged)[0].item_id
'lamp'
>>> explain(merged[0])
'because you clicked Desk; also 31% who carted Desk bought this'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from models.candidates.types import Candidate, SellerOf

#: A set of ids, or a predicate over ids (``True``: the id is in the set).
IdSet = Container[str] | Callable[[str], bool]


def _contains(ids: IdSet, key: str) -> bool:
    if callable(ids):
        return bool(ids(key))
    return key in ids


def normalised(scores: Sequence[float]) -> list[float]:
    """One source's scores on ``[0, 1]``: divided by the best, or min-max if any is negative.

    >>> normalised([0.62, 0.31]), normalised([-1.0, 1.0, 3.0]), normalised([0.0, 0.0])
    ([1.0, 0.5], [0.0, 0.5, 1.0], [1.0, 1.0])
    """
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if lo >= 0.0:
        return [s / hi for s in scores] if hi > 0.0 else [1.0] * len(scores)
    if hi == lo:
        return [1.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def merge(
    candidates: Iterable[Candidate],
    weights: Mapping[str, float] | None = None,
    default_weight: float = 1.0,
) -> list[Candidate]:
    """De-duplicate candidates from many sources into one list by first-pass score.

    Parameters
    ----------
    candidates
        Every source's output, in any order (a source proposing an item twice
        counts once, with its best score).
    weights
        Source name -> weight; sources not listed weigh ``default_weight``.
    default_weight
        Weight of unlisted sources.

    Returns
    -------
    list of Candidate
        One per item, best first (ties by item id): ``score`` is the weighted
        sum of normalised source scores, ``source``/``reason`` those of the
        strongest contribution, ``contributions`` every source's own
        candidate (strongest first), ``evidence["by_source"]`` each
        source's weighted share of the score and ``evidence["normalised"]``
        each source's normalised score (the second pass's features).
    """
    weights = weights or {}
    by_source: dict[str, dict[str, Candidate]] = {}
    for c in candidates:
        best = by_source.setdefault(c.source, {})
        kept = best.get(c.item_id)
        if kept is None or c.score > kept.score:
            best[c.item_id] = c
    parts: dict[str, list[tuple[float, float, Candidate]]] = {}
    for source, best in by_source.items():
        weight = weights.get(source, default_weight)
        found = list(best.values())
        for c, norm in zip(found, normalised([c.score for c in found]), strict=True):
            entry = (weight * norm, norm, c)
            shares = parts.get(c.item_id)
            if shares is None:
                parts[c.item_id] = [entry]
            else:
                shares.append(entry)
    merged = []
    for item, shares in parts.items():
        if len(shares) > 1:
            shares.sort(key=lambda part: (-part[0], part[2].source))
            score = math.fsum(share for share, _, _ in shares)
        else:
            score = shares[0][0]
        top = shares[0][2]
        merged.append(
            Candidate(
                item,
                score,
                top.source,
                top.reason,
                {
                    "by_source": {c.source: share for share, _, c in shares},
                    "normalised": {c.source: norm for _, norm, c in shares},
                },
                tuple(c for _, _, c in shares),
            )
        )
    merged.sort(key=lambda c: (-c.score, c.item_id))
    return merged


@dataclass
class Filters:
    """What must not be recommended; every field is a set of ids or a predicate.

    Parameters
    ----------
    purchased
        Items the user already bought.
    unavailable
        Items out of stock or withdrawn.
    offline_sellers
        Sellers currently offline; needs ``seller_of`` to map items to sellers.
    seller_of
        Item id -> seller id (``None`` when unknown: the item is kept).
    exclude
        Anything else the caller does not want (e.g. items already on the page).
    """

    purchased: IdSet = field(default_factory=frozenset)
    unavailable: IdSet = field(default_factory=frozenset)
    offline_sellers: IdSet = field(default_factory=frozenset)
    seller_of: SellerOf | None = None
    exclude: IdSet = field(default_factory=frozenset)

    def why_removed(self, item_id: str) -> str | None:
        """``"excluded"``, ``"purchased"``, ``"unavailable"``, ``"seller_offline"`` or ``None``.

        >>> Filters(purchased={"a"}).why_removed("a"), Filters().why_removed("a")
        ('purchased', None)
        """
        if _contains(self.exclude, item_id):
            return "excluded"
        if _contains(self.purchased, item_id):
            return "purchased"
        if _contains(self.unavailable, item_id):
            return "unavailable"
        if self.seller_of is not None:
            seller = self.seller_of(item_id)
            if seller is not None and _contains(self.offline_sellers, seller):
                return "seller_offline"
        return None

    def apply(self, candidates: Iterable[Candidate]) -> list[Candidate]:
        """The candidates that pass every filter, order kept."""
        why = self.why_removed
        return [c for c in candidates if why(c.item_id) is None]


def explain(candidate: Candidate, max_reasons: int = 2) -> str:
    """One sentence from a candidate's distinct reasons, strongest first.

    >>> explain(Candidate("a", 1.0, "popularity", "trending now"))
    'trending now'
    """
    reasons = list(dict.fromkeys(r for r in candidate.reasons if r))[:max_reasons]
    return "; also ".join(reasons)


class PassThroughRanker:
    """The default second pass: keeps the first-pass order.

    >>> PassThroughRanker().rank("u", [Candidate("a", 1.0, "s", "")])[0].item_id
    'a'
    """

    def rank(
        self, user_id: str, candidates: Sequence[Candidate], context: object = None
    ) -> list[Candidate]:
        """Return ``candidates`` unchanged, as a new list."""
        return list(candidates)
