"""Synthetic live-shopping clickstream with planted, learnable structure.

The simulator is the demo's live traffic and the ground truth of the quality
benchmarks: every regularity below is planted on purpose so that a model trained
on the emitted sequences can (and should) recover it, and the accessors of
:class:`ClickstreamSimulator` expose the truth to score it against.

The model
---------
Catalogue (fixed at construction, from ``seed``)
    ``categories`` categories ``c0 ..``; category shares ~ Dirichlet(2) and
    every category holds at least one of the ``items`` items ``i0 ..``. Each
    item has a latent position ``x`` uniform on the circle [0, 1) within its
    category; its *rank* is its index along that circle. Popularity within a
    category is Zipf: the item of (random) popularity rank ``r`` has weight
    ``(r + 1) ** -zipf_exponent``. Prices are a category base price
    (log-normal) times an item factor (log-normal).
Substitutes
    ``substitutes(A, k)``: the ``k`` items of A's category nearest to A along
    the circle of ranks (A±1, A±2, ...). Browsing moves between them.
Complements
    Each category ``c`` has one complementary category (a random cyclic
    permutation, never ``c`` itself) and, with probability
    ``second_complement_rate``, a second one. ``complements(A)`` is, for each
    complementary category ``d``, the ``complements_per_category`` items of
    ``d`` whose latent position is nearest to A's ``x`` (phone at x -> the cases
    at x). The mapping is deterministic; carts go there.
Sellers (live shopping)
    Every item has one of ``sellers`` sellers ``s0 ..`` (85% of the time one
    whose home category is the item's). Time is cut into slots of
    ``seller_slot_seconds`` (absolute epoch slots); seller ``s`` is live in slot
    ``n`` iff ``(n + phase_s) % period_s < on_s``: a periodic schedule with a
    period of ``seller_period_hours`` and an online fraction in
    ``seller_online_fraction``. Items of an offline seller are unavailable: they
    are never shown or engaged with.
Users
    ``users`` users ``u0 ..``. Persona ``m`` (one of ``personas``) has a
    category profile ``p_m ~ Dirichlet(persona_alpha)``; a user of persona m
    has base taste ``theta0 ~ Dirichlet(taste_concentration * p_m + 0.05)``,
    mixed with 2% uniform. Taste drifts linearly toward a one-hot *drift
    target* category (never the user's favourite): at ``ts``,
    ``theta(ts) = (1 - w) theta0 + w e_target`` with
    ``w = drift_u * clip((ts - origin) / (drift_days * 86400), 0, 1)`` and ``drift_u =
    drift_strength * U(0.5, 1.5)`` clipped to [0, 1]. ``origin`` is
    ``start_ts`` for :meth:`~ClickstreamSimulator.events` and the first clock
    reading for :meth:`~ClickstreamSimulator.live_events`.
Sessions
    Each user alternates sessions and gaps: a gap is ``min_session_gap`` plus
    an exponential whose mean makes the whole stream run at ``events_per_day``
    (hours with the defaults; a rate that ``users`` cannot reach with gaps of
    at least ``min_session_gap`` warns and runs slower). Users start at a
    random point of their cycle, so the rate is flat from the start. A session
    has ``1 + Geometric`` steps (mean ``steps_per_session``) and
    ``session_id`` ``{run}-{n}``; the session's taste is
    ``theta(session start)`` and its gain for category c is
    ``g_c = 2 a / (1 + a)`` with ``a = C * theta_c`` (1 for an average
    category, up to 2 for a favourite, near 0 for an ignored one).
A step at time t
    1. Target item: with ``revisit_rate`` an item from the user's recent
       clicks/carts (surface ``history``; if it is now unavailable the step is
       one ``view`` with ``available=false`` and nothing else); else, with
       ``substitute_rate`` after the first step, a *substitute move* from the
       current item: rank offset ``±(1 + floor(Exp(substitute_spread)))``
       (surface ``similar``); else a *jump*: category ~ theta, item ~ Zipf
       popularity (surface ``home`` on the first step, ``search`` later).
       Unavailable draws are retried a few times, then the step is skipped.
    2. Slate of ``slate_size`` tiles at t: the target at a random position
       gets a ``view``; the others (more substitutes of the current item on
       ``similar``, popular items of the category elsewhere) get an
       ``impression``. Views, clicks and impressions carry
       ``context = {surface, position}``.
    3. Funnel, each stage seconds after the previous one and only while the
       item is available: ``click`` with ``min(.95, click_rate * g)``;
       ``favorite`` with ``favorite_rate * g`` after a click; ``cart`` with
       ``min(.9, cart_rate * g)`` after a click; the carted item is, with
       ``complement_cart_rate``, a complement of the clicked item (else the
       clicked item itself): with ``complement_exact_rate`` a random available
       one of ``complements(A)``, otherwise a popular item of one of the
       complementary categories (related at category level only, so the
       item-level signal is strong but not saturated); ``purchase`` of the
       carted item with ``min(.95, purchase_rate * g)``. Carts and purchases
       have ``value = price``.
    4. The next step starts 3 s + Exp(25 s) after the last event.

So clicks lead to substitutes (same category, nearby rank) and carts lead to
complements (another category): "clicked A" and "carted A" have different
neighbours, as in Etsy's interaction-specific embeddings.

Events come in ``ts`` order (ties broken deterministically); ``ts`` has
millisecond precision and availability is decided at the emitted ``ts``. Same config, same
output, byte for byte; ``event_id`` is ``{run}e{n}`` with ``run = s{seed}`` (or
``s{seed}t{first clock second}`` for a live run, so restarts do not collide).

Examples
--------
>>> sim = ClickstreamSimulator(SimulatorConfig(users=20, items=200, categories=8, sellers=10))
>>> events = list(sim.events(500))
>>> len(events), events[0]["user_id"][0], events[0]["item_id"][0]
(500, 'u', 'i')
>>> all(a["ts"] <= b["ts"] for a, b in zip(events, events[1:]))
True
>>> sim.item_category(sim.complements("i0")[0]) != sim.item_category("i0")
True
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import math
import random
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SECONDS_PER_DAY = 86400.0
_HISTORY_SIZE = 10
_RETRIES = 6
#: Empirical events per step: the share of slate tiles filled (duplicate or unavailable
#: fillers are dropped) and the funnel events; only used to turn ``events_per_day``
#: into a session gap.
_SLATE_FILL = 0.8
_FUNNEL_EVENTS_PER_STEP = 0.7
#: Mean seconds a step lasts (funnel delays plus the dwell before the next step).
_SECONDS_PER_STEP = 45.0


@dataclass(frozen=True)
class SimulatorConfig:
    """Knobs of :class:`ClickstreamSimulator` (see the module docstring for their role)."""

    users: int = 1000
    items: int = 5000
    categories: int = 30
    sellers: int = 200
    seed: int = 0
    start_ts: float = 1767225600.0  # 2026-01-01T00:00:00Z
    #: Stream rate for :meth:`ClickstreamSimulator.events`; None: ``n / span_days``.
    events_per_day: float | None = None
    span_days: float = 7.0
    #: Stream rate for :meth:`ClickstreamSimulator.live_events`, on the wall clock.
    live_events_per_second: float = 5.0
    personas: int = 8
    persona_alpha: float = 0.3
    taste_concentration: float = 10.0
    zipf_exponent: float = 1.0
    complements_per_category: int = 2
    second_complement_rate: float = 0.5
    slate_size: int = 3
    steps_per_session: float = 8.0
    min_session_gap: float = 3600.0
    substitute_rate: float = 0.8
    substitute_spread: float = 2.0
    revisit_rate: float = 0.05
    click_rate: float = 0.3
    favorite_rate: float = 0.04
    cart_rate: float = 0.12
    complement_cart_rate: float = 0.7
    complement_exact_rate: float = 0.75
    purchase_rate: float = 0.35
    drift_strength: float = 0.6
    drift_days: float = 7.0
    seller_slot_seconds: float = 900.0
    seller_period_hours: tuple[float, float] = (4.0, 48.0)
    seller_online_fraction: tuple[float, float] = (0.55, 0.95)

    def __post_init__(self) -> None:
        if self.users < 1 or self.sellers < 1:
            raise ValueError("users and sellers must be at least 1")
        if self.categories < 2 or self.items < self.categories:
            raise ValueError("need at least 2 categories and at least one item per category")
        if self.slate_size < 1 or self.complements_per_category < 1 or self.personas < 1:
            raise ValueError("slate_size, complements_per_category and personas must be >= 1")
        if self.steps_per_session < 1 or self.span_days <= 0 or self.drift_days <= 0:
            raise ValueError("steps_per_session must be >= 1; span_days, drift_days > 0")
        if self.events_per_day is not None and self.events_per_day <= 0:
            raise ValueError("events_per_day must be positive")
        if self.live_events_per_second <= 0 or self.seller_slot_seconds <= 0:
            raise ValueError("live_events_per_second and seller_slot_seconds must be positive")
        rates = (
            "second_complement_rate substitute_rate revisit_rate click_rate favorite_rate "
            "cart_rate complement_cart_rate complement_exact_rate purchase_rate drift_strength"
        )
        for name in rates.split():
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        low, high = self.seller_online_fraction
        if not 0.0 < low <= high < 1.0:
            raise ValueError("seller_online_fraction must satisfy 0 < low <= high < 1")
        if not 0.0 < self.seller_period_hours[0] <= self.seller_period_hours[1]:
            raise ValueError("seller_period_hours must satisfy 0 < low <= high")


class ClickstreamSimulator:
    """Users, items, sellers and their planted structure; streams of events over them.

    Parameters
    ----------
    config
        The knobs; ``config.seed`` fixes everything.

    Examples
    --------
    >>> sim = ClickstreamSimulator(SimulatorConfig(users=5, items=50, categories=5, sellers=4))
    >>> sim.item_category("i3") == sim.catalogue()[3]["category"]
    True
    >>> len(sim.substitutes("i3", 4)), float(sim.user_taste("u0").sum())
    (4, 1.0)
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        rng = np.random.default_rng(config.seed)
        self._build_catalogue(rng)
        self._build_sellers(rng)
        self._build_users(rng)
        self._stream_seed = int(rng.integers(2**62))

    # ----------------------------------------------------------------- construction

    def _build_catalogue(self, rng: np.random.Generator) -> None:
        cfg = self.config
        n_cat, n_items = cfg.categories, cfg.items
        share = rng.dirichlet(np.full(n_cat, 2.0))
        sizes = 1 + rng.multinomial(n_items - n_cat, share)
        # Shuffled so that an item's id says nothing about its category.
        item_cat = rng.permutation(np.repeat(np.arange(n_cat), sizes))
        position = rng.random(n_items)
        popularity = np.empty(n_items)
        rank = np.empty(n_items, dtype=np.int64)
        members: list[np.ndarray] = []
        for c in range(n_cat):
            idx = np.flatnonzero(item_cat == c)
            idx = idx[np.argsort(position[idx], kind="stable")]
            members.append(idx)
            rank[idx] = np.arange(len(idx))
            popularity[idx] = (1.0 + rng.permutation(len(idx))) ** -cfg.zipf_exponent
        base_price = np.exp(rng.normal(3.3, 0.8, n_cat))
        price = np.maximum(
            0.99, np.round(base_price[item_cat] * np.exp(rng.normal(0, 0.35, n_items)), 2)
        )

        # Complementary categories: a random cycle (never c itself), sometimes a second one.
        cycle = rng.permutation(n_cat)
        following = np.empty(n_cat, dtype=np.int64)
        following[cycle] = np.roll(cycle, -1)
        comp_cats: list[list[int]] = []
        for c in range(n_cat):
            cats = [int(following[c])]
            if n_cat > 2 and rng.random() < cfg.second_complement_rate:
                others = [d for d in range(n_cat) if d != c and d != cats[0]]
                cats.append(int(others[rng.integers(len(others))]))
            comp_cats.append(cats)

        k = cfg.complements_per_category
        complements: list[list[int]] = [[] for _ in range(n_items)]
        for c in range(n_cat):
            xs = position[members[c]]
            for d in comp_cats[c]:
                ring = members[d]
                ring_x = position[ring]
                m = len(ring)
                start = np.searchsorted(ring_x, xs)
                cand = (start[:, None] + np.arange(-k, k)[None, :]) % m
                gap = np.abs(ring_x[cand] - xs[:, None])
                dist = np.minimum(gap, 1.0 - gap)  # circular distance
                order = np.argsort(dist, axis=1, kind="stable")
                nearest = ring[np.take_along_axis(cand, order, axis=1)]
                for a, row in zip(members[c].tolist(), nearest.tolist(), strict=True):
                    complements[a].extend(list(dict.fromkeys(row))[:k])

        self._item_cat = item_cat
        self._position = position
        self._rank = rank
        self._popularity = popularity
        self._price = price
        self._members = members
        self._comp_cats = comp_cats
        self._complements = complements
        self._item_ids = [f"i{i}" for i in range(n_items)]
        self._cat_names = [f"c{c}" for c in range(n_cat)]
        self._item_index = {name: i for i, name in enumerate(self._item_ids)}
        # Plain Python lists for the hot loop (numpy scalar access is slow).
        self._l_cat = item_cat.tolist()
        self._l_rank = rank.tolist()
        self._l_price = price.tolist()
        self._l_members = [m.tolist() for m in members]
        self._l_pop_cum = [np.cumsum(popularity[m]).tolist() for m in members]

    def _build_sellers(self, rng: np.random.Generator) -> None:
        cfg = self.config
        n_sellers, n_cat = cfg.sellers, cfg.categories
        home = rng.permutation(n_sellers) % n_cat
        item_seller = np.empty(cfg.items, dtype=np.int64)
        for c in range(n_cat):
            idx = self._members[c]
            locals_ = np.flatnonzero(home == c)
            anywhere = rng.integers(n_sellers, size=len(idx))
            if len(locals_):
                local_pick = locals_[rng.integers(len(locals_), size=len(idx))]
                item_seller[idx] = np.where(rng.random(len(idx)) < 0.85, local_pick, anywhere)
            else:
                item_seller[idx] = anywhere
        slots_per_hour = 3600.0 / cfg.seller_slot_seconds
        low = max(2, round(cfg.seller_period_hours[0] * slots_per_hour))
        high = max(low, round(cfg.seller_period_hours[1] * slots_per_hour))
        period = rng.integers(low, high + 1, size=n_sellers)
        fraction = rng.uniform(*cfg.seller_online_fraction, size=n_sellers)
        on = np.clip(np.round(period * fraction).astype(np.int64), 1, period - 1)
        phase = rng.integers(0, period)
        self._item_seller = item_seller
        self._seller_ids = [f"s{s}" for s in range(n_sellers)]
        self._seller_index = {name: s for s, name in enumerate(self._seller_ids)}
        self._l_seller = item_seller.tolist()
        self._l_period = period.tolist()
        self._l_on = on.tolist()
        self._l_phase = phase.tolist()

    def _build_users(self, rng: np.random.Generator) -> None:
        cfg = self.config
        n_users, n_cat = cfg.users, cfg.categories
        profiles = rng.dirichlet(np.full(n_cat, cfg.persona_alpha), size=cfg.personas)
        persona = rng.integers(cfg.personas, size=n_users)
        raw = rng.standard_gamma(cfg.taste_concentration * profiles[persona] + 0.05)
        taste = raw / raw.sum(axis=1, keepdims=True)
        self._taste0 = 0.98 * taste + 0.02 / n_cat
        favourite = self._taste0.argmax(axis=1)
        self._drift_target = (favourite + rng.integers(1, n_cat, size=n_users)) % n_cat
        self._drift = np.clip(cfg.drift_strength * rng.uniform(0.5, 1.5, n_users), 0.0, 1.0)
        self._user_ids = [f"u{u}" for u in range(n_users)]
        self._user_index = {name: u for u, name in enumerate(self._user_ids)}

    # --------------------------------------------------------------- ground truth

    def _item(self, item_id: str) -> int:
        try:
            return self._item_index[item_id]
        except KeyError:
            raise KeyError(f"unknown item {item_id!r}") from None

    def item_category(self, item_id: str) -> str:
        """The item's category name."""
        return self._cat_names[self._l_cat[self._item(item_id)]]

    def item_seller(self, item_id: str) -> str:
        """The item's seller name."""
        return self._seller_ids[self._l_seller[self._item(item_id)]]

    def item_price(self, item_id: str) -> float:
        """The item's price."""
        return self._l_price[self._item(item_id)]

    def categories(self) -> list[str]:
        """All category names."""
        return list(self._cat_names)

    def complement_categories(self, category: str) -> list[str]:
        """The one or two categories whose items complement ``category``'s."""
        return [self._cat_names[d] for d in self._comp_cats[self._cat_names.index(category)]]

    def complements(self, item_id: str) -> list[str]:
        """The items a user carts after clicking ``item_id`` (when carting a complement)."""
        return [self._item_ids[b] for b in self._complements[self._item(item_id)]]

    def substitutes(self, item_id: str, k: int = 10) -> list[str]:
        """The ``k`` items of the same category nearest along the latent circle."""
        i = self._item(item_id)
        ring = self._l_members[self._l_cat[i]]
        m, r = len(ring), self._l_rank[i]
        out: list[str] = []
        step = 1
        while len(out) < min(k, m - 1):
            for j in (r + step, r - step):
                name = self._item_ids[ring[j % m]]
                if ring[j % m] != i and name not in out and len(out) < k:
                    out.append(name)
            step += 1
        return out

    def user_taste(self, user_id: str, ts: float | None = None) -> np.ndarray:
        """The user's category distribution at ``ts`` (default: ``start_ts``, before drift)."""
        u = self._user_index[user_id]
        weight = self._drift_weight(u, 0.0 if ts is None else ts - self.config.start_ts)
        taste = (1.0 - weight) * self._taste0[u]
        taste[self._drift_target[u]] += weight
        return taste

    def user_drift_target(self, user_id: str) -> str:
        """The category the user's taste drifts toward."""
        return self._cat_names[int(self._drift_target[self._user_index[user_id]])]

    def _drift_weight(self, u: int, elapsed: float) -> float:
        ramp = min(1.0, max(0.0, elapsed / (self.config.drift_days * SECONDS_PER_DAY)))
        return float(self._drift[u]) * ramp

    def _seller_live(self, s: int, ts: float) -> bool:
        slot = int(ts // self.config.seller_slot_seconds)
        return (slot + self._l_phase[s]) % self._l_period[s] < self._l_on[s]

    def seller_live(self, seller: str, ts: float) -> bool:
        """Whether ``seller`` is live (its items available) at epoch second ``ts``."""
        return self._seller_live(self._seller_index[seller], ts)

    def item_available(self, item_id: str, ts: float) -> bool:
        """Whether the item can be shown and bought at ``ts`` (its seller is live)."""
        return self._seller_live(self._l_seller[self._item(item_id)], ts)

    def catalogue(self, ts: float | None = None) -> list[dict[str, Any]]:
        """Every item as ``{item_id, category, seller, price, available}`` (at ``ts``).

        ``available`` is taken at ``ts``, default ``start_ts``.
        """
        at = self.config.start_ts if ts is None else ts
        live = [self._seller_live(s, at) for s in range(self.config.sellers)]
        return [
            {
                "item_id": self._item_ids[i],
                "category": self._cat_names[c],
                "seller": self._seller_ids[s],
                "price": p,
                "available": live[s],
            }
            for i, (c, s, p) in enumerate(
                zip(self._l_cat, self._l_seller, self._l_price, strict=True)
            )
        ]

    # ------------------------------------------------------------------- streams

    def events(self, n: int) -> Iterator[dict[str, Any]]:
        """``n`` events in ``ts`` order on a simulated clock from ``start_ts``.

        The rate is ``events_per_day``, or ``n / span_days`` when unset, so that
        the stream spans about ``span_days`` days.
        """
        if n <= 0:
            return
        cfg = self.config
        per_day = cfg.events_per_day if cfg.events_per_day is not None else n / cfg.span_days
        run = _Run(self, cfg.start_ts, per_day, f"s{cfg.seed}")
        yield from itertools.islice(run.stream(), n)

    def live_events(
        self, clock: Callable[[], float], sleep: Callable[[float], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Endless events stamped with ``clock()`` time.

        The run starts at the first ``clock()`` reading and its internal schedule
        runs at ``live_events_per_second``. Two ways to pace it:

        * ``sleep=None`` (pull-paced, the default): the caller sets the pace;
          every event pulled gets ``ts = clock()`` (never decreasing). The
          internal time (session gaps, seller schedules, drift) then runs as fast
          as events are pulled, so ``seller_live(seller, ts)`` does not describe
          these ``ts``; sessions are still marked by ``session_id``.
        * ``sleep`` given (real time): each event is held back with ``sleep``
          until ``clock()`` reaches its scheduled time, which is its ``ts``; the
          stream is then at ``live_events_per_second`` and consistent with the
          ground-truth accessors (drift measured from the first reading).
          Blocking: run it in a thread from async code.

        Examples
        --------
        >>> sim = ClickstreamSimulator(SimulatorConfig(items=100, categories=4, sellers=5))
        >>> ticks = iter(range(1_800_000_000, 1_900_000_000))
        >>> [e["ts"] for e in itertools.islice(sim.live_events(lambda: next(ticks)), 3)]
        [1800000001, 1800000002, 1800000003]
        """
        origin = float(clock())
        per_day = self.config.live_events_per_second * SECONDS_PER_DAY
        # Pull-paced, the caller sets the rate: the configured one only shapes sessions.
        run = _Run(self, origin, per_day, f"s{self.config.seed}t{int(origin)}", sleep is not None)
        if sleep is None:
            last = origin
            for event in run.stream():
                now = clock()
                if now > last:
                    last = now
                event["ts"] = round(last, 3)
                yield event
            return
        for event in run.stream():
            now = clock()
            while event["ts"] > now:
                sleep(event["ts"] - now)
                now = clock()
            yield event


class _UserState:
    """A user's place in the stream: the pending events of the current step and the session."""

    __slots__ = (
        "cum",
        "cur",
        "gain",
        "history",
        "idx",
        "in_session",
        "index",
        "now",
        "pending",
        "session_id",
        "steps_left",
        "user_id",
    )

    def __init__(self, index: int, user_id: str, start: float) -> None:
        self.index = index
        self.user_id = user_id
        self.now = start
        self.pending: list[dict[str, Any]] = []
        self.idx = 0
        self.in_session = False
        self.steps_left = 0
        self.session_id = ""
        self.cum: list[float] = []
        self.gain: list[float] = []
        self.cur = -1
        self.history: list[int] = []


class _Run:
    """One pass of the generative process from ``origin`` (events or live)."""

    def __init__(
        self,
        sim: ClickstreamSimulator,
        origin: float,
        per_day: float,
        run: str,
        warn_if_too_fast: bool = True,
    ) -> None:
        cfg = sim.config
        self.sim = sim
        self.cfg = cfg
        self.origin = origin
        self.run = run
        self.rng = random.Random(sim._stream_seed)
        per_user_per_day = per_day / cfg.users
        session_events = cfg.steps_per_session * (
            _SLATE_FILL * cfg.slate_size + _FUNNEL_EVENTS_PER_STEP
        )
        cycle = SECONDS_PER_DAY * session_events / per_user_per_day
        session_seconds = cfg.steps_per_session * _SECONDS_PER_STEP
        shortest_cycle = session_seconds + cfg.min_session_gap + 60.0
        self.extra_gap = max(60.0, cycle - session_seconds - cfg.min_session_gap)
        if warn_if_too_fast and cycle < shortest_cycle:
            most = cfg.users * SECONDS_PER_DAY * session_events / shortest_cycle
            warnings.warn(
                f"{per_day:.0f} events/day is more than {cfg.users} users make with sessions "
                f"at least {cfg.min_session_gap:.0f} s apart (about {most:.0f}/day): the "
                "stream will be slower; add users or lower min_session_gap",
                RuntimeWarning,
                stacklevel=3,
            )
        self.step_p = 1.0 / cfg.steps_per_session  # geometric stop probability
        self.sessions = 0
        self.slot_seconds = cfg.seller_slot_seconds
        self.phase = np.asarray(sim._l_phase)
        self.period = np.asarray(sim._l_period)
        self.on = np.asarray(sim._l_on)
        self.slot_cache: dict[int, list[bool]] = {}
        # What every event says about its item, ready-made for the hot loop.
        self.item_meta = [
            (sim._item_ids[i], sim._cat_names[c], sim._seller_ids[s], sim._l_price[i])
            for i, (c, s) in enumerate(zip(sim._l_cat, sim._l_seller, strict=True))
        ]
        self.users = [
            _UserState(u, name, round(origin + self._first_start(session_seconds), 3))
            for u, name in enumerate(sim._user_ids)
        ]

    def _first_start(self, session_seconds: float) -> float:
        """Delay of a user's first session, drawn from the renewal process' equilibrium.

        A cycle is a fixed part (session + minimum gap) plus an exponential; starting
        each user at a random point of such a cycle keeps the stream's rate flat from
        the first hour (a uniform start would make it climb as second sessions pile up).
        """
        fixed = session_seconds + self.cfg.min_session_gap
        if self.rng.random() * (fixed + self.extra_gap) < fixed:
            return self.rng.random() * fixed
        return fixed + self._exp(self.extra_gap)

    def stream(self) -> Iterator[dict[str, Any]]:
        heap = [(u.now, u.index, u) for u in self.users]
        heapq.heapify(heap)
        seq = len(heap)
        prefix = f"{self.run}e"
        count = 0
        advance = self._advance
        replace = heapq.heapreplace
        while True:
            u = heap[0][2]
            # Everyone else's earliest time: u may emit up to it without touching the heap.
            bound = heap[1][0] if len(heap) > 1 else math.inf
            if len(heap) > 2 and heap[2][0] < bound:
                bound = heap[2][0]
            while True:
                pending = u.pending
                if u.idx < len(pending):
                    event = pending[u.idx]
                    u.idx += 1
                    event["event_id"] = f"{prefix}{count}"
                    count += 1
                    yield event
                    key = pending[u.idx]["ts"] if u.idx < len(pending) else advance(u)
                else:
                    key = advance(u)
                if key > bound:
                    break
            replace(heap, (key, seq, u))
            seq += 1

    def _advance(self, u: _UserState) -> float:
        """Generate the user's next step (or gap); return when its first event is due."""
        while True:
            if not u.in_session:  # u.now is the session's start
                self._start_session(u)
            if u.steps_left <= 0:  # session over: a gap of hours, then the next one
                u.in_session = False
                u.pending = []
                u.idx = 0
                gap = self.cfg.min_session_gap + self._exp(self.extra_gap)
                u.now = round(u.now + gap, 3)
                return u.now
            u.steps_left -= 1
            events = self._step(u, u.now)
            if events:
                u.pending = events
                u.idx = 0
                # the next step starts after a dwell on the last page
                u.now = events[-1]["ts"] + 3.0 + self._exp(25.0)
                return events[0]["ts"]
            u.now += 30.0

    def _start_session(self, u: _UserState) -> None:
        sim, cfg, rng = self.sim, self.cfg, self.rng
        taste = sim._taste0[u.index].copy()
        weight = sim._drift_weight(u.index, u.now - self.origin)
        taste *= 1.0 - weight
        taste[sim._drift_target[u.index]] += weight
        u.cum = np.cumsum(taste).tolist()
        affinity = taste * cfg.categories
        u.gain = (2.0 * affinity / (1.0 + affinity)).tolist()
        u.in_session = True
        u.steps_left = 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - self.step_p + 1e-12))
        u.session_id = f"{self.run}-{self.sessions}"
        self.sessions += 1
        u.cur = -1
        u.pending = []
        u.idx = 0

    # ---------------------------------------------------------------- one step

    def _available(self, ts: float) -> list[bool]:
        """Per-item availability during the seller slot holding ``ts`` (last two cached)."""
        slot = int(ts // self.slot_seconds)
        cache = self.slot_cache
        if slot not in cache:
            if len(cache) >= 2:
                del cache[min(cache)]
            live = (slot + self.phase) % self.period < self.on
            cache[slot] = live[self.sim._item_seller].tolist()
        return cache[slot]

    def _popular(self, c: int, available: list[bool]) -> int:
        cum = self.sim._l_pop_cum[c]
        ring = self.sim._l_members[c]
        total = cum[-1]
        rand = self.rng.random
        for _ in range(_RETRIES):
            item = ring[bisect.bisect_right(cum, rand() * total)]
            if available[item]:
                return item
        return -1

    def _neighbour(self, item: int, available: list[bool]) -> int:
        sim = self.sim
        rand = self.rng.random
        ring = sim._l_members[sim._l_cat[item]]
        m = len(ring)
        if m < 2:
            return -1
        rank = sim._l_rank[item]
        spread = self.cfg.substitute_spread
        for _ in range(_RETRIES):
            # 1 + floor(Exp(spread)) rank steps, either way round the circle
            offset = 1 + int(-math.log(1.0 - rand()) * spread)
            cand = ring[(rank + offset if rand() < 0.5 else rank - offset) % m]
            if cand != item and available[cand]:
                return cand
        return -1

    def _event(
        self,
        u: _UserState,
        item: int,
        etype: str,
        ts: float,
        available: bool = True,
        context: dict[str, Any] | None = None,
        value: float | None = None,
    ) -> dict[str, Any]:
        item_id, category, seller, price = self.item_meta[item]
        event: dict[str, Any] = {
            "user_id": u.user_id,
            "item_id": item_id,
            "type": etype,
            "ts": ts,
            "event_id": "",  # numbered in emission order by stream()
            "session_id": u.session_id,
        }
        if value is not None:
            event["value"] = value
        if context is not None:
            event["context"] = context
        event["item"] = {
            "category": category,
            "seller": seller,
            "price": price,
            "available": available,
        }
        return event

    def _step(self, u: _UserState, t: float) -> list[dict[str, Any]]:
        """One page of the session at time ``t``: slate, view and the funnel that follows."""
        sim, cfg = self.sim, self.cfg
        rand = self.rng.random
        events: list[dict[str, Any]] = []
        first = u.cur < 0
        t = round(t, 3)  # emitted times have ms precision; availability is taken at them
        available = self._available(t)
        ts = t
        item = -1
        surface = "search"
        if u.history and rand() < cfg.revisit_rate:
            item = u.history[int(rand() * len(u.history))]
            surface = "history"
            if not available[item]:
                # The seller went offline: the user finds it unavailable and moves on.
                ctx = {"surface": surface, "position": 0}
                events.append(self._event(u, item, "view", ts, False, ctx))
                u.cur = -1
                return events
        elif not first and rand() < cfg.substitute_rate:
            item = self._neighbour(u.cur, available)
            surface = "similar"
        if item < 0:
            c = bisect.bisect_right(u.cum, rand() * u.cum[-1])
            item = self._popular(min(c, cfg.categories - 1), available)
            surface = "home" if first else "search"
            if item < 0:
                return events
        c = sim._l_cat[item]

        # The slate: the target gets a view, the other tiles an impression.
        target_pos = int(rand() * cfg.slate_size)
        shown = {item}
        for pos in range(cfg.slate_size):
            ctx = {"surface": surface, "position": pos}
            if pos == target_pos:
                events.append(self._event(u, item, "view", ts, True, ctx))
                continue
            if surface == "similar":
                filler = self._neighbour(u.cur, available)
            elif surface == "history":
                filler = -1
            else:
                filler = self._popular(c, available)
            if filler >= 0 and filler not in shown:
                shown.add(filler)
                events.append(self._event(u, filler, "impression", ts, True, ctx))

        # The funnel; every stage needs the item still available at its own time.
        u.cur = item
        gain = u.gain[c]
        t = round(t + 2.0 + self._exp(8.0), 3)
        if rand() >= min(0.95, cfg.click_rate * gain) or not self._available(t)[item]:
            return events
        ctx = {"surface": surface, "position": target_pos}
        events.append(self._event(u, item, "click", t, True, ctx))
        self._remember(u, item)
        if rand() < cfg.favorite_rate * gain:
            t = round(t + 1.0 + self._exp(5.0), 3)
            if self._available(t)[item]:
                events.append(self._event(u, item, "favorite", t))
        if rand() >= min(0.9, cfg.cart_rate * gain):
            return events
        t = round(t + 5.0 + self._exp(20.0), 3)
        available = self._available(t)
        carted = item
        if rand() < cfg.complement_cart_rate:
            if rand() < cfg.complement_exact_rate:
                options = [b for b in sim._complements[item] if available[b]]
                if options:
                    carted = options[int(rand() * len(options))]
            else:
                cats = sim._comp_cats[c]
                other = self._popular(cats[int(rand() * len(cats))], available)
                carted = other if other >= 0 else item
        if not available[carted]:
            return events
        price = sim._l_price[carted]
        events.append(self._event(u, carted, "cart", t, value=price))
        self._remember(u, carted)
        if rand() < min(0.95, cfg.purchase_rate * gain):
            t = round(t + 10.0 + self._exp(60.0), 3)
            if self._available(t)[carted]:
                events.append(self._event(u, carted, "purchase", t, value=price))
        return events

    def _exp(self, mean: float) -> float:
        return -math.log(1.0 - self.rng.random()) * mean

    @staticmethod
    def _remember(u: _UserState, item: int) -> None:
        if item in u.history:
            return
        u.history.append(item)
        if len(u.history) > _HISTORY_SIZE:
            del u.history[0]


def write_jsonl(sim_events: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write events as JSON lines (compact, ASCII, key order kept); return how many.

    Examples
    --------
    >>> import tempfile, os
    >>> sim = ClickstreamSimulator(SimulatorConfig(users=5, items=40, categories=4, sellers=3))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_jsonl(sim.events(100), os.path.join(d, "e.jsonl"))
    100
    """
    # Events are acyclic: skipping the circular-reference check makes encoding ~20% faster.
    encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
    count = 0
    buffer: list[str] = []
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for event in sim_events:
            buffer.append(encode(event))
            count += 1
            if len(buffer) >= 8192:
                out.write("\n".join(buffer) + "\n")
                buffer.clear()
        if buffer:
            out.write("\n".join(buffer) + "\n")
    return count
