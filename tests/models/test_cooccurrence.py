import math
from collections import Counter

import msgpack
import numpy as np
import pytest

from models.cooccurrence import (
    SessionWindow,
    SpaceSaving,
    TokenNeighbours,
    build_neighbours,
    iter_pairs,
)

DAY = 86_400.0


def ev(user, item, etype, ts, session_id=None):
    e = {"user_id": user, "item_id": item, "type": etype, "ts": float(ts)}
    if session_id is not None:
        e["session_id"] = session_id
    return e


def roundtrip(state):
    return msgpack.unpackb(msgpack.packb(state), strict_map_key=False)


# -- known answers ---------------------------------------------------------------


def scripted_sessions():
    """5 sessions A(click)->B(cart), 2 A(click)->C(cart), 3 A(click) alone."""
    events = []
    plans = ["B"] * 5 + ["C"] * 2 + [None] * 3
    for n, follower in enumerate(plans):
        t0 = n * 3600.0  # an hour apart: every plan is its own session
        events.append(ev("u", "A", "click", t0))
        if follower:
            events.append(ev("u", follower, "cart", t0 + 60))
    return events, plans


def test_repeated_click_to_cart_is_top_neighbour_with_hand_computed_probability():
    events, plans = scripted_sessions()
    table = build_neighbours(events, half_life=None)
    top = table[("A", "click")].top("cart", 5, now=events[-1]["ts"])
    assert [item for item, _, _ in top] == ["B", "C"]
    n_a = len(plans)
    assert top[0][1] == pytest.approx(plans.count("B"))
    assert top[0][2] == pytest.approx(plans.count("B") / n_a)  # 5 / 10
    assert top[1][2] == pytest.approx(plans.count("C") / n_a)  # 2 / 10
    # B and C lead nowhere, and nothing led to A.
    assert table[("B", "cart")].top("click", 5, now=0.0) == []


def test_probability_with_decay_matches_hand_computation():
    half_life = 2 * DAY
    events = []
    for day in range(6):  # A click every day; followed by a B cart on even days
        t0 = day * DAY
        events.append(ev("u", "A", "click", t0))
        if day % 2 == 0:
            events.append(ev("u", "B", "cart", t0 + 60))
    now = 7 * DAY
    table = build_neighbours(events, half_life=half_life)
    item, count, prob = table[("A", "click")].top("cart", 1, now=now)[0]

    def decayed(ts):
        return 0.5 ** ((now - ts) / half_life)

    expected_pair = sum(decayed(d * DAY + 60) for d in range(0, 6, 2))
    expected_total = sum(decayed(d * DAY) for d in range(6))
    assert item == "B"
    assert count == pytest.approx(expected_pair, rel=1e-12)
    assert prob == pytest.approx(expected_pair / expected_total, rel=1e-12)


def test_tokens_beyond_the_window_do_not_count():
    events = [ev("u", f"i{n}", "view", n) for n in range(23)]
    table = build_neighbours(events, half_life=None)
    first = table[("i0", "view")].top("view", 100, now=30)
    assert {item for item, _, _ in first} == {f"i{n}" for n in range(1, 21)}
    # The 22nd token (i21) is 21 tokens after i0: out of the window.
    assert ("i21" in {item for item, _, _ in first}) is False
    second = {item for item, _, _ in table[("i1", "view")].top("view", 100, now=30)}
    assert second == {f"i{n}" for n in range(2, 22)}


def test_window_size_is_configurable():
    window = SessionWindow(size=3)
    pairs = [window.push(f"i{n}", "click", n) for n in range(5)]
    assert [p[0][0] for p in pairs[4]] == ["i1", "i2", "i3"]
    assert len(window) == 3


def test_sessions_split_on_30_minute_gap():
    window = SessionWindow()
    window.push("A", "click", 0.0)
    assert window.push("B", "click", 29 * 60) == [(("A", "click"), 1.0)]
    # 31 minutes after the previous event: a new session, no pairs.
    assert window.push("C", "click", 29 * 60 + 31 * 60) == []
    assert window.tokens == [("C", "click")]


