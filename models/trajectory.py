"""Per-user trajectory: what a user did recently, kept small enough for a table value.

:class:`UserTrajectory` keeps, per user:

* the ordered recent interaction tokens (last 200 by default) with timestamps;
* the last 4 distinct items per interaction type: the online seeds of Etsy's
  user module (e.g. the last 4 clicked items, each looked up for cart neighbours);
* decayed engagement weights per item and per seller (purchase > cart > favorite
  > click > view), each bounded by a :class:`~models.cooccurrence.SpaceSaving`
  sketch, so a heavy user costs the same memory as a light one;
* items already purchased (a bounded, most-recent set, to filter them out);
* first and last time seen (any event, impressions included).

Impressions are not interactions: they only move ``last_seen``.

Examples
--------
>>> user = UserTrajectory()
>>> user.update_many([
...     {"item_id": "a", "type": "click", "ts": 0.0, "item": {"seller": "s1"}},
...     {"item_id": "b", "type": "click", "ts": 1.0, "item": {"seller": "s2"}},
...     {"item_id": "a", "type": "purchase", "ts": 2.0, "item": {"seller": "s1"}},
... ])
3
>>> user.seeds("click")
['b', 'a']
>>> [seller for seller, _ in user.top_sellers(2)]
['s1', 's2']
>>> user.has_purchased("a"), user.last_seen
(True, 2.0)
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Mapping
from typing import Any

from models.cooccurrence import DEFAULT_HALF_LIFE, SpaceSaving
from models.sessions import INTERACTION_TYPES, Token

#: Default engagement weight per interaction type (stronger intent weighs more).
DEFAULT_TYPE_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "favorite": 3.0,
    "cart": 5.0,
    "purchase": 8.0,
}
DEFAULT_MAX_TOKENS = 200
DEFAULT_SEEDS_KEPT = 4
DEFAULT_MAX_ITEMS = 100
DEFAULT_MAX_SELLERS = 50
DEFAULT_MAX_PURCHASED = 200

_TYPE_CODE = {name: code for code, name in enumerate(INTERACTION_TYPES)}
_intern = sys.intern


def _seller_of(event: Mapping[str, Any]) -> str | None:
    item = event.get("item")
    return item.get("seller") if item else None


class UserTrajectory:
    """One user's recent interactions, seeds, engagement weights and purchases.

    Parameters
    ----------
    type_weights
        Engagement weight per interaction type.
    half_life
        Seconds for an engagement weight to halve (``None``: no decay).
    max_tokens
        Recent tokens kept, oldest dropped first.
    seeds_kept
        Distinct items kept per interaction type for :meth:`seeds`.
    max_items, max_sellers
        Capacity of the item and seller weight sketches.
    max_purchased
        Most recently purchased items kept for :meth:`has_purchased`.
    """

    __slots__ = (
        "_seeds",
        "first_seen",
        "half_life",
        "item_weights",
        "items",
        "last_seen",
        "max_items",
        "max_purchased",
        "max_sellers",
        "max_tokens",
        "purchased",
        "seeds_kept",
        "seller_weights",
        "timestamps",
        "type_codes",
        "type_weights",
    )

    def __init__(
        self,
        type_weights: Mapping[str, float] | None = None,
        half_life: float | None = DEFAULT_HALF_LIFE,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        seeds_kept: int = DEFAULT_SEEDS_KEPT,
        max_items: int = DEFAULT_MAX_ITEMS,
        max_sellers: int = DEFAULT_MAX_SELLERS,
        max_purchased: int = DEFAULT_MAX_PURCHASED,
    ):
        self.type_weights = DEFAULT_TYPE_WEIGHTS if type_weights is None else dict(type_weights)
        unknown = set(self.type_weights) - set(INTERACTION_TYPES)
        if unknown:
            raise ValueError(f"unknown interaction types in type_weights: {sorted(unknown)}")
        self.half_life = half_life
        self.max_tokens = max_tokens
        self.seeds_kept = seeds_kept
        self.max_items = max_items
        self.max_sellers = max_sellers
        self.max_purchased = max_purchased
        # Parallel compact arrays: 8 bytes per timestamp, 1 byte per type.
        self.items: list[str] = []
        self.type_codes = bytearray()
        self.timestamps = array("d")
        self._seeds: dict[str, list[str]] = {}  # type -> distinct items, most recent last
        self.item_weights = SpaceSaving(max_items, half_life)
        self.seller_weights = SpaceSaving(max_sellers, half_life)
        self.purchased: dict[str, None] = {}  # insertion-ordered set, most recent last
        self.first_seen: float | None = None
        self.last_seen: float | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UserTrajectory):
            return NotImplemented
        return self._config() == other._config() and self.to_state() == other.to_state()

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.items)

    def _config(self) -> dict[str, Any]:
        return {
            "type_weights": self.type_weights,
            "half_life": self.half_life,
            "max_tokens": self.max_tokens,
            "seeds_kept": self.seeds_kept,
            "max_items": self.max_items,
            "max_sellers": self.max_sellers,
            "max_purchased": self.max_purchased,
        }

    # -- updates ---------------------------------------------------------------
    def update(self, event: Mapping[str, Any]) -> bool:
        """Fold one canonical event in; return whether it was an interaction."""
        ts = event["ts"]
        if self.first_seen is None or ts < self.first_seen:
            self.first_seen = ts
        if self.last_seen is None or ts > self.last_seen:
            self.last_seen = ts
        etype = event["type"]
        code = _TYPE_CODE.get(etype)
        if code is None:
            return False
        item_id = _intern(event["item_id"])
        self.items.append(item_id)
        self.type_codes.append(code)
        self.timestamps.append(ts)
        if len(self.items) > self.max_tokens:
            # A memmove of a few hundred bytes: cheaper than a deque's per-node memory.
            excess = len(self.items) - self.max_tokens
            del self.items[:excess]
            del self.type_codes[:excess]
            del self.timestamps[:excess]

        seeds = self._seeds.get(etype)
        if seeds is None:
            seeds = self._seeds[etype] = []
        elif item_id in seeds:
            seeds.remove(item_id)
        seeds.append(item_id)
        if len(seeds) > self.seeds_kept:
            del seeds[0]

        weight = self.type_weights.get(etype, 0.0)
        if weight > 0.0:
            self.item_weights.add(item_id, weight, ts)
            seller = _seller_of(event)
            if seller is not None:
                self.seller_weights.add(seller, weight, ts)

        if etype == "purchase":
            self.purchased.pop(item_id, None)
            self.purchased[item_id] = None
            if len(self.purchased) > self.max_purchased:
                del self.purchased[next(iter(self.purchased))]
        return True

    def update_many(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Fold events in, in order; return how many were interactions."""
        update = self.update
        return sum(update(e) for e in events)

    # -- reads -----------------------------------------------------------------
    def recent(self, n: int | None = None) -> list[tuple[str, str, float]]:
        """The last ``n`` (default all kept) tokens as ``(item_id, type, ts)``, oldest first."""
        start = 0 if n is None else max(0, len(self.items) - n)
        return [
            (self.items[i], INTERACTION_TYPES[self.type_codes[i]], self.timestamps[i])
            for i in range(start, len(self.items))
        ]

    def tokens(self) -> list[Token]:
        """The kept tokens ``(item_id, type)``, oldest first."""
        return [(i, INTERACTION_TYPES[c]) for i, c in zip(self.items, self.type_codes, strict=True)]

    def seeds(self, type: str, n: int = DEFAULT_SEEDS_KEPT) -> list[str]:
        """The last ``n`` distinct items of one interaction type, most recent first."""
        seeds = self._seeds.get(type)
        if not seeds:
            return []
        return seeds[::-1][:n]

    def top_items(self, k: int, now: float | None = None) -> list[tuple[str, float]]:
        """The ``k`` items with the highest decayed engagement weight at ``now``."""
        return self.item_weights.top(k, self._now(now))

    def top_sellers(self, k: int, now: float | None = None) -> list[tuple[str, float]]:
        """The ``k`` sellers with the highest decayed engagement weight at ``now``."""
        return self.seller_weights.top(k, self._now(now))

    def has_purchased(self, item_id: str) -> bool:
        """Whether ``item_id`` is among the most recently purchased items kept."""
        return item_id in self.purchased

    def _now(self, now: float | None) -> float:
        if now is not None:
            return now
        return self.last_seen if self.last_seen is not None else 0.0

    # -- serialisation -----------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """A plain, msgpack-able dict (configuration is not included)."""
        return {
            "first": self.first_seen,
            "last": self.last_seen,
            "items": list(self.items),
            "types": list(self.type_codes),
            "ts": self.timestamps.tolist(),
            "seeds": {t: list(s) for t, s in self._seeds.items()},
            "item_w": self.item_weights.to_state(),
            "seller_w": self.seller_weights.to_state(),
            "bought": list(self.purchased),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], **config: Any) -> UserTrajectory:
        """Rebuild from :meth:`to_state` output; ``config`` as for the constructor."""
        user = cls(**config)
        user.first_seen = state["first"]
        user.last_seen = state["last"]
        user.items = [_intern(i) for i in state["items"]]
        user.type_codes = bytearray(state["types"])
        user.timestamps = array("d", state["ts"])
        user._seeds = {t: [_intern(i) for i in s] for t, s in state["seeds"].items()}
        user.item_weights = SpaceSaving.from_state(state["item_w"], user.max_items, user.half_life)
        user.seller_weights = SpaceSaving.from_state(
            state["seller_w"], user.max_sellers, user.half_life
        )
        user.purchased = dict.fromkeys(_intern(i) for i in state["bought"])
        return user
