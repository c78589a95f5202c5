"""The library baselines on a small planted log: each fits in seconds and finds the structure."""

from __future__ import annotations

import time

import numpy as np
import pytest

from models.evaluation import TASKS, EvalData, Protocol, evaluate
from models.evaluation.baselines import (
    ImplicitMF,
    Item2Vec,
    Popularity,
    SessionCooccurrence,
    baseline_rows,
    rank_union,
    top_followers,
)

DAY = 86400.0
GROUPS, SIZE = 8, 6


def planted_log(users: int = 160, seed: int = 0) -> list[dict]:
    """Each user browses one group of items per session and carts within the group.

    Training: two days of sessions; test: the last day, where each user clicks a
    group item and then carts another item of the same group. A popular item
    (``hot``) is clicked by everyone and carted by nobody in the test window.
    """
    rng = np.random.default_rng(seed)
    events = []
    for u in range(users):
        user = f"u{u}"
        for day in range(3):
            group = int(rng.integers(GROUPS))
            start = day * DAY + float(rng.integers(3600))
            items = [f"g{group}-{int(i)}" for i in rng.choice(SIZE, size=4, replace=False)]
            clicks = [*items[:3], "hot"] if day < 2 else items[:1]
            for n, item in enumerate(clicks):
                events.append(
                    {"user_id": user, "item_id": item, "type": "click", "ts": start + 10 * n}
                )
            events.append({"user_id": user, "item_id": items[3], "type": "cart", "ts": start + 100})
    return events


@pytest.fixture(scope="module")
def result():
    rows = [*baseline_rows("all", seed=1)]
    started = time.perf_counter()
    # k = 5: a group has 6 items, the catalogue 49; popularity cannot cover a group.
    out = evaluate(planted_log(), rows, test_hours=24, protocol=Protocol(k=5))
    out["seconds"] = time.perf_counter() - started
    return out


def test_every_library_row_runs_in_seconds_and_answers_every_task(result):
    assert result["seconds"] < 60
    names = [row["name"] for row in result["rows"]]
    assert names == [
        "popularity",
        "co-occurrence (within session)",
        "BPR (implicit)",
        "ALS (implicit)",
        "item2vec (gensim)",
        "item2vec + Etsy k=3 (gensim)",
    ]
    for row in result["rows"]:
        assert set(row["tasks"]) == {"item-to-item", "click-to-cart", "cart-to-cart"}, row
        assert set(row["home"]) == {"20", "100"}
        assert row["train_seconds"] < 20


def test_every_model_finds_the_planted_groups_better_than_popularity(result):
    rows = {row["name"]: row for row in result["rows"]}
    popular = rows["popularity"]["tasks"]["item-to-item"]["novel_rate"]
    for name, row in rows.items():
        if name == "popularity":
            continue
        novel = row["tasks"]["item-to-item"]["novel_rate"]
        assert novel > popular + 0.2, (name, novel, popular)
        assert row["tasks"]["item-to-item"]["auc"] > 0.6, name


def test_popularity_answers_targets_without_seeds_the_same_list():
    data = EvalData.split(planted_log(40), test_hours=24)
    row = Popularity()
    row.fit(data)
    task = TASKS["click-to-cart"]
    assert list(row.cold(task, 3)) == list(row.similar(("zz", "click"), task, 3))
    assert "hot" in row.similar(("zz", "click"), TASKS["item-to-item"], 1)  # clicked by all


def test_typed_answers_are_cart_items_only():
    data = EvalData.split(planted_log(60), test_hours=24)
    carted = data.items_of_type("cart")
    for row in (SessionCooccurrence(), ImplicitMF("als", seed=0), Item2Vec(0, epochs=2)):
        row.fit(data)
        answer = row.similar(("g0-0", "click"), TASKS["click-to-cart"], 50)
        assert answer and set(answer) <= carted, row.name


def test_implicit_rows_repeat_with_a_seed():
    data = EvalData.split(planted_log(40), test_hours=24)
    answers = []
    for _ in range(2):
        row = ImplicitMF("bpr", seed=5, iterations=20)
        row.fit(data)
        answers.append(list(row.similar(("g1-1", "click"), TASKS["item-to-item"], 10)))
    assert answers[0] == answers[1]


def test_helpers():
    assert top_followers([["a", "b", "a", "c"], ["a", "b"]], 1) == {
        "a": ["b"],
        "b": ["a"],
        "c": [],
    }
    assert rank_union([["a", "b"], ["c", "a"]], 3) == ["a", "c", "b"]
    with pytest.raises(ValueError, match="none, fast or all"):
        baseline_rows("some")
