import msgpack
import numpy as np
import pytest

from models.sessions import INTERACTION_TYPES
from models.trajectory import DEFAULT_TYPE_WEIGHTS, UserTrajectory

DAY = 86_400.0


def ev(item, etype, ts, seller=None):
    e = {"user_id": "u", "item_id": item, "type": etype, "ts": float(ts)}
    if seller is not None:
        e["item"] = {"seller": seller}
    return e


def roundtrip(state):
    return msgpack.unpackb(msgpack.packb(state), strict_map_key=False)


def random_history(rng, n=400):
    types = [*INTERACTION_TYPES, "impression"]
    return [
        ev(f"i{rng.integers(60)}", types[rng.integers(len(types))], 30.0 * k, f"s{rng.integers(8)}")
        for k in range(n)
    ]


def test_seeds_are_last_four_distinct_items_per_type_most_recent_first():
    user = UserTrajectory()
    clicks = ["a", "b", "a", "c", "d", "e", "c", "f", "f"]
    for t, item in enumerate(clicks):
        user.update(ev(item, "click", t))
    user.update(ev("x", "cart", 100))
    expected = []
    for item in reversed(clicks):
        if item not in expected:
            expected.append(item)
    assert user.seeds("click") == expected[:4] == ["f", "c", "e", "d"]
    assert user.seeds("click", n=2) == ["f", "c"]
    assert user.seeds("cart") == ["x"]
    assert user.seeds("purchase") == []


def test_seeds_survive_a_long_run_of_other_types():
    user = UserTrajectory(max_tokens=10)
    user.update(ev("carted", "cart", 0))
    user.update_many(ev(f"v{n}", "view", n + 1) for n in range(50))
    assert user.seeds("cart") == ["carted"]
    assert len(user) == 10
    assert user.recent(1)[0] == ("v49", "view", 50.0)


def test_recent_tokens_are_the_last_max_tokens_in_order():
    user = UserTrajectory()
    events = [ev(f"i{n}", "view", n) for n in range(250)]
    assert user.update_many(events) == 250
    kept = user.recent()
    assert len(kept) == 200
    assert kept == [(e["item_id"], e["type"], e["ts"]) for e in events[-200:]]
    assert user.tokens()[-1] == ("i249", "view")


def test_engagement_weights_are_ordered_by_type():
    user = UserTrajectory(half_life=None)
    for n, etype in enumerate(INTERACTION_TYPES):
        user.update(ev(f"item_{etype}", etype, n, seller=f"seller_{etype}"))
    ranked = [item for item, _ in user.top_items(5)]
    assert ranked == [f"item_{t}" for t in ("purchase", "cart", "favorite", "click", "view")]
    assert dict(user.top_items(5)) == {f"item_{t}": w for t, w in DEFAULT_TYPE_WEIGHTS.items()}
    assert [s for s, _ in user.top_sellers(2)] == ["seller_purchase", "seller_cart"]


def test_custom_weights_and_decay():
    user = UserTrajectory(type_weights={"view": 10.0, "purchase": 1.0}, half_life=DAY)
    user.update(ev("v", "view", 0))
    user.update(ev("p", "purchase", 0))
    user.update(ev("c", "click", 0))  # weight 0: not in the weights dict
    assert dict(user.top_items(5, now=DAY)) == pytest.approx({"v": 5.0, "p": 0.5})
    with pytest.raises(ValueError, match="unknown interaction types"):
        UserTrajectory(type_weights={"like": 1.0})


def test_item_weights_decay_halves_after_one_half_life():
    user = UserTrajectory(half_life=3 * DAY)
    user.update(ev("a", "cart", 0.0))
    ((_, now_weight),) = user.top_items(1, now=0.0)
    ((_, later_weight),) = user.top_items(1, now=3 * DAY)
    assert later_weight == pytest.approx(now_weight / 2)


def test_purchased_is_a_bounded_most_recent_set():
    user = UserTrajectory(max_purchased=3)
    for n, item in enumerate(["a", "b", "c", "a", "d"]):
        user.update(ev(item, "purchase", n))
    assert set(user.purchased) == {"c", "a", "d"}
    assert user.has_purchased("a") and not user.has_purchased("b")
    user.update(ev("z", "cart", 10))
    assert not user.has_purchased("z")


def test_first_last_seen_include_impressions_but_tokens_do_not():
    user = UserTrajectory()
    assert user.update(ev("a", "impression", 50.0)) is False
    assert user.update(ev("b", "click", 100.0)) is True
    assert user.update(ev("c", "impression", 20.0)) is False
    assert (user.first_seen, user.last_seen) == (20.0, 100.0)
    assert user.tokens() == [("b", "click")]


def test_round_trip_through_msgpack_is_exact_and_continues_identically():
    rng = np.random.default_rng(1)
    history = random_history(rng)
    config = {"max_tokens": 50, "max_items": 10, "max_sellers": 4, "max_purchased": 5}
    user = UserTrajectory(**config)
    user.update_many(history[:300])
    state = user.to_state()
    restored = UserTrajectory.from_state(roundtrip(state), **config)
    assert restored == user
    assert restored.to_state() == state
    user.update_many(history[300:])
    restored.update_many(history[300:])
    assert restored == user
    assert restored.top_items(5) == user.top_items(5)
    assert restored.seeds("view") == user.seeds("view")
