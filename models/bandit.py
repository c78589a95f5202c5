"""Per-user Thompson sampling over the sellers (or items) a user engaged with (Whatnot).

Each arm has a Beta(alpha, beta) posterior: ``alpha = prior_alpha + successes``
and ``beta = prior_beta + failures``.

* An engagement (view/click/favorite/cart/purchase) adds its type's weight to the
  successes of the item's arm and of its seller's arm, creating them if needed.
* An impression is *pending* for ``window`` seconds (30 minutes by default). If
  the user engages with that arm within the window it is forgiven; otherwise it
  adds ``impression_weight`` to the arm's failures (only if the user engaged with
  the arm at some point: strangers never become arms). Pending impressions are
  resolved lazily, by event time: whenever a later event (or an explicit
  ``now``) moves the user's clock past the window. An engagement arriving after
  its impression was resolved does not revoke the failure.
* Successes and failures decay toward the prior with a half-life (forward decay,
  as in :mod:`models.cooccurrence`).

:meth:`UserBandit.sample` draws one Beta sample per arm and returns the argmax:
mostly the favourite, sometimes another, never a stranger. Seller arms are used
once the user engaged with at least ``min_sellers`` sellers; before that (or when
events carry no seller), item arms. At most ``max_arms`` arms of each kind are
kept, those with the most evidence (``alpha + beta``); the arm just engaged with
is never the one evicted.

Examples
--------
>>> import numpy as np
>>> bandit = UserBandit(min_sellers=1)
>>> bandit.update({"item_id": "i1", "type": "purchase", "ts": 0.0, "item": {"seller": "s1"}})
>>> bandit.posterior(("seller", "s1"))
(5.0, 1.0)
>>> bandit.sample(np.random.default_rng(0))
('seller', 's1')
"""

from __future__ import annotations

import math
import sys
from bisect import insort
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from models.cooccurrence import DEFAULT_HALF_LIFE, LN2, REBASE_HALF_LIVES, decay_rate
from models.sessions import INTERACTION_TYPES

#: Default success weight per engagement type (a click counts 1).
DEFAULT_ENGAGEMENT_WEIGHTS: dict[str, float] = {
    "view": 0.5,
    "click": 1.0,
    "favorite": 1.5,
    "cart": 2.5,
    "purchase": 4.0,
}
DEFAULT_IMPRESSION_WINDOW = 30 * 60.0
DEFAULT_MIN_SELLERS = 3
DEFAULT_MAX_ARMS = 50
DEFAULT_MAX_PENDING = 200

SELLER = "seller"
ITEM = "item"
Arm = tuple[str, str]  # (SELLER or ITEM, id)

_intern = sys.intern


