"""What the stream has told us about items: category, seller, price, availability.

Events may carry an ``item`` object; the latest word about an item wins, by
event time (``ts``), not by arrival: workers take events in batches grouped by
user, so two words about one item can arrive out of time order, and the
catalogue must end the same whatever the order. An older word only fills
fields not known yet; a word without ``ts`` is taken as it comes. A seller counts
as offline while the latest word about any of its items said ``available:
false`` (a live-shopping host whose show ended), and comes back with a later
word saying an item of theirs is available.

Examples
--------
>>> cat = ItemCatalogue()
>>> cat.update({"item_id": "i1", "ts": 1.0, "item": {"category": "lamps", "seller": "s1"}})
>>> cat.update({"item_id": "i2", "ts": 2.0, "item": {"seller": "s1", "available": False}})
>>> cat.category("i1"), cat.available("i1"), cat.available("i2"), cat.items_of_seller("s1")
('lamps', False, False, ['i2', 'i1'])
>>> cat.update({"item_id": "i1", "ts": 1.5, "item": {"seller": "s1", "available": True}})
>>> cat.available("i1")  # an older word than s1's latest: the seller stays offline
False
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Items remembered per seller, for "more from this seller" candidates.
SELLER_ITEMS_KEPT = 200
_LATEST = float("inf")


class ItemCatalogue:
    """Latest known attributes per item and liveness per seller (bounded)."""

    def __init__(self, max_items: int = 1_000_000) -> None:
        self.max_items = max_items
        self.items: dict[str, dict[str, Any]] = {}
        #: Time of the latest word taken about each item.
        self.item_ts: dict[str, float] = {}
        self.seller_online: dict[str, bool] = {}
        self.seller_ts: dict[str, float] = {}
        # seller -> {item: time last seen}, at most SELLER_ITEMS_KEPT (the most recent)
        self.by_seller: dict[str, dict[str, float]] = {}

    def update(self, event: Mapping[str, Any]) -> None:
        info = event.get("item")
        if not info:
            return
        item_id = event["item_id"]
        raw_ts = event.get("ts")
        ts = _LATEST if raw_ts is None else float(raw_ts)
        known = self.items.pop(item_id, None) or {}
        if ts >= self.item_ts.get(item_id, -_LATEST):
            known.update(info)
            if raw_ts is not None:
                self.item_ts[item_id] = ts
        else:  # an older word: it only fills what is not known yet
            for key, value in info.items():
                known.setdefault(key, value)
        self.items[item_id] = known  # re-inserted: most recently seen last
        if len(self.items) > self.max_items:
            oldest = next(iter(self.items))
            del self.items[oldest]
            self.item_ts.pop(oldest, None)
        seller = info.get("seller", known.get("seller"))
        if seller is None:
            return
        recent = self.by_seller.setdefault(seller, {})
        seen = recent.get(item_id, -_LATEST)
        recent[item_id] = seen if raw_ts is None else max(seen, ts)
        if len(recent) > SELLER_ITEMS_KEPT:
            del recent[min(recent, key=lambda i: (recent[i], i))]
        if "available" in info and ts >= self.seller_ts.get(seller, -_LATEST):
            self.seller_online[seller] = bool(info["available"])
            if raw_ts is not None:
                self.seller_ts[seller] = ts

    def update_many(self, events: Iterable[Mapping[str, Any]]) -> None:
        for event in events:
            self.update(event)

    def get(self, item_id: str) -> dict[str, Any]:
        return self.items.get(item_id, {})

    def category(self, item_id: str) -> str | None:
        return self.items.get(item_id, {}).get("category")

    def seller(self, item_id: str) -> str | None:
        return self.items.get(item_id, {}).get("seller")

    def available(self, item_id: str) -> bool:
        """False when the item was last seen unavailable or its seller is offline."""
        info = self.items.get(item_id)
        if info is None:
            return True  # unknown items are not filtered: no evidence against them
        if info.get("available") is False:
            return False
        seller = info.get("seller")
        return self.seller_online.get(seller, True) if seller is not None else True

    def items_of_seller(self, seller: str, limit: int = SELLER_ITEMS_KEPT) -> list[str]:
        """Most recently seen items of ``seller``, newest first (ties by id)."""
        recent = self.by_seller.get(seller, {})
        return sorted(recent, key=lambda i: (-recent[i], i))[:limit]
