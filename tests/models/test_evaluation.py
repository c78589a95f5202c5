"""Evaluation metrics against numbers counted by hand on tiny fixtures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models.evaluation import (
    auc_from_scores,
    brier_score,
    category_cosine,
    cooccurrence_candidates,
    cooccurrence_counts,
    coverage,
    evaluate,
    hit_rates,
    popularity_candidates,
    reliability_bins,
    report_markdown,
    roc_auc,
    seed_positives,
    split_by_time,
    user_hit_rate,
    user_positives,
)


def ev(user: str, item: str, etype: str, ts: float) -> dict:
    return {"user_id": user, "item_id": item, "type": etype, "ts": ts}


# Three test users. Comments give what each event is for click-to-cart.
FIXTURE = [
    ev("u1", "a", "click", 0),  # seed a -> {b, c}
    ev("u1", "b", "cart", 1),  # hit (novel)
    ev("u1", "c", "cart", 2),  # hit (novel)
    ev("u1", "x", "purchase", 3),  # miss (novel)
    ev("u2", "b", "cart", 0),  # no seed yet: not in P
    ev("u2", "d", "click", 1),  # seed d -> {d}
    ev("u2", "d", "cart", 2),  # hit, but d was clicked: not novel
    ev("u2", "e", "cart", 3),  # miss (novel)
    ev("u3", "a", "view", 0),  # seed (a, view) -> {}
    ev("u3", "d", "click", 1),  # seed d -> {d}
    ev("u3", "c", "purchase", 2),  # miss (novel)
]

TABLE = {
    ("a", "click", "cart"): ["b", "c"],
    ("a", "click", "click"): ["a2"],
    ("b", "cart", "cart"): ["c"],
    ("d", "click", "cart"): ["d"],
}


def table_candidates(item: str, seed_type: str, target_type: str, k: int) -> list[str]:
    return TABLE.get((item, seed_type, target_type), [])


# ------------------------------------------------------------------ split


def test_split_default_cut_is_last_ts_minus_window_and_includes_the_last_event():
    events = [ev("u", "i", "click", t) for t in (0.0, 3599.9, 3600.0, 7200.0)]
    train, test, cut = split_by_time(events, test_hours=1)
    assert cut == 3600.0
    assert [e["ts"] for e in train] == [0.0, 3599.9]
    assert [e["ts"] for e in test] == [3600.0, 7200.0]


def test_split_explicit_cut_drops_events_after_the_window():
    events = [ev("u", "i", "click", t) for t in (999.0, 1000.0, 4600.0, 4601.0)]
    train, test, cut = split_by_time(events, test_hours=1, cut=1000.0)
    assert cut == 1000.0
    assert [e["ts"] for e in train] == [999.0]
    assert [e["ts"] for e in test] == [1000.0, 4600.0]


def test_split_rejects_a_non_positive_window():
    with pytest.raises(ValueError, match="test_hours"):
        split_by_time([ev("u", "i", "click", 0)], test_hours=0)


# ------------------------------------------------------------------ hit rates


def test_click_to_cart_hit_rate_and_novel_variant_counted_by_hand():
    r = hit_rates(FIXTURE, table_candidates, tasks=("click-to-cart",))["click-to-cart"]
    # P: u1 {b, c, x}, u2 {d, e}, u3 {c}; hits b, c (u1) and d (u2).
    assert (r.hits, r.targets) == (3, 6)
    assert r.rate == 0.5
    # Novel drops u2's d (clicked before): hits b, c out of b, c, x, e, c.
    assert (r.novel_hits, r.novel_targets) == (2, 5)
    assert r.novel_rate == pytest.approx(0.4)
    assert r.users == 3
    # Distinct seed tokens (a,click), (d,click), (a,view); the last has no candidates.
    assert (r.seeds, r.seeds_with_candidates) == (3, 2)


def test_cart_to_cart_hit_rate_counted_by_hand():
    r = hit_rates(FIXTURE, table_candidates, tasks=("cart-to-cart",))["cart-to-cart"]
    # u1: b has no cart seed before it; c hit (seed b -> c); x miss.
    # u2: b has no seed; d and e miss (seed b -> c, seed d -> nothing).
    # u3: no cart seed, so its purchase is not in P.
    assert (r.hits, r.targets) == (1, 4)
    assert (r.novel_hits, r.novel_targets) == (1, 4)
    assert r.users == 2


def test_item_to_item_uses_the_seed_type_as_target_type():
    r = hit_rates(FIXTURE, table_candidates, tasks=("item-to-item",))["item-to-item"]
    # u1: b miss (S = {a2}), c hit (S gains c from cart b), x miss.
    # u2: d miss and not novel (clicked d), e miss. u3: c miss.
    assert (r.hits, r.targets) == (1, 6)
    assert (r.novel_hits, r.novel_targets) == (1, 5)
    assert r.rate == pytest.approx(1 / 6)


def test_an_event_never_seeds_itself():
    # Candidates always include the seed item: a cart must not predict itself.
    events = [ev("u", "a", "cart", 0)]
    r = hit_rates(events, lambda i, s, t, k: [i], tasks=("item-to-item", "cart-to-cart"))
    assert r["item-to-item"].targets == 0
    assert r["cart-to-cart"].targets == 0


def test_returning_the_clicked_item_scores_plain_but_not_novel():
    events = [ev("u", "a", "click", 0), ev("u", "a", "cart", 1), ev("u", "b", "cart", 2)]
    echo = hit_rates(events, lambda i, s, t, k: [i], tasks=("click-to-cart",))["click-to-cart"]
    assert (echo.hits, echo.targets) == (1, 2)
    assert (echo.novel_hits, echo.novel_targets) == (0, 1)


def test_k_truncates_each_seed_list_even_if_the_generator_returns_more():
    r = hit_rates(FIXTURE, table_candidates, k=1, tasks=("click-to-cart",))["click-to-cart"]
    # a -> {b} only: u1 c is now a miss.
    assert (r.hits, r.targets) == (2, 6)


def test_max_seeds_keeps_only_the_most_recent_seed_tokens():
    events = [ev("u", "a", "click", 0), ev("u", "z", "click", 1), ev("u", "b", "cart", 2)]
    all_seeds = hit_rates(events, table_candidates, tasks=("click-to-cart",))["click-to-cart"]
    last_one = hit_rates(events, table_candidates, tasks=("click-to-cart",), max_seeds=1)
    assert all_seeds.hits == 1
    assert last_one["click-to-cart"].hits == 0


def test_event_order_in_the_input_does_not_matter():
    forward = hit_rates(FIXTURE, table_candidates)
    backward = hit_rates(list(reversed(FIXTURE)), table_candidates)
    assert {t: r.to_dict() for t, r in forward.items()} == {
        t: r.to_dict() for t, r in backward.items()
    }


def test_each_distinct_seed_token_queries_the_generator_once():
    calls: list[tuple] = []

    def counting(item, seed_type, target_type, k):
        calls.append((item, seed_type, target_type))
        return table_candidates(item, seed_type, target_type, k)

    events = [*FIXTURE, ev("u1", "a", "click", 4), ev("u1", "q", "cart", 5)]
    hit_rates(events, counting, tasks=("click-to-cart",))
    assert len(calls) == len(set(calls)) == 3


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="unknown task"):
        hit_rates(FIXTURE, table_candidates, tasks=("click-to-purchase",))


def test_user_hit_rate_counted_by_hand():
    lists = {"u1": ["b", "x"], "u2": ["d"], "u3": []}
    r = user_hit_rate(FIXTURE, lambda user, k: lists[user])
    # P: u1 {b, c, x}, u2 {b, d, e}, u3 {c}; hits b, x, d.
    assert (r.hits, r.targets) == (3, 7)
    # u2's d was clicked before: novel P has 6 targets with hits b, x.
    assert (r.novel_hits, r.novel_targets) == (2, 6)
    assert (r.users, r.seeds_with_candidates) == (3, 2)


# ------------------------------------------------------------------ coverage, evaluate


def test_coverage_counts_only_catalogue_items():
    assert coverage({"a", "b", "zz"}, ["a", "b", "c", "d"]) == 0.5
    with pytest.raises(ValueError):
        coverage({"a"}, [])


def test_evaluate_row_is_json_and_coverage_spans_all_tasks():
    catalogue = ["a", "b", "c", "d", "e", "x"]
    row = evaluate(FIXTURE, table_candidates, catalogue=catalogue)
    again = json.loads(json.dumps(row))
    assert again["hit_rate"]["click-to-cart"] == 0.5
    assert again["novel_hit_rate"]["item-to-item"] == pytest.approx(0.2)
    assert again["counts"]["cart-to-cart"]["targets"] == 4
    # Candidates seen: b, c, d (click-to-cart), c (cart-to-cart), a2, c (item-to-item);
    # a2 is not in the catalogue, so 3 of 6 items are covered.
    assert row["coverage"] == 0.5


def test_evaluate_with_user_candidates_adds_a_user_column():
    row = evaluate(FIXTURE, user_candidates=lambda user, k: ["b"], catalogue=["b", "c"])
    assert set(row["hit_rate"]) == {"user"}
    # b is carted by u1 and u2 out of 7 targets.
    assert row["hit_rate"]["user"] == pytest.approx(2 / 7)
    assert row["coverage"] == 0.5


# ------------------------------------------------------------------ AUC


def test_auc_from_scores_with_ties_matches_pair_counting_by_hand():
    # 3>1, 3>0, 1=1 (half), 1>0: 3.5 of 4 pairs.
    assert auc_from_scores([3, 1], [1, 0]) == 0.875
    # .2<.5, .2>.1, .5=.5 (half), .5>.1, twice over: 4 of 6 pairs.
    assert auc_from_scores([0.2, 0.5, 0.5], [0.5, 0.1]) == pytest.approx(4 / 6)


def test_auc_from_scores_rejects_nan_and_empty_sides():
    with pytest.raises(ValueError, match="NaN"):
        auc_from_scores([float("nan")], [0.0])
    with pytest.raises(ValueError):
        auc_from_scores([], [0.0])


CATALOGUE = [f"i{n}" for n in range(50)]
POSITIVES = [("u1", "i1"), ("u1", "i2"), ("u2", "i3")]


def test_roc_auc_is_one_for_a_perfect_scorer_and_zero_for_its_inverse():
    liked = {"u1": {"i1", "i2"}, "u2": {"i3"}}

    def perfect(user, items):
        return [1.0 if i in liked[user] else 0.0 for i in items]

    def inverted(user, items):
        return [-s for s in perfect(user, items)]

    assert roc_auc(perfect, POSITIVES, CATALOGUE, 10, rng=1) == 1.0
    assert roc_auc(inverted, POSITIVES, CATALOGUE, 10, rng=1) == 0.0


def test_roc_auc_is_one_half_for_a_constant_scorer():
    assert roc_auc(lambda u, items: [7.0] * len(items), POSITIVES, CATALOGUE, 10, rng=1) == 0.5


def test_roc_auc_averages_over_keys():
    # Perfect for u1, constant for u2: (1 + 0.5) / 2.
    def half(user, items):
        if user == "u2":
            return [0.0] * len(items)
        return [1.0 if i in {"i1", "i2"} else 0.0 for i in items]

    assert roc_auc(half, POSITIVES, CATALOGUE, 5, rng=3) == 0.75


def test_roc_auc_draws_only_unseen_negatives_in_the_requested_number():
    asked: list[list[str]] = []
    seen = {"u1": set(CATALOGUE[10:45])}

    def record(user, items):
        asked.append(list(items))
        return np.zeros(len(items))

    roc_auc(record, POSITIVES, CATALOGUE, 4, rng=0, seen=seen)
    u1_items, u2_items = asked
    assert u1_items[:2] == ["i1", "i2"] and len(u1_items) == 2 + 2 * 4
    assert not set(u1_items[2:]) & ({"i1", "i2"} | seen["u1"])
    assert u2_items[0] == "i3" and len(u2_items) == 1 + 4
    assert "i3" not in u2_items[1:]


def test_roc_auc_is_reproducible_with_a_seed():
    rng = np.random.default_rng(5)
    scores = {i: float(rng.normal()) for i in CATALOGUE}

    def noisy(user, items):
        return [scores[i] for i in items]

    first = roc_auc(noisy, POSITIVES, set(CATALOGUE), 8, rng=11)
    second = roc_auc(noisy, POSITIVES, set(CATALOGUE), 8, rng=11)
    assert first == second
    assert 0.0 <= first <= 1.0


def test_roc_auc_skips_keys_that_have_seen_everything():
    only = [("u1", "i1"), ("u2", "i3")]
    seen = {"u2": set(CATALOGUE)}
    perfect = lambda user, items: [1.0 if i in {"i1"} else 0.0 for i in items]  # noqa: E731
    assert roc_auc(perfect, only, CATALOGUE, 3, rng=0, seen=seen) == 1.0
    with pytest.raises(ValueError, match="unseen"):
        roc_auc(perfect, [("u2", "i3")], CATALOGUE, 3, rng=0, seen=seen)


def test_positive_helpers():
    assert user_positives(FIXTURE) == [
        ("u1", "b"),
        ("u1", "c"),
        ("u1", "x"),
        ("u2", "b"),
        ("u2", "d"),
        ("u2", "e"),
        ("u3", "c"),
    ]
    # u2's d after clicking d is trivial and left out; u2's first cart has no seed.
    assert seed_positives(FIXTURE) == [("a", "b"), ("a", "c"), ("a", "x"), ("d", "e"), ("d", "c")]


# ------------------------------------------------------------------ category cosine


def test_category_cosine_enumerates_small_pair_sets_exactly():
    vecs = {"a1": [1.0, 0.0], "a2": [1.0, 1.0], "b": [0.0, 3.0], "zero": [0.0, 0.0]}
    cats = {"a1": "A", "a2": "A", "b": "B", "zero": "B"}
    out = category_cosine(vecs, cats)
    # Same: a1.a2 = 1/sqrt2. Cross: a1.b = 0, a2.b = 1/sqrt2; the zero vector is ignored.
    assert out["same"] == pytest.approx(1 / math.sqrt(2))
    assert out["cross"] == pytest.approx(1 / (2 * math.sqrt(2)))
    assert (out["same_pairs"], out["cross_pairs"]) == (1, 2)


def test_category_cosine_samples_when_there_are_many_pairs():
    vecs = {f"x{n}": [n + 1.0, 0.0] for n in range(6)} | {f"y{n}": [0.0, 1.0] for n in range(6)}
    cats = {k: k[0] for k in vecs}
    out = category_cosine(vecs, cats, max_pairs=7, rng=0)
    # Within a category vectors are parallel, across they are orthogonal.
    assert out["same"] == pytest.approx(1.0)
    assert out["cross"] == pytest.approx(0.0)
    assert (out["same_pairs"], out["cross_pairs"]) == (7, 7)


def test_category_cosine_without_pairs_of_a_kind_gives_none():
    out = category_cosine({"a": [1.0], "b": [2.0]}, {"a": "A", "b": "B"})
    assert out["same"] is None and out["same_pairs"] == 0
    assert out["cross"] == pytest.approx(1.0)


# ------------------------------------------------------------------ calibration


def test_brier_score_by_hand():
    # (0.2^2 + 0.6^2 + 0 + 0.5^2) / 4
    assert brier_score([1, 0, 1, 1], [0.8, 0.6, 1.0, 0.5]) == pytest.approx(0.65 / 4)
    with pytest.raises(ValueError):
        brier_score([1, 0], [0.5])


def test_reliability_bins_by_hand():
    bins = reliability_bins([0, 1, 1, 0], [0.05, 0.15, 0.95, 1.0], bins=10)
    assert len(bins) == 10
    assert [b["count"] for b in bins] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins[0]["fraction_positive"] == 0.0 and bins[1]["fraction_positive"] == 1.0
    assert bins[9]["mean_score"] == pytest.approx(0.975)
    assert bins[9]["fraction_positive"] == 0.5
    assert bins[4]["mean_score"] is None
    assert (bins[9]["low"], bins[9]["high"]) == (0.9, 1.0)


# ------------------------------------------------------------------ baselines


def test_popularity_ranks_by_target_type_count_then_total_then_id():
    train = [
        ev("u", "a", "view", 0),
        ev("u", "a", "view", 1),
        ev("u", "a", "view", 2),
        ev("u", "b", "cart", 3),
        ev("v", "b", "cart", 4),
        ev("v", "c", "cart", 5),
        ev("v", "d", "view", 6),
        ev("v", "e", "view", 7),
        ev("v", "e", "impression", 8),  # not an interaction
    ]
    popular = popularity_candidates(train)
    # Carts: b 2, c 1; then by total: a 3, then d and e with 1 each, by id.
    assert popular("anything", "click", "cart", 10) == ["b", "c", "a", "d", "e"]
    assert popular("anything", "click", "view", 2) == ["a", "d"]


SESSION = [
    ev("u", "a", "click", 0),
    ev("u", "b", "cart", 1),
    ev("u", "a", "click", 2),
    ev("u", "c", "cart", 3),
    ev("u", "b", "cart", 4),
    ev("u", "z", "click", 10_000),  # a new session after the 30-minute gap
    ev("w", "a", "click", 5),  # another user
]


def test_cooccurrence_counts_are_directional_and_per_session():
    counts = cooccurrence_counts(SESSION)
    # From a@0: b, c, b (a@2 is the same token); from a@2: c, b.
    assert counts[("a", "click")] == {("b", "cart"): 3, ("c", "cart"): 2}
    # c is followed by b once, never by a.
    assert counts[("c", "cart")] == {("b", "cart"): 1}
    assert ("z", "click") not in counts[("b", "cart")]


def test_cooccurrence_window_limits_how_far_ahead_counts_reach():
    counts = cooccurrence_counts(SESSION, window=2)
    # a@0 sees b@1 (a@2 is itself); a@2 sees c@3 and b@4.
    assert counts[("a", "click")] == {("b", "cart"): 2, ("c", "cart"): 1}


def test_cooccurrence_candidates_rank_by_count_and_filter_by_target_type():
    candidates = cooccurrence_candidates(SESSION)
    assert candidates("a", "click", "cart", 5) == ["b", "c"]
    assert candidates("a", "click", "cart", 1) == ["b"]
    assert candidates("b", "cart", "click", 5) == ["a"]
    assert candidates("unknown", "click", "cart", 5) == []


# ------------------------------------------------------------------ report


def test_report_markdown_renders_rows_in_order_with_percentages():
    rows = {
        "embedding": {
            "hit_rate": {"item-to-item": 0.0798, "click-to-cart": 0.1078, "cart-to-cart": 0.0754},
            "novel_hit_rate": {"item-to-item": 0.05},
            "auc": 0.91234,
            "coverage": 0.7,
            "train_seconds": 12.34,
        },
        "popularity": {"hit_rate": {"click-to-cart": 0.01}, "coverage": 0.001},
    }
    text = report_markdown({"config": {"k": 200}, "models": rows})
    lines = text.splitlines()
    assert lines[0] == "k=200"
    header = lines[2]
    assert header.startswith("| model | hit % item→item | hit % click→cart | hit % cart→cart")
    assert "AUC" in header and "coverage %" in header and "train s" in header
    assert "user" not in header and "cos" not in header
    assert lines[4] == ("| embedding | 7.98 | 10.78 | 7.54 | 5.00 | - | - | 0.912 | 70.0 | 12.3 |")
    assert lines[5].startswith("| popularity | - | 1.00 | - |")
    assert all(line.count("|") == header.count("|") for line in lines[2:])


def test_report_markdown_adds_optional_columns_when_present():
    row = {
        "hit_rate": {"user": 0.02},
        "novel_hit_rate": {"user": 0.01},
        "category_cosine": {"same": 0.54, "cross": 0.43},
    }
    text = report_markdown({"models": {"mf": row}})
    header, _, line = text.splitlines()
    assert "hit % user" in header and "cos same-cat" in header
    assert "| 2.00 |" in line and "| 0.54 | 0.43 |" in line
