from collections import Counter

import numpy as np

from models.bandit import UserBandit
from models.candidates.thompson import arm_items, thompson


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float64)
    return v / np.linalg.norm(v)


def world(make_index):
    return make_index(
        {
            ("fav", "click"): unit(1, 0, 0),
            ("near_fav", "click"): unit(1, 0.1, 0),
            ("other", "click"): unit(0, 1, 0),
            ("near_other", "click"): unit(0.1, 1, 0),
            ("stranger", "click"): unit(0, 0, 1),
            ("near_stranger", "click"): unit(0, 0.1, 1),
        }
    )


def scripted_bandit() -> UserBandit:
    bandit = UserBandit(half_life=None, min_sellers=99)  # item arms
    events = [{"item_id": "fav", "type": "purchase", "ts": float(t)} for t in range(5)]
    events.append({"item_id": "other", "type": "click", "ts": 10.0})
    events.append({"item_id": "stranger", "type": "impression", "ts": 11.0})
    bandit.update_many(events)
    return bandit


def test_mostly_the_favourite_sometimes_another_never_a_stranger(make_index):
    index = world(make_index)
    bandit = scripted_bandit()
    arms = Counter()
    for seed in range(200):
        found = thompson(bandit, index, np.random.default_rng(seed), k=1)
        assert len(found) == 1
        arms[found[0].evidence["arm"]] += 1
        assert found[0].item_id in {"near_fav", "near_other"}
    assert set(arms) <= {("item", "fav"), ("item", "other")}
    assert arms[("item", "fav")] > 150
    assert arms[("item", "other")] > 0


def test_the_same_seed_gives_the_same_answer(make_index):
    index = world(make_index)
    bandit = scripted_bandit()
    runs = [thompson(bandit, index, np.random.default_rng(7), k=3) for _ in range(2)]
    assert runs[0] == runs[1]
    assert "one of your favourites" in runs[0][0].reason


def test_seller_arm_searches_around_the_sellers_items(make_index, make_user):
    index = world(make_index)
    bandit = UserBandit(half_life=None, min_sellers=1)
    bandit.update({"item_id": "fav", "type": "cart", "ts": 0.0, "item": {"seller": "s1"}})
    catalogue = {"s1": ["fav", "near_fav"]}
    found = thompson(bandit, index, np.random.default_rng(0), k=2, seller_items=catalogue.get)
    assert found[0].evidence["arm"] == ("seller", "s1")
    assert {c.item_id for c in found} == {"fav", "near_fav"}
    assert "s1" in found[0].reason
    # Without a catalogue: the seller's items from the user's own trajectory.
    user = make_user([("fav", "cart", "s1"), ("other", "click", "s2")])
    seller_of = {"fav": "s1", "other": "s2"}.get
    assert arm_items("s1", user, seller_of=seller_of) == ["fav"]
    via_history = thompson(
        bandit, index, np.random.default_rng(0), k=1, trajectory=user, seller_of=seller_of
    )
    assert via_history[0].item_id == "fav"


def test_no_arms_no_candidates(make_index):
    assert thompson(UserBandit(), world(make_index), np.random.default_rng(0)) == []