def test_sessions_split_on_session_id_change_not_gap():
    window = SessionWindow()
    window.push("A", "click", 0.0, "s1")
    # Same session id, 2 hours later: same session.
    assert window.push("B", "cart", 7200.0, "s1") == [(("A", "click"), 1.0)]
    # Different session id one second later: new session.
    assert window.push("C", "cart", 7201.0, "s2") == []
    # Losing the session id also starts a new session (models.sessions rule).
    assert window.push("D", "cart", 7202.0) == []


def test_pairs_match_shared_sessionisation_rule():
    from models.sessions import sessionise

    rng = np.random.default_rng(3)
    events = []
    t = 0.0
    for n in range(300):
        t += float(rng.choice([10.0, 600.0, 2500.0]))
        sid = None if n < 150 else f"s{n // 40}"
        events.append(ev("u", f"i{rng.integers(30)}", "click", t, sid))
    expected = Counter()
    for session in sessionise(events):
        toks = session.tokens
        for j, q in enumerate(toks):
            window = toks[max(0, j - 20) : j]
            last = max((k for k, p in enumerate(window) if p == q), default=-1)
            for p in window[last + 1 :]:
                expected[(p, q)] += 1
    got = Counter()
    for p, q, w, _ in iter_pairs(events):
        if p is not None:
            got[(p, q)] += w
    assert got == expected


def test_impressions_are_not_tokens():
    window = SessionWindow()
    window.push("A", "click", 0.0)
    assert window.push("X", "impression", 1.0) == []
    assert window.push("B", "click", 2.0) == [(("A", "click"), 1.0)]


def test_each_occurrence_counts_a_target_once_so_probability_is_at_most_one():
    events = [ev("u", "A", "click", 0), ev("u", "B", "cart", 1), ev("u", "B", "cart", 2)]
    table = build_neighbours(events, half_life=None)
    ((item, count, prob),) = table[("A", "click")].top("cart", 5, now=2)
    assert (item, count, prob) == ("B", 1.0, 1.0)
    # A, A, B: both occurrences of A are followed by B.
    events = [ev("v", "A", "click", 0), ev("v", "A", "click", 1), ev("v", "B", "cart", 2)]
    table = build_neighbours(events, half_life=None)
    assert table[("A", "click")].top("cart", 5, now=2) == [("B", 2.0, 1.0)]
    # Identical tokens do not pair with themselves.
    assert table[("A", "click")].top("click", 5, now=2) == []


def test_directional():
    table = build_neighbours([ev("u", "A", "click", 0), ev("u", "B", "click", 1)], half_life=None)
    assert table[("A", "click")].top("click", 5, now=1)[0][0] == "B"
    assert table[("B", "click")].top("click", 5, now=1) == []


# -- decay -----------------------------------------------------------------------


def test_decay_halves_a_count_after_one_half_life():
    half_life = 7 * DAY
    sketch = SpaceSaving(capacity=10, half_life=half_life)
    sketch.add("a", 3.0, ts=100.0)
    ((_, before),) = sketch.top(1, now=100.0)
    ((_, after),) = sketch.top(1, now=100.0 + half_life)
    assert before == pytest.approx(3.0)
    assert after == pytest.approx(before / 2)
    neighbours = TokenNeighbours(half_life=half_life)
    neighbours.add_total(4.0, ts=0.0)
    assert neighbours.total(half_life) == pytest.approx(2.0)
    assert neighbours.total(2 * half_life) == pytest.approx(1.0)


def test_late_weight_is_worth_more_and_order_follows_decayed_counts():
    sketch = SpaceSaving(capacity=10, half_life=DAY)
    sketch.add("old", 3.0, ts=0.0)  # worth 0.75 after 2 days
    sketch.add("new", 1.0, ts=2 * DAY)
    assert [item for item, _ in sketch.top(2, now=2 * DAY)] == ["new", "old"]
    assert dict(sketch.top(2, now=2 * DAY))["old"] == pytest.approx(0.75)


