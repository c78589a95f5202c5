from collections import Counter

import msgpack
import numpy as np
import pytest

from models.bandit import DEFAULT_ENGAGEMENT_WEIGHTS, ITEM, SELLER, UserBandit

WINDOW = 30 * 60.0
DAY = 86_400.0


def ev(item, etype, ts, seller=None):
    e = {"user_id": "u", "item_id": item, "type": etype, "ts": float(ts)}
    if seller is not None:
        e["item"] = {"seller": seller}
    return e


def roundtrip(state):
    return msgpack.unpackb(msgpack.packb(state), strict_map_key=False)


def test_engagement_raises_alpha_by_type_weight():
    bandit = UserBandit(half_life=None)
    assert bandit.posterior((SELLER, "s1")) == (1.0, 1.0)
    bandit.update(ev("i1", "click", 0, "s1"))
    bandit.update(ev("i2", "cart", 10, "s1"))
    click, cart = DEFAULT_ENGAGEMENT_WEIGHTS["click"], DEFAULT_ENGAGEMENT_WEIGHTS["cart"]
    assert bandit.posterior((SELLER, "s1")) == (1.0 + click + cart, 1.0)
    assert bandit.posterior((ITEM, "i1")) == (1.0 + click, 1.0)
    assert bandit.posterior((ITEM, "i2")) == (1.0 + cart, 1.0)


def test_impression_without_engagement_in_window_raises_beta_lazily():
    bandit = UserBandit(half_life=None)
    bandit.update(ev("i1", "click", 0, "s1"))
    bandit.update(ev("i1", "impression", 100, "s1"))
    # Still inside the window: pending, not yet a failure.
    bandit.update(ev("other", "view", 100 + WINDOW - 1, "s9"))
    assert bandit.posterior((SELLER, "s1"))[1] == 1.0
    # A later event moves the user's clock past the window.
    bandit.update(ev("other", "view", 100 + WINDOW + 1, "s9"))
    assert bandit.posterior((SELLER, "s1"))[1] == 2.0
    assert bandit.posterior((ITEM, "i1"))[1] == 2.0
    # Resolved once only.
    bandit.update(ev("other", "view", 100 + 5 * WINDOW, "s9"))
    assert bandit.posterior((SELLER, "s1"))[1] == 2.0


def test_impression_followed_by_engagement_within_window_adds_no_beta():
    bandit = UserBandit(half_life=None)
    bandit.update(ev("i1", "click", 0, "s1"))
    bandit.update(ev("i1", "impression", 100, "s1"))
    bandit.update(ev("i1", "favorite", 100 + WINDOW - 5, "s1"))
    bandit.resolve(100 + 10 * WINDOW)
    assert bandit.posterior((SELLER, "s1"))[1] == 1.0
    assert bandit.posterior((ITEM, "i1"))[1] == 1.0


def test_engagement_with_another_item_of_the_seller_forgives_only_the_seller_arm():
    bandit = UserBandit(half_life=None)
    bandit.update(ev("i1", "click", 0, "s1"))
    bandit.update(ev("i1", "impression", 100, "s1"))
    bandit.update(ev("i2", "click", 200, "s1"))
    bandit.resolve(100 + 2 * WINDOW)
    assert bandit.posterior((SELLER, "s1"))[1] == 1.0
    assert bandit.posterior((ITEM, "i1"))[1] == 2.0


def test_late_engagement_after_the_window_does_not_revoke_the_failure():
    bandit = UserBandit(half_life=None)
    bandit.update(ev("i1", "click", 0, "s1"))
    bandit.update(ev("i1", "impression", 100, "s1"))
    bandit.update(ev("i1", "click", 100 + WINDOW + 60, "s1"))
    assert bandit.posterior((ITEM, "i1")) == (1.0 + 2 * DEFAULT_ENGAGEMENT_WEIGHTS["click"], 2.0)


def test_sample_with_now_resolves_pending_impressions():
    bandit = UserBandit(half_life=None, min_sellers=1)
    bandit.update(ev("i1", "click", 0, "s1"))
    bandit.update(ev("i1", "impression", 10, "s1"))
    bandit.sample(np.random.default_rng(0))
    assert bandit.posterior((SELLER, "s1"))[1] == 1.0
    bandit.sample(np.random.default_rng(0), now=10 + WINDOW + 1)
    assert bandit.posterior((SELLER, "s1"))[1] == 2.0


def test_impressions_of_strangers_never_become_arms():
    bandit = UserBandit(half_life=None, min_sellers=1)
    bandit.update(ev("i1", "click", 0, "s1"))
    for n in range(20):
        bandit.update(ev(f"x{n}", "impression", 10 + n, f"stranger{n}"))
    bandit.resolve(10 * WINDOW)
    assert bandit.arms() == [(SELLER, "s1")]
    assert set(bandit.items) == {"i1"}
    rng = np.random.default_rng(4)
    assert {bandit.sample(rng) for _ in range(50)} == {(SELLER, "s1")}


