"""The evaluation protocol on tiny logs whose answers are computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation import TASKS, EvalData, Protocol, evaluate, report_markdown
from models.evaluation.metrics import (
    AucCase,
    HomeTarget,
    Target,
    auc_cases,
    auc_from_scores,
    bootstrap_ci,
    category_cosine,
    coverage,
    hit_rate,
    home_hit_rate,
    home_targets,
    item_targets,
    mean_auc,
)
from models.evaluation.report import comparison
from models.evaluation.rows import RecentlyViewed, Row, SeedEcho
from models.evaluation.split import split_by_time

DAY = 86400.0


def ev(user, item, etype, ts, **extra):
    return {"user_id": user, "item_id": item, "type": etype, "ts": ts, **extra}


def test_split_keeps_impressions_for_the_fold_and_tests_a_closed_window():
    events = [
        ev("u", "a", "click", 0.0),
        ev("u", "a", "impression", 5.0),
        ev("u", "b", "cart", DAY),
        ev("u", "c", "cart", 2 * DAY),
    ]
    data = EvalData.split(events, test_hours=24)
    assert data.cut == DAY
    assert [e["item_id"] for e in data.train] == ["a"]
    assert [e["type"] for e in data.raw_train] == ["click", "impression"]
    assert [e["item_id"] for e in data.test] == ["b", "c"]  # both ends of the window
    assert data.catalogue == ["a"] and data.test_users == ["u"]
    with pytest.raises(ValueError, match="positive"):
        split_by_time(events, test_hours=0)


def test_protocol_rejects_unknown_types():
    with pytest.raises(ValueError, match="seed_types"):
        Protocol(seed_types=("like",))
    with pytest.raises(ValueError, match="positive"):
        Protocol(k=0)


def seeded_log() -> EvalData:
    """One user: an old session, then a test-window session (30-minute gaps split them)."""
    events = [
        ev("u", "a", "click", 0.0),
        ev("u", "b", "click", 10.0),
        ev("u", "c", "click", 20.0),
        ev("u", "d", "click", 30.0),
        ev("u", "e", "click", 40.0),
        ev("u", "a", "click", 50.0),  # a again: the most recent, counted once
        ev("u", "x", "cart", 60.0),
        # test window: a session that starts with a cart (no click yet), then clicks
        ev("u", "y", "cart", DAY + 100.0),
        ev("u", "f", "view", DAY + 200.0),
        ev("u", "y", "cart", DAY + 300.0),
        ev("u", "f", "purchase", DAY + 400.0),
    ]
    return EvalData.split(events, test_hours=24, cut=DAY)


def test_seeds_are_the_sessions_recent_distinct_clicks_else_the_last_four_before():
    data = seeded_log()
    targets = item_targets(data, TASKS["click-to-cart"])
    assert [t.item_id for t in targets] == ["y", "y", "f"]
    # No click in its session yet: the last 4 distinct clicks before it, most recent first.
    assert targets[0].seeds == (("a", "click"), ("e", "click"), ("d", "click"), ("c", "click"))
    # A view is a click seed: the session's own seeds win.
    assert targets[1].seeds == (("f", "view"),)
    assert targets[2].seeds == (("f", "view"),)
    assert [t.novel for t in targets] == [True, True, False]
    carts = item_targets(data, TASKS["cart-to-cart"])
    assert carts[0].seeds == (("x", "cart"),)  # the session has no cart before it yet
    assert carts[1].seeds == (("y", "cart"),)  # now it has: y, which is the target (not novel)
    assert [t.novel for t in carts] == [True, False, True]


def test_session_ids_decide_sessions_when_present():
    events = [
        ev("u", "a", "click", 0.0, session_id="s1"),
        ev("u", "b", "click", DAY + 1.0, session_id="s2"),
        ev("u", "c", "cart", DAY + 2.0, session_id="s3"),
    ]
    data = EvalData.split(events, test_hours=24, cut=DAY)
    (target,) = item_targets(data, TASKS["item-to-item"])
    assert target.seeds == (("b", "click"), ("a", "click"))  # s3 has no click of its own


def test_hit_rate_counts_targets_novel_and_the_cold_answer():
    targets = [
        Target("u", "b", (("a", "click"),)),
        Target("u", "a", (("a", "click"),)),  # echo: not novel
        Target("v", "c", (("a", "click"), ("z", "click"))),
        Target("w", "p", ()),  # no seed: only the cold answer can hit
    ]
    answers = {("a", "click"): ["a", "x"], ("z", "click"): ["c"]}
    result = hit_rate(targets, lambda seed: answers.get(seed, []), cold=["p"])
    assert (result.rate, result.novel_rate) == (3 / 4, 2 / 3)
    assert result.to_dict()["hits"] == 3 and result.to_dict()["novel_targets"] == 3
    no_cold = hit_rate(targets, lambda seed: answers.get(seed, []))
    assert no_cold.rate == 2 / 4
    assert hit_rate(targets, lambda seed: ["c", "b"], k=1).rate == 1 / 4  # only the top 1


def test_bootstrap_interval_is_seeded_and_brackets_the_rate():
    hits, totals = np.array([0, 1, 2, 5]), np.array([2, 2, 3, 5])
    lo, hi = bootstrap_ci(hits, totals, seed=3)
    assert (lo, hi) == bootstrap_ci(hits, totals, seed=3)
    assert lo <= hits.sum() / totals.sum() <= hi and lo < hi
    assert bootstrap_ci(np.array([0, 0]), np.array([0, 0])) is None


def test_home_targets_are_a_multiset_and_novel_means_untouched_before_the_cut():
    events = [
        ev("u", "a", "click", 0.0),
        ev("u", "a", "cart", DAY + 1),
        ev("u", "a", "purchase", DAY + 2),
        ev("u", "b", "cart", DAY + 3),
        ev("v", "c", "cart", DAY + 4),
    ]
    data = EvalData.split(events, test_hours=24, cut=DAY)
    targets = home_targets(data)
    assert [(t.item_id, t.novel) for t in targets] == [
        ("a", False),
        ("a", False),
        ("b", True),
        ("c", True),
    ]
    result = home_hit_rate(targets, {"u": ["a", "b"], "v": []})
    assert (result.rate, result.novel_rate) == (3 / 4, 1 / 2)
    assert home_hit_rate([HomeTarget("u", "a", True)], {}).rate == 0.0


def test_auc_ties_count_one_half_and_seeds_take_the_best_score():
    assert auc_from_scores([3, 1], [1, 0]) == 0.875
    assert auc_from_scores([1.0], [1.0, 1.0]) == 0.5
    case = AucCase(Target("u", "t", (("s1", "click"), ("s2", "click"))), ("n1", "n2"))
    table = {"s1": {"t": 0.1, "n1": 0.5, "n2": 0.0}, "s2": {"t": 0.9, "n1": 0.2, "n2": 0.0}}

    def score(seed, items):
        return np.array([table[seed[0]][i] for i in items])

    assert mean_auc([case], score) == 1.0  # t's best (0.9) beats n1's best (0.5)
    assert mean_auc([], score) is None


def test_auc_cases_draw_negatives_the_user_never_touched():
    events = [ev("u", i, "click", float(n)) for n, i in enumerate("abcdefgh")]
    events += [ev("u", "a", "cart", DAY + 10), ev("u", "b", "cart", DAY + 11)]
    events += [ev("v", i, "click", float(n)) for n, i in enumerate("klmnop")]
    events += [ev("u", "q", "cart", DAY + 12)]  # q is not in training: no case
    data = EvalData.split(events, test_hours=24, cut=DAY)
    targets = item_targets(data, TASKS["item-to-item"])
    cases = auc_cases(data, targets, negatives=20, seed=1)
    assert [c.target.item_id for c in cases] == ["a", "b"]
    for case in cases:
        assert len(case.negatives) == 20 and set(case.negatives) <= set("klmnop")
    assert cases == auc_cases(data, targets, negatives=20, seed=1)


def test_coverage_and_category_cosine():
    assert coverage({"a", "b", "zz"}, ["a", "b", "c", "d"]) == 0.5
    assert coverage({"a"}, []) is None
    vectors = {"a": [1.0, 0.0], "b": [1.0, 0.1], "c": [0.0, 1.0], "d": [0.0, 0.0]}
    cosine = category_cosine(vectors, {"a": "x", "b": "x", "c": "y", "d": "y"})
    assert cosine["same_pairs"] == 1 and cosine["cross_pairs"] == 2  # d (zero) ignored
    assert cosine["same"] > 0.99 and cosine["cross"] < 0.11


class Echo(Row):
    """Answers every seed with the item that follows it alphabetically."""

    name = "next letter"
    group = "served"
    tasks = frozenset({"item-to-item"})
    home_lists = True

    def similar(self, seed, task, k):
        return [chr(ord(seed[0]) + 1)]

    def home(self, user_id, k):
        return ["c", "b", "a"][:k]


def test_runner_scores_only_what_a_row_answers_and_skips_tasks_the_data_lacks():
    events = [
        ev("u", "a", "click", 0.0),
        ev("v", "b", "click", 1.0),
        ev("u", "a", "click", DAY + 1),
        ev("u", "b", "purchase", DAY + 2),
        ev("u", "c", "purchase", DAY + 3),
    ]
    rows = [Echo(), SeedEcho(), RecentlyViewed()]
    result = evaluate(events, rows, test_hours=24, protocol=Protocol(home_k=(1, 3)))
    assert set(result["data"]["tasks"]) == {"item-to-item"}  # no cart in training
    echo, seed_echo, recent = result["rows"]
    assert echo["tasks"]["item-to-item"]["rate"] == 1 / 2  # b follows a; c does not
    assert seed_echo["tasks"]["item-to-item"]["rate"] == 0.0
    assert echo["home"]["1"]["rate"] == 1 / 2 and echo["home"]["3"]["rate"] == 1.0
    assert recent["home"]["3"]["rate"] == 0.0  # u's history is only a
    assert recent["tasks"] == {} and echo["coverage"] == 1.0
    ratios = {(c["row"], c["column"]): c["ratio"] for c in comparison(result)}
    assert ratios[("next letter", "home hit@3")] is None  # the best other row scored 0
    text = report_markdown(result)
    assert "| next letter | 0.5000 [" in text and "| recently viewed (trivial) | 0.0000" in text


def test_runner_refuses_a_log_shorter_than_the_window():
    with pytest.raises(ValueError, match="test window"):
        evaluate([ev("u", "a", "cart", 0.0)], [SeedEcho()], test_hours=24)


def test_one_type_logs_seed_and_target_with_that_type():
    events = [ev("u", i, "purchase", float(n)) for n, i in enumerate("abc")]
    events += [ev("u", "d", "purchase", DAY + 10)]
    protocol = Protocol(seed_types=("purchase",), target_types=("purchase",))
    data = EvalData.split(events, test_hours=24, protocol=protocol)
    (target,) = item_targets(data, TASKS["item-to-item"])
    assert target.seeds == (("c", "purchase"), ("b", "purchase"), ("a", "purchase"))
    assert not TASKS["click-to-cart"].applies(data)
