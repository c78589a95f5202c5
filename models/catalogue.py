"""What the stream has told us about items: category, seller, price, availability.

Events may carry an ``item`` object; the latest word about an item wins. A
seller counts as offline while the latest event about any of its items said
``available: false`` (a live-shopping host whose show ended), and comes back
with the next event saying an item of theirs is available.

Examples
--------
>>> cat = ItemCatalogue()
>>> cat.update({"item_id": "i1", "ts": 1.0, "item": {"category": "lamps", "seller": "s1"}})
>>> cat.update({"item_id": "i2", "ts": 2.0, "item": {"seller": "s1", "available": False}})
>>> cat.category("i1"), cat.available("i1"), cat.available("i2"), cat.items_of_seller("s1")
('lamps', False, False, ['i2', 'i1'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Items remembered per seller, for "more from this seller" candidates.
SELLER_ITEMS_KEPT = 200


class ItemCatalogue:
    """Latest known attributes per item and liveness per seller (bounded)."""

    def __init__(self, max_items: int = 1_000_000) -> None:
        self.max_items = max_items
        self.items: dict[str, dict[str, Any]] = {}
        self.seller_online: dict[str, bool] = {}
        # seller -> its most recently seen items (an ordered set, newest last)
        self.by_seller: dict[str, dict[str, None]] = {}

    def update(self, event: Mapping[str, Any]) -> None:
        info = event.get("item")
        if not info:
            return
        item_id = event["item_id"]
        known = self.items.pop(item_id, None) or {}
        known.update(info)
        self.items[item_id] = known  # re-inserted: most recently seen last
        if len(self.items) > self.max_items:
            del self.items[next(iter(self.items))]
        seller = known.get("seller")
        if seller is not None:
            recent = self.by_seller.setdefault(seller, {})
            recent.pop(item_id, None)
            recent[item_id] = None
            if len(recent) > SELLER_ITEMS_KEPT:
                del recent[next(iter(recent))]
            if "available" in info:
                self.seller_online[seller] = bool(info["available"])

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
        """Most recently seen items of ``seller``, newest first."""
        return list(reversed(self.by_seller.get(seller, {})))[:limit]
