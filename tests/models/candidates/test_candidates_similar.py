"""``similar_items``: model, then co-occurrence, category, seller, trending; sources say which."""

from __future__ import annotations

import pytest

from models.candidates.recently_viewed import recently_viewed
from models.candidates.similar import similar_items
from models.candidates.types import ModelParts
from models.catalogue import ItemCatalogue
from models.cooccurrence import build_neighbours
from models.popularity import Popularity


@pytest.fixture
def world(make_index):
    """a/b/c known to the model; n is new (stream only); a category and a seller of their own."""
    index = make_index(
        {
            ("a", "click"): [1.0, 0.0, 0.0],
            ("b", "click"): [0.9, 0.1, 0.0],
            ("b", "cart"): [0.8, 0.2, 0.0],
            ("c", "cart"): [0.0, 1.0, 0.0],
            ("a", "cart"): [1.0, 0.05, 0.0],
            "a": [1.0, 0.0, 0.0],
            "b": [0.9, 0.1, 0.0],
            "c": [0.0, 1.0, 0.1],
        }
    )
    events = []
    for n in range(3):  # n, then m and b: the stream's co-occurrence of n
        user = f"u{n}"
        events += [
            {"user_id": user, "item_id": "n", "type": "click", "ts": 10.0 * n},
            {"user_id": user, "item_id": "m", "type": "cart", "ts": 10.0 * n + 1},
        ]
    events.append({"user_id": "u0", "item_id": "b", "type": "cart", "ts": 3.0})
    popularity = Popularity(half_life=None)
    catalogue = ItemCatalogue()
    shop = [("n", "lamps", "s1"), ("l1", "lamps", "s1"), ("l2", "lamps", "s2"), ("z", "rugs", "s1")]
    for item, category, seller in shop:
        event = {"item_id": item, "type": "click", "ts": 0.0}
        event["item"] = {"category": category, "seller": seller}
        catalogue.update(event)
        for _ in range({"l2": 3, "l1": 2}.get(item, 1)):
            popularity.update(event)
    popularity.update({"item_id": "hot", "type": "purchase", "ts": 0.0})
    return {
        "model": ModelParts(index=index),
        "neighbours": build_neighbours(events, half_life=None).get,
        "popularity": popularity,
        "category_of": catalogue.category,
        "seller_of": catalogue.seller,
        "seller_items": catalogue.items_of_seller,
    }


def ask(world, item, from_type="click", to_type=None, k=3, **overrides):
    return similar_items(item, from_type, to_type, k=k, now=100.0, **{**world, **overrides})


def test_a_known_item_gets_model_neighbours_at_item_level(world):
    answer = ask(world, "a")
    assert [c.item_id for c in answer.items][:2] == ["b", "c"]
    assert answer.sources[0] == "model"
    assert all(c.item_id != "a" for c in answer.items)  # never itself at item level


def test_typed_answers_come_from_the_target_type_and_may_hold_the_item_itself(world):
    answer = ask(world, "a", "click", "cart", k=2)
    assert [c.item_id for c in answer.items] == ["a", "b"]  # a's cart token is nearest
    assert answer.sources == ("model",)


def test_a_rare_token_uses_its_items_vector(world):
    # (c, click) is not in the model but c is: its item-level vector answers.
    answer = ask(world, "c", "click", "cart", k=1)
    assert [(c.item_id, c.source) for c in answer.items] == [("c", "model")]


def test_a_new_item_falls_back_to_cooccurrence_then_category_seller_and_trending(world):
    answer = ask(world, "n", k=6)
    assert [(c.item_id, c.source) for c in answer.items] == [
        ("m", "cooccurrence"),  # after n, every session carted m
        ("b", "cooccurrence"),  # one of three did b
        ("l2", "category"),  # trending in lamps, most first (n itself left out)
        ("l1", "category"),
        ("z", "seller"),  # s1's other item not yet chosen
        ("hot", "trending"),
    ]
    assert answer.items[0].evidence["p"] == 1.0 and answer.items[0].evidence["count"] == 3.0
    assert answer.sources == ("cooccurrence", "category", "seller", "trending")


def test_without_model_or_popularity_the_chain_skips_what_is_missing(world):
    answer = ask(world, "a", model=None, popularity=None, k=5)
    assert answer.items == [] and answer.sources == ()
    assert ask(world, "unknown", k=2).sources == ("trending",)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="to_type"):
        similar_items("a", "click", "like", now=0.0)
    with pytest.raises(ValueError, match="k must be"):
        similar_items("a", "click", k=0, now=0.0)


def test_recently_viewed_adds_older_items_from_the_sketch_after_the_kept_events(make_user):
    user = make_user([("a", "click"), ("b", "cart"), ("c", "click")])
    user.max_tokens = 1  # keeps only c's event; a and b live on in the weight sketch
    user.update({"item_id": "d", "type": "click", "ts": 30.0})
    found = recently_viewed(user, now=30.0)
    assert [c.item_id for c in found] == ["d", "b", "a", "c"]  # a and c tie: by id
    assert found[0].reason == "you viewed this" and found[1].evidence["last_ts"] is None
