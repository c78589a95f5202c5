"""The item catalogue ends the same whatever order its events arrive in (latest word by ts)."""

from __future__ import annotations

import random

from models.catalogue import ItemCatalogue
from models.simulator import ClickstreamSimulator, SimulatorConfig


def snapshot(cat: ItemCatalogue) -> tuple:
    sellers = sorted(cat.by_seller)
    return (
        {item: dict(info) for item, info in cat.items.items()},
        dict(cat.seller_online),
        {seller: cat.items_of_seller(seller) for seller in sellers},
        {item: cat.available(item) for item in cat.items},
    )


def test_arrival_order_does_not_change_the_catalogue():
    config = SimulatorConfig(users=60, items=200, categories=5, sellers=8, seed=2)
    events = list(ClickstreamSimulator(config).events(6000))
    assert any(e["item"].get("available") is False for e in events)  # sellers go offline
    in_order = ItemCatalogue()
    in_order.update_many(sorted(events, key=lambda e: e["ts"]))
    shuffled = list(events)
    random.Random(0).shuffle(shuffled)
    other = ItemCatalogue()
    other.update_many(shuffled)
    assert snapshot(other) == snapshot(in_order)


def test_an_older_word_only_fills_what_is_unknown_and_a_word_without_ts_is_taken():
    cat = ItemCatalogue()
    cat.update({"item_id": "a", "ts": 5.0, "item": {"seller": "s", "price": 2.0}})
    cat.update({"item_id": "a", "ts": 1.0, "item": {"price": 9.0, "category": "hats"}})
    assert cat.get("a") == {"seller": "s", "price": 2.0, "category": "hats"}
    cat.update({"item_id": "a", "item": {"price": 3.0, "available": False}})
    assert cat.get("a")["price"] == 3.0 and not cat.available("a")
    cat.update({"item_id": "b", "ts": 6.0, "item": {"seller": "s", "available": True}})
    assert cat.seller_online["s"] is True and cat.items_of_seller("s") == ["b", "a"]
