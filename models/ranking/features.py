"""The second pass's features: one row per merged candidate, computed in one call.

:func:`candidate_features` is the only place features are made: the worker
(per request), the offline bootstrap and the evaluation all call it on the
request's :class:`~models.surfaces.SurfaceContext` and the first pass's merged
candidates, so a logged feature row is exactly what a served list was ranked
by. Columns (:data:`FEATURE_NAMES`):

* per source of :data:`~models.surfaces.SOURCES`: its normalised score for the
  item (``src_<name>``, 0 when the source did not propose it);
* the first pass's own score and ``log1p`` of its rank (the list position the
  first pass gave the item);
* ``cooc_share``: P(q|p) of the best co-occurrence seed;
* ``emb_<type>``: cosine between the candidate's ``<type>`` token and the mean
  of the user's recent ``<type>`` seeds (per token type of the model);
* ``bpr``: the factorisation's score (``bpr_known`` says whether it has one);
* ``log_pop``: the item's decayed popularity;
* the user's activity (``log_user_events``, ``log_user_idle_h``) and engagement
  with the item's category (share of the recent items and of the recent
  events, and their logs) and seller (decayed weight);
* the user's own history with the item (events by kind, hours since the last);
* ``log_price`` (``price_known``);
* hours since the catalogue last heard of the item and of its seller
  (``log_item_recency_h``, ``log_seller_recency_h``: fresh items, sellers
  likely still live).

Examples
--------
>>> from models.candidates.types import Candidate
>>> from models.surfaces import SurfaceContext
>>> ctx = SurfaceContext("u", now=0.0)
>>> x = candidate_features([Candidate("a", 1.0, "popularity", "")], ctx)
>>> x.shape == (1, len(FEATURE_NAMES)), float(x[0, FEATURE_NAMES.index("src_popularity")])
(True, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from models.candidates.types import Candidate

#: Candidate sources with a column each (the names of :data:`models.surfaces.SOURCES`).
FEATURE_SOURCES: tuple[str, ...] = (
    "etsy_user",
    "tk_voting",
    "trajectory_line",
    "thompson",
    "user_vector",
    "cooccurrence",
    "recently_viewed",
    "item_embedding",
    "item_cooccurrence",
    "cart_embedding",
    "cart_cooccurrence",
    "popularity",
    "category_trending",
)
#: Token types with an embedding-similarity column.
EMBEDDING_TYPES: tuple[str, ...] = ("view", "click", "cart", "purchase")
#: The user's own events with the item, by kind (views and clicks; carts and favourites; buys).
HISTORY_KINDS: dict[str, str] = {
    "view": "seen",
    "click": "seen",
    "favorite": "wanted",
    "cart": "wanted",
    "purchase": "bought",
}

FEATURE_NAMES: tuple[str, ...] = (
    *(f"src_{s}" for s in FEATURE_SOURCES),
    "first_pass_score",
    "log_first_pass_rank",
    "n_sources",
    "cooc_share",
    *(f"emb_{t}" for t in EMBEDDING_TYPES),
    "bpr",
    "bpr_known",
    "log_pop",
    "log_user_events",
    "log_user_idle_h",
    "user_category_share",
    "user_category_event_share",
    "log_user_category_share",
    "log_user_category_event_share",
    "log_user_seller",
    "log_item_seen",
    "log_item_wanted",
    "log_item_bought",
    "log_item_idle_h",
    "log_price",
    "price_known",
    "log_item_recency_h",
    "log_seller_recency_h",
)
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
_SOURCE_COLUMN = {s: _COLUMN[f"src_{s}"] for s in FEATURE_SOURCES}
_COOCCURRENCE_SOURCES = frozenset({"cooccurrence", "item_cooccurrence"})
_HISTORY_SLOT = {
    etype: ("seen", "wanted", "bought").index(kind) for etype, kind in HISTORY_KINDS.items()
}
#: Added to category shares before their log (a category the user never touched).
CATEGORY_SHARE_FLOOR = 0.01
#: Hours used for "never" in the idle-time columns (about a year).
NEVER_HOURS = 8760.0
#: User events read for the history columns.
HISTORY_EVENTS = 200


def candidate_features(candidates: Sequence[Candidate], ctx: Any) -> np.ndarray:
    """The feature matrix of a request's merged candidates, in their order.

    Parameters
    ----------
    candidates
        The first pass's merged candidates (:func:`~models.candidates.merge.merge`),
        in first-pass order.
    ctx
        The request's :class:`~models.surfaces.SurfaceContext` (anything may be missing).

    Returns
    -------
    numpy.ndarray
        ``float32``, shape ``(len(candidates), len(FEATURE_NAMES))``, finite.
    """
    n = len(candidates)
    x = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
    if n == 0:
        return x
    items = [c.item_id for c in candidates]
    _first_pass(candidates, x)
    _embedding(items, ctx, x)
    _factorisation(items, ctx, x)
    _popularity(items, ctx, x)
    _user(items, ctx, x)
    _price(items, ctx, x)
    _recency(items, ctx, x)
    np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return x


def _first_pass(candidates: Sequence[Candidate], x: np.ndarray) -> None:
    # Plain lists, one column at a time: numpy's per-element writes cost more than the work.
    n = len(candidates)
    by_source = {source: [0.0] * n for source in FEATURE_SOURCES}
    cooc = [0.0] * n
    counts = [0] * n
    for row, c in enumerate(candidates):
        normalised = c.evidence.get("normalised")
        parts = c.contributions or (c,)
        counts[row] = len(parts)
        for part in parts:
            column = by_source.get(part.source)
            if column is not None:
                value = normalised.get(part.source, 1.0) if normalised else 1.0
                if value > column[row]:
                    column[row] = value
            if part.source in _COOCCURRENCE_SOURCES:
                share = part.evidence.get("share")
                if share is not None and share > cooc[row]:
                    cooc[row] = float(share)
    for source, column in by_source.items():
        x[:, _SOURCE_COLUMN[source]] = column
    x[:, _COLUMN["cooc_share"]] = cooc
    x[:, _COLUMN["n_sources"]] = counts
    x[:, _COLUMN["first_pass_score"]] = [c.score for c in candidates]
    x[:, _COLUMN["log_first_pass_rank"]] = np.log1p(np.arange(n, dtype=np.float32))


def _embedding(items: list[str], ctx: Any, x: np.ndarray) -> None:
    model = getattr(ctx, "model", None)
    embedding = getattr(model, "embedding", None) if model is not None else None
    trajectory = getattr(ctx, "trajectory", None)
    if embedding is None or trajectory is None or not len(embedding):
        return
    vectors = embedding.normalized_vectors
    index_of = embedding.index_of
    for etype in EMBEDDING_TYPES:
        seeds = [index_of((item, etype)) for item in trajectory.seeds(etype, 10)]
        seeds = [row for row in seeds if row is not None]
        if not seeds:
            continue
        profile = vectors[seeds].mean(axis=0)
        norm = float(np.linalg.norm(profile))
        if norm <= 0.0:
            continue
        rows = [index_of((item, etype)) for item in items]
        known = np.array([r is not None for r in rows])
        if not known.any():
            continue
        picked = np.array([r for r in rows if r is not None], dtype=np.int64)
        x[known, _COLUMN[f"emb_{etype}"]] = vectors[picked] @ (profile / norm)


def _factorisation(items: list[str], ctx: Any, x: np.ndarray) -> None:
    model = getattr(ctx, "model", None)
    mf = getattr(model, "factorization", None) if model is not None else None
    if mf is None or not hasattr(mf, "score") or mf.user_vector(ctx.user_id) is None:
        return
    scores = np.asarray(mf.score(ctx.user_id, items), dtype=np.float32)
    known = np.isfinite(scores)
    x[known, _COLUMN["bpr"]] = scores[known]
    x[known, _COLUMN["bpr_known"]] = 1.0


def _popularity(items: list[str], ctx: Any, x: np.ndarray) -> None:
    popularity = getattr(ctx, "popularity", None)
    overall = getattr(popularity, "overall", None)
    if overall is None:
        return
    counts = overall.counts
    factor = overall.decay_factor(ctx.now)
    x[:, _COLUMN["log_pop"]] = np.log1p(
        np.array([counts.get(item, 0.0) for item in items], dtype=np.float64) * factor
    )


def _user(items: list[str], ctx: Any, x: np.ndarray) -> None:
    trajectory = getattr(ctx, "trajectory", None)
    if trajectory is None:
        x[:, _COLUMN["log_user_idle_h"]] = math.log1p(NEVER_HOURS)
        x[:, _COLUMN["log_item_idle_h"]] = math.log1p(NEVER_HOURS)
        x[:, _COLUMN["log_user_category_share"]] = math.log(CATEGORY_SHARE_FLOOR)
        x[:, _COLUMN["log_user_category_event_share"]] = math.log(CATEGORY_SHARE_FLOOR)
        return
    now = ctx.now
    recent = trajectory.recent(HISTORY_EVENTS)
    last_seen = getattr(trajectory, "last_seen", None)
    x[:, _COLUMN["log_user_events"]] = math.log1p(len(recent))
    idle = NEVER_HOURS if last_seen is None else max(now - last_seen, 0.0) / 3600.0
    x[:, _COLUMN["log_user_idle_h"]] = math.log1p(min(idle, NEVER_HOURS))
    history: dict[str, list[float]] = {}
    for item, etype, ts in recent:
        found = history.get(item)
        if found is None:
            found = history[item] = [0.0, 0.0, 0.0, ts]
        found[_HISTORY_SLOT.get(etype, 0)] += 1.0
        if ts > found[3]:
            found[3] = ts
    n = len(items)
    never = math.log1p(NEVER_HOURS)
    columns = [[0.0] * n, [0.0] * n, [0.0] * n, [never] * n]
    log1p = math.log1p
    for row, item in enumerate(items):
        found = history.get(item)
        if found is not None:
            columns[0][row] = log1p(found[0])
            columns[1][row] = log1p(found[1])
            columns[2][row] = log1p(found[2])
            columns[3][row] = log1p(min(max(now - found[3], 0.0) / 3600.0, NEVER_HOURS))
    for name, column in zip(
        ("log_item_seen", "log_item_wanted", "log_item_bought", "log_item_idle_h"),
        columns,
        strict=True,
    ):
        x[:, _COLUMN[name]] = column
    category_of = getattr(ctx, "category_of", None)
    if category_of is not None and history:
        categories: dict[str | None, int] = {}  # distinct items per category
        events: dict[str | None, float] = {}  # events per category
        for item, found in history.items():
            category = category_of(item)
            categories[category] = categories.get(category, 0) + 1
            events[category] = events.get(category, 0.0) + found[0] + found[1] + found[2]
        of_items = [category_of(item) for item in items]
        total = float(len(history))
        shares = np.array([categories.get(c, 0) / total for c in of_items])
        event_shares = np.array([events.get(c, 0.0) for c in of_items]) / float(len(recent))
        x[:, _COLUMN["user_category_share"]] = shares
        x[:, _COLUMN["user_category_event_share"]] = event_shares
        # Engagement odds grow about linearly with taste when taste is small: the logs
        # let a linear head follow (the simulator's P(click) = .6 a / (1 + a)).
        x[:, _COLUMN["log_user_category_share"]] = np.log(shares + CATEGORY_SHARE_FLOOR)
        x[:, _COLUMN["log_user_category_event_share"]] = np.log(event_shares + CATEGORY_SHARE_FLOOR)
    else:
        x[:, _COLUMN["log_user_category_share"]] = math.log(CATEGORY_SHARE_FLOOR)
        x[:, _COLUMN["log_user_category_event_share"]] = math.log(CATEGORY_SHARE_FLOOR)
    seller_of = getattr(ctx, "seller_of", None)
    if seller_of is not None:
        sellers = dict(trajectory.top_sellers(50, now))
        if sellers:
            x[:, _COLUMN["log_user_seller"]] = np.log1p(
                [sellers.get(seller_of(item), 0.0) for item in items]
            )


def _recency(items: list[str], ctx: Any, x: np.ndarray) -> None:
    never = math.log1p(NEVER_HOURS)
    x[:, _COLUMN["log_item_recency_h"]] = never
    x[:, _COLUMN["log_seller_recency_h"]] = never
    seen_at = getattr(ctx, "seen_at", None)
    if seen_at is None:
        return
    now = ctx.now

    def hours(ts: float | None) -> float:
        if ts is None or not math.isfinite(ts):
            return never
        return math.log1p(min(max(now - ts, 0.0) / 3600.0, NEVER_HOURS))

    x[:, _COLUMN["log_item_recency_h"]] = [hours(seen_at(item)) for item in items]
    seller_of = getattr(ctx, "seller_of", None)
    seller_seen_at = getattr(ctx, "seller_seen_at", None)
    if seller_of is not None and seller_seen_at is not None:
        x[:, _COLUMN["log_seller_recency_h"]] = [
            hours(seller_seen_at(s)) if (s := seller_of(item)) is not None else never
            for item in items
        ]


def _price(items: list[str], ctx: Any, x: np.ndarray) -> None:
    price_of = getattr(ctx, "price_of", None)
    if price_of is None:
        return
    prices = [price_of(item) for item in items]
    known = [isinstance(p, int | float) and not isinstance(p, bool) and p >= 0 for p in prices]
    x[:, _COLUMN["log_price"]] = np.log1p(
        [p if ok else 0.0 for p, ok in zip(prices, known, strict=True)]
    )
    x[:, _COLUMN["price_known"]] = known