def favourite_bandit():
    bandit = UserBandit(half_life=None)
    for n in range(3):
        bandit.update(ev(f"fav{n}", "cart", n, "favourite"))
    for seller in ("s2", "s3", "s4"):
        bandit.update(ev(f"{seller}-i", "click", 100, seller))
        bandit.update(ev(f"{seller}-i", "impression", 200, seller))
    bandit.resolve(200 + 2 * WINDOW)
    return bandit


def test_sampling_is_reproducible_with_a_seed():
    bandit = favourite_bandit()
    first = [bandit.sample(np.random.default_rng(123)) for _ in range(3)]
    rng_a, rng_b = np.random.default_rng(42), np.random.default_rng(42)
    seq_a = [bandit.sample(rng_a) for _ in range(200)]
    seq_b = [bandit.sample(rng_b) for _ in range(200)]
    assert seq_a == seq_b
    assert len(set(first)) == 1


def test_sampling_mostly_picks_the_favourite_but_not_always_and_never_a_stranger():
    bandit = favourite_bandit()
    rng = np.random.default_rng(2024)
    counts = Counter(bandit.sample(rng) for _ in range(2000))
    engaged = {(SELLER, s) for s in ("favourite", "s2", "s3", "s4")}
    assert set(counts) <= engaged
    share = counts[(SELLER, "favourite")] / 2000
    assert 0.6 < share < 0.98
    assert len(counts) == 4  # every engaged arm gets its turn


def test_item_arms_until_the_user_engaged_with_enough_sellers():
    bandit = UserBandit(min_sellers=3)
    assert bandit.sample(np.random.default_rng(0)) is None
    bandit.update(ev("a", "click", 0, "s1"))
    bandit.update(ev("b", "click", 1, "s2"))
    bandit.update(ev("c", "click", 2))  # no seller known
    assert sorted(bandit.arms()) == [(ITEM, "a"), (ITEM, "b"), (ITEM, "c")]
    assert bandit.sample(np.random.default_rng(0))[0] == ITEM
    bandit.update(ev("d", "click", 3, "s3"))
    assert sorted(bandit.arms()) == [(SELLER, "s1"), (SELLER, "s2"), (SELLER, "s3")]


def test_evidence_decays_toward_the_prior_with_half_life():
    bandit = UserBandit(half_life=DAY, prior_alpha=2.0, prior_beta=3.0)
    bandit.update(ev("i1", "purchase", 0, "s1"))
    bandit.update(ev("i1", "impression", 10, "s1"))
    bandit.resolve(10 + WINDOW + 1)
    a0, b0 = bandit.posterior((SELLER, "s1"), now=10)
    a1, b1 = bandit.posterior((SELLER, "s1"), now=10 + DAY)
    assert a1 - 2.0 == pytest.approx((a0 - 2.0) / 2)
    assert b1 - 3.0 == pytest.approx((b0 - 3.0) / 2)
    far = bandit.posterior((SELLER, "s1"), now=100 * DAY)
    assert far == pytest.approx((2.0, 3.0), abs=1e-9)


def test_arms_are_bounded_keeping_most_evidence_and_the_latest():
    bandit = UserBandit(half_life=None, max_arms=3)
    for n, etype in enumerate(["purchase", "cart", "view", "favorite", "click"]):
        bandit.update(ev(f"i{n}", etype, n, f"s{n}"))
    # Kept: the two strongest older arms plus the latest one, however weak.
    assert set(bandit.sellers) == {"s0", "s1", "s4"}
    assert len(bandit.items) == 3


def test_round_trip_through_msgpack_with_pending_impressions():
    rng = np.random.default_rng(8)
    types = ["view", "click", "cart", "impression", "impression", "purchase"]
    events = [
        ev(
            f"i{rng.integers(15)}",
            types[rng.integers(len(types))],
            120.0 * k,
            f"s{rng.integers(5)}",
        )
        for k in range(300)
    ]
    config = {"max_arms": 6, "max_pending": 10, "half_life": DAY}
    bandit = UserBandit(**config)
    bandit.update_many(events[:200])
    assert bandit.pending_items  # the state under test holds pending impressions
    state = bandit.to_state()
    restored = UserBandit.from_state(roundtrip(state), **config)
    assert restored == bandit
    assert restored.to_state() == state
    assert [restored.sample(np.random.default_rng(s)) for s in range(10)] == [
        bandit.sample(np.random.default_rng(s)) for s in range(10)
    ]
    bandit.update_many(events[200:])
    restored.update_many(events[200:])
    assert restored == bandit
