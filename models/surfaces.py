"""Surfaces: named recipes of candidate sources and their weights, and the runner.

A :class:`Surface` says which sources (see :data:`SOURCES`) feed one placement
and how much each weighs in the first-pass score:

* ``home``: user -> items: the user's own recent items (continue shopping),
  the raw user vector, co-occurrence (needs no model), and popularity as the
  fallback; Etsy's click/cart seeds and Whatnot's three guard rails (T x K
  voting, trajectory line, Thompson sampling) are registered sources a
  configuration may weigh in (measured, they added nothing by default);
* ``item``: the item page, neighbours of the viewed item (needs ``item_id``),
  nudged toward the user by T x K voting;
* ``cart``: Etsy's cart page, nearest purchase tokens to the cart token of the
  last carted item (``item_id``, else the user's last cart), falling back to
  its click token; co-occurrence when there is no model.

:func:`generate` runs a recipe for one request: every primary source that has
what it needs (a missing model, trajectory or table skips the source rather
than failing), :func:`~models.candidates.merge.merge`, filters (purchased,
unavailable, offline sellers, excluded), then, when fewer than ``k`` remain,
the fallback sources fill the tail; the ranker has the last word.

Examples
--------
>>> from models.popularity import Popularity
>>> pop = Popularity(half_life=None)
>>> _ = pop.update_many([{"item_id": i, "type": "click", "ts": 0.0} for i in "aab"])
>>> surfaces = load_surfaces({"home": {"thompson": 0.5}})
>>> surfaces["home"].weights["thompson"], surfaces["home"].weights["recently_viewed"]
(0.5, 1.0)
>>> ctx = SurfaceContext("new-user", now=0.0, popularity=pop, k=5)
>>> [(c.item_id, c.reason) for c in generate(surfaces["home"], ctx)]
[('a', 'trending now'), ('b', 'trending now')]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from models.candidates.cart_page import cart_cooccurrence, cart_embedding
from models.candidates.cooccurrence import cooccurrence
from models.candidates.etsy_user import etsy_user
from models.candidates.item_page import item_cooccurrence, item_embedding
from models.candidates.merge import Filters, IdSet, PassThroughRanker, merge
from models.candidates.popularity import popularity, top_category
from models.candidates.recently_viewed import recently_viewed
from models.candidates.thompson import thompson
from models.candidates.tk_voting import tk_voting
from models.candidates.trajectory_line import trajectory_line
from models.candidates.types import (
    Bandit,
    Candidate,
    CategoryOf,
    NameOf,
    NeighbourLookup,
    PopularityCounts,
    Ranker,
    SellerItems,
    SellerOf,
    TrainedModel,
    Trajectory,
)
from models.candidates.user_vector import user_vector


class SurfaceError(ValueError):
    """An unknown surface or source, a bad weight, or a request missing its context."""


@dataclass
class SurfaceContext:
    """Everything one request's sources may read; anything may be missing.

    Parameters
    ----------
    user_id
        Who asks.
    now
        Event time for decayed counts and the bandit.
    trajectory, bandit
        The user's state (``None`` for a user never seen).
    neighbours
        Token -> co-occurrence neighbours (the agent's table ``get``).
    popularity
        Trending counts.
    model
        The trained model (``index``, ``factorization``); ``None`` before the
        first training: the model-based sources are skipped.
    item_id
        The viewed item (item page) or the carted item (cart page).
    k
        Items returned.
    per_source
        Candidates each source may return (Etsy: 200 per seed).
    exclude, unavailable, offline_sellers
        Filters (sets of ids or predicates); purchases come from the trajectory.
    rng
        Random generator for Thompson sampling (seed it to reproduce a request).
    category_of, seller_of, seller_items, name_of, price_of, seen_at
        Catalogue look-ups (item -> category, item -> seller, seller -> items,
        item -> display name for reasons, item -> price or ``None``, item or
        seller id -> when the catalogue last heard of it or ``None``).
    ranker
        The second pass (default: keep the first-pass order); it is given
        this context too (the learned ranker's features read it).
    """

    user_id: str
    now: float
    trajectory: Trajectory | None = None
    bandit: Bandit | None = None
    neighbours: NeighbourLookup | None = None
    popularity: PopularityCounts | None = None
    model: TrainedModel | None = None
    item_id: str | None = None
    k: int = 20
    per_source: int = 200
    exclude: IdSet = frozenset()
    unavailable: IdSet = frozenset()
    offline_sellers: IdSet = frozenset()
    rng: np.random.Generator | None = None
    category_of: CategoryOf | None = None
    seller_of: SellerOf | None = None
    seller_items: SellerItems | None = None
    name_of: NameOf = str
    price_of: Callable[[str], Any] | None = None
    seen_at: Callable[[str], float | None] | None = None
    seller_seen_at: Callable[[str], float | None] | None = None
    ranker: Ranker = field(default_factory=PassThroughRanker)

    @property
    def index(self) -> Any:
        """The model's token index, or ``None``."""
        return getattr(self.model, "index", None) if self.model is not None else None

    @property
    def factorization(self) -> Any:
        """The model's factorisation, or ``None``."""
        return getattr(self.model, "factorization", None) if self.model is not None else None

    def carted_item(self) -> str | None:
        """The cart page's item: ``item_id``, else the user's last carted item."""
        if self.item_id is not None:
            return self.item_id
        if self.trajectory is None:
            return None
        last = self.trajectory.seeds("cart", 1)
        return last[0] if last else None


# -- the sources, as "context -> candidates or None (cannot run)" --------------------
def _etsy_user(ctx: SurfaceContext) -> list[Candidate] | None:
    if ctx.trajectory is None or ctx.index is None:
        return None
    return etsy_user(ctx.trajectory, ctx.index, per_seed=ctx.per_source, name_of=ctx.name_of)


def _tk_voting(ctx: SurfaceContext) -> list[Candidate] | None:
    if ctx.trajectory is None or ctx.index is None:
        return None
    return tk_voting(ctx.trajectory, ctx.index, name_of=ctx.name_of)


def _trajectory_line(ctx: SurfaceContext) -> list[Candidate] | None:
    if ctx.trajectory is None or ctx.index is None:
        return None
    return trajectory_line(ctx.trajectory, ctx.index)


def _thompson(ctx: SurfaceContext) -> list[Candidate] | None:
    if ctx.bandit is None or ctx.index is None:
        return None
    rng = ctx.rng if ctx.rng is not None else np.random.default_rng()
    return thompson(
        ctx.bandit,
        ctx.index,
        rng,
        now=ctx.now,
        k=ctx.per_source,
        trajectory=ctx.trajectory,
        seller_items=ctx.seller_items,
        seller_of=ctx.seller_of,
        name_of=ctx.name_of,
    )


def _user_vector(ctx: SurfaceContext) -> list[Candidate] | None:
    if ctx.factorization is None:
        return None
    purchased = ctx.trajectory.purchased if ctx.trajectory is not None else ()
    return user_vector(ctx.user_id, ctx.factorization, k=ctx.per_source, purchased=purchased)


def _recently_viewed(ctx: SurfaceContext) -> list[Candidate] | None:
    if ctx.trajectory is None:
        return None
    # A user's own items are few and cheap: never cut them below the list's length.
    return recently_viewed(ctx.trajectory, now=ctx.now, k=max(ctx.per_source, ctx.k))


def _cooccurrence(ctx: SurfaceContext) -> list[Candidate] | None:
    if ctx.trajectory is None or ctx.neighbours is None:
        return None
    return cooccurrence(ctx.trajectory, ctx.neighbours, now=ctx.now, name_of=ctx.name_of)


def _popularity(ctx: SurfaceContext) -> list[Candidate] | None:
    if ctx.popularity is None:
        return None
    if ctx.item_id is not None and ctx.category_of is not None:
        category = ctx.category_of(ctx.item_id)
    else:
        category = top_category(ctx.trajectory, ctx.category_of, ctx.now)
    return popularity(ctx.popularity, now=ctx.now, k=ctx.per_source, category=category)


def _category_trending(ctx: SurfaceContext) -> list[Candidate] | None:
    # Only for users with a top category: a new user gets plain popularity (the fallback).
    if ctx.popularity is None or top_category(ctx.trajectory, ctx.category_of, ctx.now) is None:
        return None
    found = _popularity(ctx)
    if found is None:
        return None
    return [dataclasses.replace(c, source="category_trending") for c in found]


def _item_embedding(ctx: SurfaceContext) -> list[Candidate] | None:
    if ctx.item_id is None or ctx.index is None:
        return None
    return item_embedding(ctx.item_id, ctx.index, k=ctx.per_source, name_of=ctx.name_of)


def _item_cooccurrence(ctx: SurfaceContext) -> list[Candidate] | None:
    if ctx.item_id is None or ctx.neighbours is None:
        return None
    return item_cooccurrence(
        ctx.item_id, ctx.neighbours, now=ctx.now, k=ctx.per_source, name_of=ctx.name_of
    )


def _cart_embedding(ctx: SurfaceContext) -> list[Candidate] | None:
    carted = ctx.carted_item()
    if carted is None or ctx.index is None:
        return None
    return cart_embedding(carted, ctx.index, k=ctx.per_source, name_of=ctx.name_of)


def _cart_cooccurrence(ctx: SurfaceContext) -> list[Candidate] | None:
    carted = ctx.carted_item()
    if carted is None or ctx.neighbours is None:
        return None
    return cart_cooccurrence(
        carted, ctx.neighbours, now=ctx.now, k=ctx.per_source, name_of=ctx.name_of
    )


@dataclass(frozen=True)
class SourceSpec:
    """A registered source: how to run it and whether it only fills a short list."""

    run: Callable[[SurfaceContext], list[Candidate] | None]
    fallback: bool = False


#: Every source a surface may name.
SOURCES: dict[str, SourceSpec] = {
    "etsy_user": SourceSpec(_etsy_user),
    "tk_voting": SourceSpec(_tk_voting),
    "trajectory_line": SourceSpec(_trajectory_line),
    "thompson": SourceSpec(_thompson),
    "user_vector": SourceSpec(_user_vector),
    "cooccurrence": SourceSpec(_cooccurrence),
    "recently_viewed": SourceSpec(_recently_viewed),
    "item_embedding": SourceSpec(_item_embedding),
    "item_cooccurrence": SourceSpec(_item_cooccurrence),
    "cart_embedding": SourceSpec(_cart_embedding),
    "cart_cooccurrence": SourceSpec(_cart_cooccurrence),
    "popularity": SourceSpec(_popularity, fallback=True),
    # The same trending-in-your-top-category list as a primary source: on the
    # simulator it beat every personalised source at session start
    # (benchmarks/online_quality.py), so home blends it in, not only as a fill.
    "category_trending": SourceSpec(_category_trending),
}


@dataclass(frozen=True)
class Surface:
    """A named recipe: source -> weight (0 disables a source).

    ``requires_item`` surfaces refuse a request without ``ctx.item_id``.
    """

    name: str
    weights: Mapping[str, float]
    requires_item: bool = False

    def sources(self, fallback: bool) -> list[str]:
        """The enabled primary (or fallback) sources, in recipe order."""
        return [
            name
            for name, weight in self.weights.items()
            if weight > 0.0 and SOURCES[name].fallback == fallback
        ]


DEFAULT_SURFACES: dict[str, Surface] = {
    # Weights measured, not set by hand: a coordinate search over the four sets of
    # benchmarks/quality.py (Taobao dev users and 2-hour slice, MovieLens 100k, the
    # simulator) on the mean of hit@20 + hit@100 relative to each set's best single
    # source. The user's own recent items lead (on shop logs most next-day carts
    # are of items already viewed); the BPR user vector and co-occurrence fill
    # behind them. The other sources scored below these alone and added nothing
    # in the search: they stay available to a surface that names them.
    "home": Surface(
        "home",
        {
            "recently_viewed": 1.0,
            "user_vector": 0.25,
            "cooccurrence": 0.1,
            "etsy_user": 0.0,
            "tk_voting": 0.0,
            "trajectory_line": 0.0,
            "thompson": 0.0,
            "category_trending": 0.0,
            "popularity": 0.3,
        },
    ),
    "item": Surface(
        "item",
        {"item_embedding": 1.0, "item_cooccurrence": 1.0, "tk_voting": 0.3, "popularity": 0.2},
        requires_item=True,
    ),
    "cart": Surface("cart", {"cart_embedding": 1.0, "cart_cooccurrence": 1.0, "popularity": 0.2}),
}


def load_surfaces(config: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Surface]:
    """The default surfaces with ``config``'s weights laid over them.

    Parameters
    ----------
    config
        Surface name -> {source name -> weight}, e.g. the ``[surfaces.home]``
        table of the TOML. Listed weights replace the defaults; 0 disables a
        source; sources not listed keep their default weight.

    Returns
    -------
    dict of str to Surface

    Raises
    ------
    SurfaceError
        An unknown surface or source name, or a weight that is not a finite
        number >= 0.

    Examples
    --------
    >>> load_surfaces({"hom": {}})
    Traceback (most recent call last):
    ...
    models.surfaces.SurfaceError: unknown surface 'hom'; expected one of cart, home, item
    """
    surfaces = dict(DEFAULT_SURFACES)
    for name, weights in (config or {}).items():
        default = surfaces.get(name)
        if default is None:
            raise SurfaceError(
                f"unknown surface {name!r}; expected one of {', '.join(sorted(surfaces))}"
            )
        if not isinstance(weights, Mapping):
            raise SurfaceError(f"surfaces.{name}: expected a table of source = weight")
        merged = dict(default.weights)
        for source, weight in weights.items():
            if source not in SOURCES:
                raise SurfaceError(
                    f"surfaces.{name}: unknown source {source!r}; "
                    f"expected one of {', '.join(sorted(SOURCES))}"
                )
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not math.isfinite(weight)
                or weight < 0
            ):
                raise SurfaceError(
                    f"surfaces.{name}.{source}: weight must be a number >= 0, got {weight!r}"
                )
            merged[source] = float(weight)
        surfaces[name] = Surface(name, merged, default.requires_item)
    return surfaces


def surface_named(surfaces: Mapping[str, Surface], name: str) -> Surface:
    """``surfaces[name]``, with a clear :class:`SurfaceError` for an unknown name."""
    surface = surfaces.get(name)
    if surface is None:
        raise SurfaceError(
            f"unknown surface {name!r}; expected one of {', '.join(sorted(surfaces))}"
        )
    return surface


def _run(names: list[str], ctx: SurfaceContext, trace: dict[str, Any] | None) -> list[Candidate]:
    found: list[Candidate] = []
    for name in names:
        out = SOURCES[name].run(ctx)
        if trace is not None:
            if out is None:
                trace.setdefault("skipped", []).append(name)
            else:
                trace.setdefault("ran", {})[name] = len(out)
        if out:
            found.extend(out)
    return found


def generate(
    surface: Surface, ctx: SurfaceContext, trace: dict[str, Any] | None = None
) -> list[Candidate]:
    """Run a surface's recipe for one request: at most ``ctx.k`` merged candidates.

    Parameters
    ----------
    surface
        The recipe.
    ctx
        The request's state, look-ups and filters.
    trace
        If given, filled with ``"ran"`` (source -> candidates returned),
        ``"skipped"`` (sources lacking what they need) and ``"filtered"``
        (reason -> items removed).

    Returns
    -------
    list of Candidate
        Merged candidates (every source and reason kept), primary sources
        first, then fallback fill, in the ranker's order.

    Raises
    ------
    SurfaceError
        ``surface.requires_item`` and no ``ctx.item_id``.
    """
    if surface.requires_item and ctx.item_id is None:
        raise SurfaceError(f"surface {surface.name!r} needs an item_id in the request")
    purchased = ctx.trajectory.purchased if ctx.trajectory is not None else frozenset()
    filters = Filters(
        purchased=purchased,
        unavailable=ctx.unavailable,
        offline_sellers=ctx.offline_sellers,
        seller_of=ctx.seller_of,
        exclude=ctx.exclude,
    )
    if trace is not None:
        trace.setdefault("filtered", {})

    def keep(candidates: list[Candidate]) -> list[Candidate]:
        if trace is None:
            return filters.apply(candidates)
        kept = []
        for c in candidates:
            why = filters.why_removed(c.item_id)
            if why is None:
                kept.append(c)
            else:
                trace["filtered"][why] = trace["filtered"].get(why, 0) + 1
        return kept

    chosen = keep(merge(_run(surface.sources(False), ctx, trace), surface.weights))
    if len(chosen) < ctx.k:
        fill = keep(merge(_run(surface.sources(True), ctx, trace), surface.weights))
        present = {c.item_id for c in chosen}
        chosen.extend(c for c in fill if c.item_id not in present)
    return ctx.ranker.rank(ctx.user_id, chosen, ctx)[: ctx.k]


class CatalogueView(Protocol):
    """What :func:`build_context` reads of the catalogue (an :class:`ItemCatalogue`)."""

    seller_online: Mapping[str, bool]

    def available(self, item_id: str) -> bool: ...

    def category(self, item_id: str) -> str | None: ...

    def seller(self, item_id: str) -> str | None: ...

    def items_of_seller(self, seller: str, limit: int = ...) -> list[str]: ...

    def get(self, item_id: str) -> Mapping[str, Any]: ...


def build_context(
    user_id: str,
    *,
    now: float,
    trajectory: Trajectory | None,
    bandit: Bandit | None,
    neighbours: NeighbourLookup | None,
    popularity: PopularityCounts | None,
    catalogue: CatalogueView | None,
    model: TrainedModel | None,
    item_id: str | None = None,
    k: int = 20,
    per_source: int = 50,
    exclude: IdSet = frozenset(),
    seed: int | None = None,
    ranker: Ranker | None = None,
) -> SurfaceContext:
    """The one way a request's :class:`SurfaceContext` is made from streaming state.

    The worker (per request) and the offline evaluation (per test user) both
    call it, so an evaluated list is built exactly as a served one.

    Parameters
    ----------
    user_id
        Who asks.
    now
        Read time of every decayed count and of the bandit.
    trajectory, bandit
        The user's state (``None`` for a user never seen).
    neighbours
        Token ``(item_id, type)`` -> its co-occurrence neighbours, or ``None``.
    popularity
        Trending counts.
    catalogue
        The item catalogue: availability and offline sellers become filters,
        categories and sellers the look-ups of the sources.
    model
        The live model (``index``, ``factorization``), or ``None``.
    item_id
        The item of an item or cart page.
    k, per_source
        Items returned, candidates per source.
    exclude
        Items the caller does not want.
    seed
        Seed of Thompson sampling (``None``: fresh randomness per request).
    ranker
        The second pass over the merged candidates (``None``: keep the merge's order).

    Examples
    --------
    >>> from models.catalogue import ItemCatalogue
    >>> cat = ItemCatalogue()
    >>> cat.update({"item_id": "a", "item": {"category": "hats", "available": False}})
    >>> ctx = build_context("u", now=0.0, trajectory=None, bandit=None, neighbours=None,
    ...                     popularity=None, catalogue=cat, model=None, seed=1)
    >>> ctx.category_of("a"), Filters(unavailable=ctx.unavailable).why_removed("a")
    ('hats', 'unavailable')
    """
    context: dict[str, Any] = {}
    if catalogue is not None:
        online = catalogue.seller_online
        context = {
            "unavailable": lambda item: not catalogue.available(item),
            "offline_sellers": lambda seller: online.get(seller, True) is False,
            "category_of": catalogue.category,
            "seller_of": catalogue.seller,
            "seller_items": catalogue.items_of_seller,
            "price_of": lambda item: catalogue.get(item).get("price"),
        }
        # The second pass's recency features read when each item and seller was last heard of.
        item_ts = getattr(catalogue, "item_ts", None)
        seller_ts = getattr(catalogue, "seller_ts", None)
        if item_ts is not None and seller_ts is not None:
            context["seen_at"] = item_ts.get
            context["seller_seen_at"] = seller_ts.get
    return SurfaceContext(
        user_id,
        now=now,
        trajectory=trajectory,
        bandit=bandit,
        neighbours=neighbours,
        popularity=popularity,
        model=model,
        item_id=item_id,
        k=k,
        per_source=per_source,
        exclude=exclude,
        rng=np.random.default_rng(seed),
        **({"ranker": ranker} if ranker is not None else {}),
        **context,
    )
