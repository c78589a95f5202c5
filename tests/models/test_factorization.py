"""Tests for models/factorization.py: BPR and WARP matrix factorisation."""

from __future__ import annotations

import numpy as np
import pytest

from models.factorization import (
    FactorizationParams,
    MatrixFactorization,
    sample_warp_negatives,
)

USERS, CLUSTERS, PER_CLUSTER, LIKED = 200, 5, 20, 8
ITEMS = [f"i{c}_{j}" for c in range(CLUSTERS) for j in range(PER_CLUSTER)]


def planted(seed: int = 0) -> tuple[list[tuple[str, str, float]], list[tuple[str, str]]]:
    """Each user likes items of one cluster; one liked item per user is held out."""
    rng = np.random.default_rng(seed)
    train, held_out = [], []
    for u in range(USERS):
        cluster = u % CLUSTERS
        liked = rng.permutation(PER_CLUSTER)[:LIKED]
        train += [(f"u{u}", f"i{cluster}_{j}", 1.0) for j in liked[:-1]]
        held_out.append((f"u{u}", f"i{cluster}_{liked[-1]}"))
    return train, held_out


def auc(model: MatrixFactorization, held_out: list[tuple[str, str]], seed: int = 1) -> float:
    """Share of (held-out positive, random item) pairs ordered correctly."""
    rng = np.random.default_rng(seed)
    wins = []
    for user, positive in held_out:
        negatives = [ITEMS[k] for k in rng.integers(0, len(ITEMS), 50)]
        scores = model.score(user, [positive, *negatives])
        wins.append(np.mean(scores[0] > scores[1:]))
    return float(np.mean(wins))


@pytest.mark.parametrize("loss", ["bpr", "warp"])
def test_held_out_positive_beats_random_items(loss):
    train, held_out = planted()
    model = MatrixFactorization(
        FactorizationParams(factors=16, loss=loss, epochs=10, batch_size=128, seed=0)
    )
    model.fit(train)
    untrained = MatrixFactorization(
        FactorizationParams(factors=16, loss=loss, epochs=0, batch_size=128, seed=0)
    )
    untrained.fit(train)
    assert auc(model, held_out) > 0.8
    assert auc(untrained, held_out) < 0.65


def test_same_seed_gives_identical_factors():
    train, _ = planted()
    params = FactorizationParams(factors=8, loss="warp", epochs=3, seed=5)
    a = MatrixFactorization(params).fit(train)
    b = MatrixFactorization(params).fit(train)
    c = MatrixFactorization(FactorizationParams(factors=8, loss="warp", epochs=3, seed=6))
    c.fit(train)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert not np.array_equal(a.item_factors, c.item_factors)


def test_warp_samples_at_most_the_cap():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((300, 8)).astype(np.float32)
    users = rng.standard_normal((500, 8)).astype(np.float32)
    # Half the rows have a positive far above every item, so nothing violates.
    pos_scores = np.where(np.arange(500) % 2 == 0, 1e6, -1e6)
    for cap in (10, 37, 100):
        negatives, trials = sample_warp_negatives(
            rng, users, pos_scores, items, np.zeros(300, np.float32), cap
        )
        assert trials.max() <= cap and trials.min() >= 1
        assert (negatives[::2] == -1).all() and (trials[::2] == cap).all()
        assert (trials[1::2] == 1).all() and (negatives[1::2] >= 0).all()
    # Known positives never count as violators.
    negatives, _ = sample_warp_negatives(
        rng,
        users,
        -pos_scores * 0 - 1e6,
        items,
        np.zeros(300),
        20,
        is_positive=lambda r, i: i < 150,
    )
    assert (negatives >= 150).all()


def test_warp_progress_reports_trials_within_cap():
    train, _ = planted()
    reports = []
    params = FactorizationParams(
        factors=8, loss="warp", epochs=3, max_negatives=12, batch_size=128, seed=0
    )
    MatrixFactorization(params).fit(train, progress=reports.append)
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    assert all(1 <= r["mean_trials"] <= r["max_trials"] <= 12 for r in reports)
    # As the model learns, violators get rarer: more draws per positive.
    assert reports[-1]["mean_trials"] > reports[0]["mean_trials"]


def test_events_are_weighted_by_type():
    events = [
        {"user_id": "u", "item_id": "a", "type": "view"},
        {"user_id": "u", "item_id": "b", "type": "purchase"},
        {"user_id": "u", "item_id": "c", "type": "impression"},
    ]
    model = MatrixFactorization(FactorizationParams(factors=4, epochs=1))
    _, pair_items, weights = model._encode(events)
    by_item = {model.items[i]: w for i, w in zip(pair_items, weights, strict=True)}
    assert by_item == {"a": 0.5, "b": 5.0}  # impressions carry no weight


def test_recommend_exclude_score_and_round_trip(tmp_path):
    train, _ = planted()
    model = MatrixFactorization(FactorizationParams(factors=16, epochs=10, batch_size=128, seed=0))
    model.fit(train)
    top = model.recommend("u0", 5)
    assert len(top) == 5 and [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert all(item.startswith("i0_") for item, _ in top)  # u0 is in cluster 0
    excluded = model.recommend("u0", 5, exclude=[top[0][0]])
    assert top[0][0] not in {i for i, _ in excluded}
    scores = model.score("u0", [top[0][0], "unknown"])
    assert scores[0] == pytest.approx(top[0][1]) and scores[1] == -np.inf
    assert model.user_vector("nobody") is None
    model.save(tmp_path / "mf")
    loaded = MatrixFactorization.load(tmp_path / "mf")
    assert loaded.recommend("u0", 5) == top
    assert loaded.params == model.params
