"""The second pass's pure parts: features, heads, calibration, weights, files, cold fallback."""

from __future__ import annotations

import numpy as np
import pytest

from agents.recommend import RequestError, parse_request
from models.candidates.types import Candidate
from models.ranking.calibration import calibrate, kept_negatives
from models.ranking.features import FEATURE_NAMES, candidate_features
from models.ranking.ranker import LearnedRanker, RankerError, load_ranker
from models.ranking.utility import HEADS, WeightsError, merged_weights, parse_weights
from models.surfaces import SurfaceContext
from models.trajectory import UserTrajectory


def test_calibration_inverts_negative_downsampling():
    # True rate p; keep every positive and alpha of negatives: q = p / (p + alpha (1 - p)).
    for p in (0.01, 0.2, 0.7):
        for alpha in (0.05, 0.3, 1.0):
            q = p / (p + alpha * (1 - p))
            assert calibrate(q, alpha) == pytest.approx(p)
    # and empirically, on a downsampled sample
    rng = np.random.default_rng(0)
    y = rng.random(200_000) < 0.03
    keep = y | (rng.random(len(y)) < 0.1)
    assert float(calibrate(y[keep].mean(), 0.1)) == pytest.approx(0.03, rel=0.05)


def test_kept_negatives_are_a_replayable_share():
    ids = [f"e{i}" for i in range(20_000)]
    kept = kept_negatives(ids, ("click", "cart"), np.array([0.5, 0.1]))
    assert (kept == kept_negatives(ids, ("click", "cart"), np.array([0.5, 0.1]))).all()
    assert kept[:, 0].mean() == pytest.approx(0.5, abs=0.02)
    assert kept[:, 1].mean() == pytest.approx(0.1, abs=0.01)


def test_weights_validation_names_the_field():
    assert parse_weights("cart:2, purchase:5") == {"cart": 2.0, "purchase": 5.0}
    for raw, field in (
        ("save:1", "weights.save"),
        ("click:-1", "weights.click"),
        ({"cart": "x"}, "weights.cart"),
        ({"cart": float("nan")}, "weights.cart"),
    ):
        with pytest.raises(WeightsError) as caught:
            parse_weights(raw)
        assert caught.value.field == field
    assert merged_weights({"click": 1.0}, {"purchase": 3.0})["purchase"] == 3.0
    assert parse_request({"user_id": "u", "weights": {"cart": 2}})["weights"] == {"cart": 2.0}
    with pytest.raises(RequestError, match=r"weights\.like"):
        parse_request({"user_id": "u", "context": {"weights": "like:1"}})


def _context(k: int = 3) -> SurfaceContext:
    trajectory = UserTrajectory()
    for i, item in enumerate(["a", "b", "a"]):
        trajectory.update(
            {"item_id": item, "type": "click", "ts": float(i), "item": {"seller": "s"}}
        )
    return SurfaceContext(
        "u",
        now=3600.0,
        trajectory=trajectory,
        category_of=lambda item: "hats" if item in ("a", "c") else "shoes",
        seller_of=lambda item: "s",
        price_of=lambda item: 20.0 if item == "a" else None,
        k=k,
    )


def test_features_are_one_row_per_candidate_from_what_the_request_knows():
    candidates = [
        Candidate("a", 1.0, "recently_viewed", "", {"normalised": {"recently_viewed": 1.0}}),
        Candidate("c", 0.5, "popularity", "", {"normalised": {"popularity": 0.5}}),
    ]
    x = candidate_features(candidates, _context())
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}
    assert x.shape == (2, len(FEATURE_NAMES)) and np.isfinite(x).all()
    assert x[0, col["src_recently_viewed"]] == 1.0 and x[1, col["src_popularity"]] == 0.5
    assert x[0, col["log_item_seen"]] == pytest.approx(np.log1p(2))  # clicked a twice
    assert x[1, col["log_item_seen"]] == 0.0
    assert x[0, col["user_category_share"]] == pytest.approx(0.5)  # a (hats) of a, b
    assert x[1, col["user_category_share"]] == pytest.approx(0.5)  # c is a hat too
    assert x[0, col["price_known"]] == 1.0 and x[1, col["price_known"]] == 0.0
    assert x[1, col["log_first_pass_rank"]] == pytest.approx(np.log1p(1))