def test_rebase_after_a_long_time_keeps_exact_decayed_values():
    sketch = SpaceSaving(capacity=3, half_life=1.0)
    sketch.add("a", 1.0, ts=0.0)
    sketch.add("b", 1.0, ts=200.0)  # 200 half-lives later: forces a rebase
    assert sketch.ref == 200.0
    assert all(math.isfinite(v) for v in sketch.counts.values())
    assert dict(sketch.top(2, now=201.0)) == pytest.approx({"b": 0.5, "a": 2.0**-201})
    neighbours = TokenNeighbours(half_life=1.0)
    neighbours.add_total(1.0, 0.0)
    neighbours.add_total(1.0, 500.0)
    assert neighbours.total(501.0) == pytest.approx(0.5)


# -- Space-Saving guarantees --------------------------------------------------------


def heavy_and_rare_stream(rng, n_rare=4000):
    heavy = {f"h{n}": int(400 - 30 * n) for n in range(10)}
    stream = [item for item, c in heavy.items() for _ in range(c)]
    stream += [f"r{rng.integers(n_rare)}" for _ in range(n_rare)]
    rng.shuffle(stream)
    return stream, heavy


def test_space_saving_keeps_true_heavy_hitters_and_respects_error_bound():
    rng = np.random.default_rng(7)
    stream, heavy = heavy_and_rare_stream(rng)
    capacity = 50
    sketch = SpaceSaving(capacity=capacity, half_life=None)
    for item in stream:
        sketch.add(item, 1.0, ts=0.0)
    true = Counter(stream)
    total = len(stream)
    assert len(sketch) == capacity
    assert sketch.total(0.0) == pytest.approx(total)  # counters sum to the stream weight
    bound = total / capacity
    guaranteed = {item for item, c in true.items() if c > bound}
    assert guaranteed  # the stream must exercise the guarantee
    assert guaranteed <= set(sketch.counts)
    for item in sketch.counts:
        est, err = sketch.estimate(item, now=0.0)
        assert true[item] <= est + 1e-9
        assert est - true[item] <= err + 1e-9
        assert err <= bound + 1e-9
    assert [i for i, _ in sketch.top(len(heavy), now=0.0)] == sorted(heavy, key=heavy.get)[::-1]


def test_space_saving_bound_holds_on_decayed_weights_with_out_of_order_times():
    rng = np.random.default_rng(11)
    stream, _ = heavy_and_rare_stream(rng, n_rare=3000)
    times = rng.uniform(0, 5 * DAY, size=len(stream))
    weights = rng.choice([1.0, 2.0, 5.0], size=len(stream))
    half_life = DAY
    capacity = 40
    sketch = SpaceSaving(capacity=capacity, half_life=half_life)
    sketch.add_many(stream, weights.tolist(), times.tolist())
    now = 6 * DAY
    true = Counter()
    for item, w, t in zip(stream, weights, times, strict=True):
        true[item] += w * 0.5 ** ((now - t) / half_life)
    total = sum(true.values())
    assert sketch.total(now) == pytest.approx(total, rel=1e-9)
    bound = total / capacity
    guaranteed = {item for item, c in true.items() if c > bound}
    assert guaranteed <= set(sketch.counts)
    for item in sketch.counts:
        est, err = sketch.estimate(item, now)
        assert true[item] <= est * (1 + 1e-9)
        assert est - true[item] <= err * (1 + 1e-9) + 1e-9
    assert sketch.min_count(now) <= bound * (1 + 1e-9)


def test_add_many_equals_repeated_add():
    rng = np.random.default_rng(5)
    items = [f"i{n}" for n in rng.integers(0, 60, size=500)]
    times = np.sort(rng.uniform(0, 10 * DAY, size=500)).tolist()
    one, many = SpaceSaving(capacity=20), SpaceSaving(capacity=20)
    for item, t in zip(items, times, strict=True):
        one.add(item, 1.0, t)
    many.add_many(items, [1.0] * len(items), times)
    assert one == many


