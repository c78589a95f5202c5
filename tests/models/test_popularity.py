from collections import Counter, defaultdict

import msgpack
import numpy as np
import pytest

from models.popularity import Popularity
from models.trajectory import DEFAULT_TYPE_WEIGHTS

HOUR = 3600.0


def ev(item, etype, ts, category=None):
    e = {"user_id": "u", "item_id": item, "type": etype, "ts": float(ts)}
    if category is not None:
        e["item"] = {"category": category}
    return e


def roundtrip(state):
    return msgpack.unpackb(msgpack.packb(state), strict_map_key=False)


def test_counts_are_weighted_by_type_and_impressions_ignored():
    pop = Popularity(half_life=None)
    assert pop.update(ev("a", "impression", 0)) is False
    for etype in ("view", "view", "cart"):
        pop.update(ev("a", etype, 0))
    pop.update(ev("b", "purchase", 0))
    expected = {
        "a": 2 * DEFAULT_TYPE_WEIGHTS["view"] + DEFAULT_TYPE_WEIGHTS["cart"],
        "b": DEFAULT_TYPE_WEIGHTS["purchase"],
    }
    assert dict(pop.top(5, now=0)) == expected
    assert [i for i, _ in pop.top(5, now=0)] == sorted(expected, key=expected.get, reverse=True)


def test_per_category_top_k():
    pop = Popularity(half_life=None)
    pop.update_many(
        [
            ev("shoe1", "click", 0, "shoes"),
            ev("shoe2", "cart", 0, "shoes"),
            ev("hat1", "purchase", 0, "hats"),
            ev("nocat", "purchase", 0),
        ]
    )
    assert [i for i, _ in pop.top(5, now=0, category="shoes")] == ["shoe2", "shoe1"]
    assert pop.top(5, now=0, category="hats") == [("hat1", DEFAULT_TYPE_WEIGHTS["purchase"])]
    assert pop.top(5, now=0, category="bags") == []
    assert {i for i, _ in pop.top(10, now=0)} == {"shoe1", "shoe2", "hat1", "nocat"}


def test_trending_follows_recent_activity_with_a_short_half_life():
    pop = Popularity(half_life=HOUR)
    for n in range(10):
        pop.update(ev("yesterday", "click", n))
    for n in range(3):
        pop.update(ev("now", "click", 24 * HOUR + n))
    assert pop.top(1, now=24 * HOUR)[0][0] == "now"
    assert dict(pop.top(2, now=24 * HOUR))["now"] == pytest.approx(
        sum(2.0 * 0.5 ** (-n / HOUR) for n in range(3)) * 1.0, rel=1e-3
    )
    # One half-life later every count has halved.
    before, after = dict(pop.top(2, now=24 * HOUR)), dict(pop.top(2, now=25 * HOUR))
    assert after["now"] == pytest.approx(before["now"] / 2)


def test_bounded_and_keeps_heavy_items_in_a_long_tail():
    rng = np.random.default_rng(0)
    capacity = 30
    pop = Popularity(half_life=None, capacity=capacity, category_capacity=10, max_categories=4)
    events = [ev(f"hot{n}", "click", 0, f"c{n % 3}") for n in range(5) for _ in range(100)]
    events += [ev(f"tail{rng.integers(3000)}", "view", 0, f"c{k % 9}") for k in range(3000)]
    order = rng.permutation(len(events))
    pop.update_many(events[i] for i in order)
    assert len(pop.overall) == capacity
    assert len(pop.categories) <= 4
    assert all(len(s) <= 10 for s in pop.categories.values())
    true = Counter()
    for e in events:
        true[e["item_id"]] += DEFAULT_TYPE_WEIGHTS[e["type"]]
    bound = sum(true.values()) / capacity
    hot = {i for i, c in true.items() if c > bound}
    assert hot == {f"hot{n}" for n in range(5)}
    assert {i for i, _ in pop.top(5, now=0)} == hot


def test_merge_of_partitions_matches_a_single_instance_when_nothing_is_evicted():
    rng = np.random.default_rng(3)
    events = [
        ev(f"i{rng.integers(20)}", ["view", "click", "cart"][rng.integers(3)], k, f"c{k % 2}")
        for k in range(300)
    ]
    whole, left, right = Popularity(), Popularity(), Popularity()
    whole.update_many(events)
    left.update_many(events[::2])
    right.update_many(events[1::2])
    left.merge(right)
    expected = defaultdict(float, whole.top(50, now=300))
    for item, score in left.top(50, now=300):
        assert score == pytest.approx(expected[item])
    assert len(left.top(50, now=300)) == len(expected)


def test_round_trip_through_msgpack():
    rng = np.random.default_rng(1)
    events = [
        ev(f"i{rng.integers(80)}", "click", 60.0 * k, f"c{rng.integers(5)}") for k in range(500)
    ]
    config = {"capacity": 20, "category_capacity": 5, "max_categories": 3, "half_life": HOUR}
    pop = Popularity(**config)
    pop.update_many(events[:400])
    restored = Popularity.from_state(roundtrip(pop.to_state()), **config)
    assert restored == pop
    pop.update_many(events[400:])
    restored.update_many(events[400:])
    assert restored == pop
    assert restored.top(5, now=30_000, category="c1") == pop.top(5, now=30_000, category="c1")