def test_cold_ranker_keeps_the_first_pass_order_and_a_ready_one_ranks_by_utility():
    candidates = [Candidate(i, 1.0 - n / 10, "popularity", "") for n, i in enumerate("abcd")]
    ranker = LearnedRanker(min_examples=100)
    cold = ranker.for_request({"click": 1.0})
    assert [c.item_id for c in cold.rank("u", candidates, _context(k=4))] == list("abcd")
    assert cold.info["status"] == "cold" and "0 of 100" in cold.info["reason"]
    # Learn that items the user clicked before get clicked: "a" and "b" should rise.
    x = candidate_features(candidates, _context(k=4))
    y = np.zeros((4, len(HEADS)), dtype=np.int8)
    y[:2, 0] = 1
    for epoch in range(60):
        ranker.learn(x, y, [f"{epoch}:{i}" for i in range(4)])
    assert ranker.ready
    hot = ranker.for_request({"click": 1.0})
    ranked = hot.rank("u", list(reversed(candidates)), _context(k=4))
    assert {c.item_id for c in ranked[:2]} == {"a", "b"}
    assert hot.info["status"] == "ranked" and ranked[0].evidence["explanation"].startswith(
        "p(click)"
    )


def test_ranker_files_round_trip_and_bad_ones_are_refused(tmp_path):
    ranker = LearnedRanker(min_examples=5)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, len(FEATURE_NAMES)))
    y = (rng.random((50, len(HEADS))) < 0.3).astype(np.int8)
    ranker.learn(x, y, [str(i) for i in range(50)])
    path = ranker.save(tmp_path / "r.npz")
    loaded = load_ranker(path)
    assert loaded.examples == 50 and loaded.ready
    np.testing.assert_allclose(loaded.weights.probabilities(x), ranker.weights.probabilities(x))
    loaded.learn(x, y, [str(i) for i in range(50, 100)])  # carries on learning
    assert loaded.examples == 100
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    bad = dict(arrays, coef=arrays["coef"][:, :-1])
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(RankerError, match="coef: expected shape"):
        load_ranker(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a ranker")
    with pytest.raises(RankerError, match="cannot read"):
        load_ranker(tmp_path / "junk.npz")


def test_tune_respects_every_constraint_and_beats_the_baseline_objective():
    from models.ranking.tune import list_metrics, tune
    from models.ranking.utility import weight_vector

    rng = np.random.default_rng(3)
    n_lists, per = 300, 12
    lists = np.repeat(np.arange(n_lists), per)
    # Click and purchase are independent: ranking for one costs the other.
    click = rng.random(n_lists * per) * 0.5
    purchase = rng.random(n_lists * per) * 0.1
    p = np.stack([click, click * 0.05, purchase * 2, purchase], axis=1)
    y = (rng.random(p.shape) < p).astype(np.int8)
    baseline = {"click": 1.0, "favorite": 0.0, "cart": 0.0, "purchase": 0.0}
    found = tune(p, y, lists, baseline, factors={"click": 0.8, "favorite": 0.8}, seed=1, trials=25)
    base = list_metrics(p, y, lists, weight_vector(baseline))
    assert found.chosen["click"] == 1.0  # the fixed scale
    assert found.chosen_metrics["purchase"] > base[3]
    for head, margin in found.margins.items():
        assert margin >= 0.0
        assert found.chosen_metrics[head] >= found.factors[head] * base[HEADS.index(head)]
    for trial in found.trials:  # what the optimiser calls feasible is feasible
        metrics = list_metrics(p, y, lists, weight_vector(trial["weights"]))
        ok = all(
            metrics[HEADS.index(h)] >= c * base[HEADS.index(h)] - 1e-12
            for h, c in found.factors.items()
        )
        assert ok == trial["feasible"]
    assert any(not t["feasible"] for t in found.trials)  # the constraint did bind
    assert "constraint margins" in found.report()