class UserBandit:
    """Thompson sampling over one user's engaged sellers/items with Beta posteriors.

    Parameters
    ----------
    engagement_weights
        Success weight per interaction type.
    impression_weight
        Failure weight of an impression not followed by engagement in ``window``.
    window
        Seconds an impression waits for an engagement before it is a failure.
    half_life
        Seconds for successes and failures to halve (``None``: no decay).
    prior_alpha, prior_beta
        The Beta prior every arm starts from and decays back to.
    min_sellers
        Sample seller arms once there are this many, item arms before.
    max_arms
        Arms kept per kind (seller, item).
    max_pending
        Pending impressions kept per kind; beyond it the oldest resolve early.
    """

    __slots__ = (
        "engagement_weights",
        "half_life",
        "impression_weight",
        "items",
        "max_arms",
        "max_pending",
        "min_sellers",
        "pending_items",
        "pending_sellers",
        "prior_alpha",
        "prior_beta",
        "rate",
        "ref",
        "sellers",
        "watermark",
        "window",
    )

    def __init__(
        self,
        engagement_weights: Mapping[str, float] | None = None,
        impression_weight: float = 1.0,
        window: float = DEFAULT_IMPRESSION_WINDOW,
        half_life: float | None = DEFAULT_HALF_LIFE,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        min_sellers: int = DEFAULT_MIN_SELLERS,
        max_arms: int = DEFAULT_MAX_ARMS,
        max_pending: int = DEFAULT_MAX_PENDING,
    ):
        self.engagement_weights = (
            DEFAULT_ENGAGEMENT_WEIGHTS if engagement_weights is None else dict(engagement_weights)
        )
        unknown = set(self.engagement_weights) - set(INTERACTION_TYPES)
        if unknown:
            raise ValueError(f"unknown interaction types in engagement_weights: {sorted(unknown)}")
        if prior_alpha <= 0 or prior_beta <= 0:
            raise ValueError("prior_alpha and prior_beta must be positive")
        self.impression_weight = impression_weight
        self.window = window
        self.half_life = half_life
        self.rate = decay_rate(half_life)
        self.prior_alpha = prior_alpha
        self.prior_beta = prior_beta
        self.min_sellers = min_sellers
        self.max_arms = max_arms
        self.max_pending = max_pending
        self.ref: float | None = None
        self.watermark: float | None = None  # the user's event-time clock
        # arm id -> [stored successes, stored failures] (forward-decayed at ref)
        self.sellers: dict[str, list[float]] = {}
        self.items: dict[str, list[float]] = {}
        # (impression ts, arm id), sorted by ts
        self.pending_sellers: list[tuple[float, str]] = []
        self.pending_items: list[tuple[float, str]] = []

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UserBandit):
            return NotImplemented
        return self._config() == other._config() and self.to_state() == other.to_state()

    __hash__ = None  # type: ignore[assignment]

    def _config(self) -> tuple[Any, ...]:
        return (
            self.engagement_weights,
            self.impression_weight,
            self.window,
            self.half_life,
            self.prior_alpha,
            self.prior_beta,
            self.min_sellers,
            self.max_arms,
            self.max_pending,
        )

    # -- decay -----------------------------------------------------------------
    def _scale(self, ts: float) -> float:
        if self.ref is None:
            self.ref = ts
            return 1.0
        exponent = (ts - self.ref) * self.rate
        if exponent > REBASE_HALF_LIVES * LN2:
            factor = math.exp(-exponent)
            for arms in (self.sellers, self.items):
                for evidence in arms.values():
                    evidence[0] *= factor
                    evidence[1] *= factor
            self.ref = ts
            return 1.0
        return math.exp(exponent)

    def _factor(self, now: float | None) -> float:
        if self.ref is None:
            return 1.0
        if now is None:
            now = self.watermark if self.watermark is not None else self.ref
        return math.exp(-(now - self.ref) * self.rate)

    # -- updates ---------------------------------------------------------------
    def resolve(self, now: float) -> int:
        """Turn impressions older than ``window`` at event time ``now`` into failures.

        Returns how many failures were added (to arms that exist).
        """
        if self.watermark is None or now > self.watermark:
            self.watermark = now
        if not (self.pending_sellers or self.pending_items):
            return 0  # the common case: nothing waits for an engagement
        horizon = self.watermark - self.window
        added = self._expire(self.pending_sellers, self.sellers, horizon)
        return added + self._expire(self.pending_items, self.items, horizon)

    def _expire(
        self, pending: list[tuple[float, str]], arms: dict[str, list[float]], horizon: float
    ) -> int:
        n = 0
        while n < len(pending) and pending[n][0] < horizon:
            n += 1
        if not n:
            return 0
        added = 0
        for ts, arm_id in pending[:n]:
            evidence = arms.get(arm_id)
            if evidence is not None:
                evidence[1] += self.impression_weight * self._scale(ts)
                added += 1
        del pending[:n]
        return added

    def update(self, event: Mapping[str, Any]) -> None:
        """Fold one canonical event in (engagement, impression; others are ignored)."""
        ts = event["ts"]
        self.resolve(ts)
        etype = event["type"]
        item_id = event["item_id"]
        item = event.get("item")
        seller = item.get("seller") if item else None
        if etype == "impression":
            self._add_pending(self.pending_items, self.items, ts, item_id)
            if seller is not None:
                self._add_pending(self.pending_sellers, self.sellers, ts, seller)
            return
        weight = self.engagement_weights.get(etype, 0.0)
        if weight <= 0.0:
            return
        stored = weight * self._scale(ts)
        self._engage(self.items, self.pending_items, item_id, stored, ts)
        if seller is not None:
            self._engage(self.sellers, self.pending_sellers, seller, stored, ts)

    def update_many(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Fold events in, in order."""
        update = self.update
        for e in events:
            update(e)

    def _add_pending(
        self, pending: list[tuple[float, str]], arms: dict[str, list[float]], ts: float, arm: str
    ) -> None:
        entry = (ts, _intern(arm))
        if not pending or ts >= pending[-1][0]:
            pending.append(entry)
        else:
            insort(pending, entry)
        if len(pending) > self.max_pending:
            # Bounded memory: the oldest impression is settled early as a failure.
            old_ts, old_arm = pending.pop(0)
            evidence = arms.get(old_arm)
            if evidence is not None:
                evidence[1] += self.impression_weight * self._scale(old_ts)

    def _engage(
        self,
        arms: dict[str, list[float]],
        pending: list[tuple[float, str]],
        arm: str,
        stored: float,
        ts: float,
    ) -> None:
        if pending:
            # Forgive this arm's impressions that the engagement follows within the window.
            earliest = ts - self.window
            pending[:] = [p for p in pending if p[1] != arm or not earliest <= p[0] <= ts]
        evidence = arms.get(arm)
        if evidence is not None:
            evidence[0] += stored
            return
        arms[_intern(arm)] = [stored, 0.0]
        if len(arms) > self.max_arms:
            victim = min((a for a in arms if a != arm), key=lambda a: arms[a][0] + arms[a][1])
            del arms[victim]

    # -- reads -----------------------------------------------------------------
    def arms(self) -> list[Arm]:
        """The arms :meth:`sample` draws from now (sellers or items)."""
        if len(self.sellers) >= self.min_sellers or not self.items:
            return [(SELLER, s) for s in self.sellers]
        return [(ITEM, i) for i in self.items]

    def posterior(self, arm: Arm, now: float | None = None) -> tuple[float, float]:
        """``(alpha, beta)`` of an arm at ``now`` (default: the user's clock).

        An arm that does not exist has the prior.
        """
        kind, arm_id = arm
        evidence = (self.sellers if kind == SELLER else self.items).get(arm_id)
        if evidence is None:
            return self.prior_alpha, self.prior_beta
        factor = self._factor(now)
        return self.prior_alpha + evidence[0] * factor, self.prior_beta + evidence[1] * factor

    def sample(self, rng: np.random.Generator, now: float | None = None) -> Arm | None:
        """Thompson-sample one arm (``None`` if the user engaged with nothing).

        With ``now``, pending impressions older than the window are resolved first.
        """
        if now is not None:
            self.resolve(now)
        arms = self.arms()
        if not arms:
            return None
        kind = arms[0][0]
        evidence = self.sellers if kind == SELLER else self.items
        factor = self._factor(now)
        stored = np.array([evidence[a] for _, a in arms], dtype=float)
        draws = rng.beta(
            self.prior_alpha + stored[:, 0] * factor, self.prior_beta + stored[:, 1] * factor
        )
        return arms[int(np.argmax(draws))]

    # -- serialisation -----------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """A plain, msgpack-able dict (configuration is not included)."""
        return {
            "ref": self.ref,
            "clock": self.watermark,
            "sellers": {k: list(v) for k, v in self.sellers.items()},
            "items": {k: list(v) for k, v in self.items.items()},
            "pending_sellers": [list(p) for p in self.pending_sellers],
            "pending_items": [list(p) for p in self.pending_items],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], **config: Any) -> UserBandit:
        """Rebuild from :meth:`to_state` output; ``config`` as for the constructor."""
        bandit = cls(**config)
        bandit.ref = state["ref"]
        bandit.watermark = state["clock"]
        bandit.sellers = {_intern(k): list(v) for k, v in state["sellers"].items()}
        bandit.items = {_intern(k): list(v) for k, v in state["items"].items()}
        bandit.pending_sellers = [(ts, _intern(a)) for ts, a in state["pending_sellers"]]
        bandit.pending_items = [(ts, _intern(a)) for ts, a in state["pending_items"]]
        return bandit