def test_merge_keeps_heavy_hitters_of_both_partitions():
    rng = np.random.default_rng(9)
    left_stream, _ = heavy_and_rare_stream(rng)
    right_stream, _ = heavy_and_rare_stream(rng)
    left, right = SpaceSaving(50, None), SpaceSaving(50, None)
    left.add_many(left_stream, [1.0] * len(left_stream), [0.0] * len(left_stream))
    right.add_many(right_stream, [1.0] * len(right_stream), [0.0] * len(right_stream))
    left.merge(right)
    true = Counter(left_stream) + Counter(right_stream)
    total = sum(true.values())
    assert len(left) == 50
    for item in [i for i, c in true.items() if c > 2 * total / 50]:
        est, err = left.estimate(item, 0.0)
        assert true[item] <= est <= true[item] + err + 1e-9


# -- serialisation ----------------------------------------------------------------


def test_state_round_trips_exactly_through_msgpack():
    events, _ = scripted_sessions()
    events += [ev("w", f"i{n % 7}", "view", 10 * n, "s") for n in range(40)]
    table = build_neighbours(events, capacity=4, half_life=DAY)
    for token, neighbours in table.items():
        state = neighbours.to_state()
        restored = TokenNeighbours.from_state(roundtrip(state), capacity=4, half_life=DAY)
        assert restored == neighbours
        assert restored.to_state() == state
        for kind in ("view", "cart", "click"):
            assert restored.top(kind, 10, now=5 * DAY) == neighbours.top(kind, 10, now=5 * DAY)
        # Same future after the round trip.
        restored.add(("Z", "view"), 1.0, 3 * DAY)
        neighbours.add(("Z", "view"), 1.0, 3 * DAY)
        assert restored == neighbours, token


def test_session_window_round_trips_and_continues_identically():
    window = SessionWindow()
    for n in range(25):
        window.push(f"i{n % 9}", ["view", "click", "cart"][n % 3], 5.0 * n, "s1")
    restored = SessionWindow.from_state(roundtrip(window.to_state()))
    assert restored == window
    assert restored.push("i3", "cart", 500.0, "s1") == window.push("i3", "cart", 500.0, "s1")
    assert restored.to_state() == window.to_state()


def test_merge_of_decayed_sketches_with_different_reference_times_is_exact_without_eviction():
    early, late, whole = SpaceSaving(100, DAY), SpaceSaving(100, DAY), SpaceSaving(100, DAY)
    early.add("a", 1.0, 0.0)
    late.add("a", 1.0, 300 * DAY)  # far later: late.ref is 300 half-lives ahead
    late.add("b", 2.0, 300 * DAY)
    for item, w, t in [("a", 1.0, 0.0), ("a", 1.0, 300 * DAY), ("b", 2.0, 300 * DAY)]:
        whole.add(item, w, t)
    early.merge(late)
    assert dict(early.top(5, now=301 * DAY)) == pytest.approx(dict(whole.top(5, now=301 * DAY)))
    assert all(math.isfinite(v) for v in early.counts.values())


def reference_space_saving(stream, capacity):
    """Textbook Space-Saving, evicting the smallest (count, item) by a full scan."""
    counts, errors = {}, {}
    for item, w in stream:
        if item in counts:
            counts[item] += w
        elif len(counts) < capacity:
            counts[item] = w
        else:
            victim = min(counts, key=lambda k: (counts[k], k))
            floor = counts.pop(victim)
            errors.pop(victim, None)
            counts[item] = floor + w
            errors[item] = floor
    return counts, errors


def test_evictions_match_the_textbook_algorithm_and_survive_a_round_trip():
    rng = np.random.default_rng(12)
    stream = [(f"i{int(rng.zipf(1.5)) % 300}", float(rng.integers(1, 4))) for _ in range(5000)]
    sketch = SpaceSaving(capacity=25, half_life=None)
    for item, w in stream[:2500]:
        sketch.add(item, w, 0.0)
    restored = SpaceSaving.from_state(roundtrip(sketch.to_state()), 25, None)
    for item, w in stream[2500:]:
        sketch.add(item, w, 0.0)
        restored.add(item, w, 0.0)
    counts, errors = reference_space_saving(stream, 25)
    assert sketch.counts == counts
    assert sketch.errors == errors
    assert restored == sketch
