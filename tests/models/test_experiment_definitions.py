"""Experiments: definitions, bucketing over 100k users, ramps, and the delta-method statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.experiments import (
    QUANTITIES,
    Experiment,
    ExperimentError,
    Moments,
    compare,
    parse_shares,
    report,
)

USERS = [f"user-{i}" for i in range(100_000)]


def definition(**shares: float) -> Experiment:
    return Experiment.from_definition(
        "home-pop",
        {
            "control": "control",
            "variants": {
                "control": {"share": shares.get("control", 0.3), "personalised": False},
                "treatment": {"share": shares.get("treatment", 0.3)},
            },
            "surfaces": ["home"],
        },
    )


def counts(experiment: Experiment) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for user in USERS:
        v = experiment.variant_of(user)
        out[v] = out.get(v, 0) + 1
    return out


def test_bucketing_is_within_share_tolerances_and_stable_over_100k_users():
    running = definition().started(now=1000.0)
    assignments = [running.variant_of(u) for u in USERS]
    n = len(USERS)
    for name, share in (("control", 0.3), ("treatment", 0.3), (None, 0.4)):
        observed = assignments.count(name) / n
        sigma = math.sqrt(share * (1 - share) / n)
        assert abs(observed - share) < 4 * sigma, (name, observed)
    # the same on every call and for every copy of the experiment (what every worker computes)
    again = Experiment.from_definition("home-pop", running.as_record())
    assert [again.variant_of(u) for u in USERS[:20_000]] == assignments[:20_000]


def test_a_ramp_only_moves_users_out_of_exempt():
    canary = definition().started(now=1000.0, shares={"control": 0.01, "treatment": 0.01})
    before = {u: canary.variant_of(u) for u in USERS}
    assert abs(sum(v is not None for v in before.values()) / len(USERS) - 0.02) < 0.003
    ramped = canary.ramped(now=2000.0, shares={"control": 0.3, "treatment": 0.3})
    assert ramped.run == canary.run  # the same run: users and their metrics carry on
    moved_in = 0
    for user, was in before.items():
        now = ramped.variant_of(user)
        if was is not None:
            assert now == was, (user, was, now)  # never between variants, never back out
        elif now is not None:
            moved_in += 1
    assert abs(moved_in / len(USERS) - 0.58) < 0.01
    with pytest.raises(ExperimentError, match="only raises shares"):
        ramped.ramped(now=3000.0, shares={"treatment": 0.1})
    with pytest.raises(ExperimentError, match="max_share"):
        ramped.ramped(now=3000.0, shares={"treatment": 0.6})


def test_experiments_are_bucketed_independently():
    a = definition().started(now=1.0)
    b = Experiment.from_definition("other", {**a.as_record(), "name": "other", "salt": "other"})
    pairs = [(a.variant_of(u), b.variant_of(u)) for u in USERS[:50_000]]
    both = sum(x == "treatment" and y == "treatment" for x, y in pairs) / len(pairs)
    assert abs(both - 0.09) < 0.01  # 0.3 * 0.3: no correlation between experiments


def test_stopping_a_variant_serves_its_users_the_control():
    running = definition().started(now=1.0)
    stopped = running.stopped(now=2.0, variant="treatment", reason="p95 latency 900 ms > 500 ms")
    user = next(u for u in USERS if running.variant_of(u) == "treatment")
    assert stopped.variant_of(user) == "treatment"  # the bucket stays
    assert stopped.served_variant("treatment") == "control"
    assert stopped.stopped_variants["treatment"]["reason"].startswith("p95")
    with pytest.raises(ExperimentError, match="control"):
        running.stopped(now=2.0, variant="control")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"variants": {"a": {}}}, "experiments.x.variants"),
        ({"variants": {"a": {"share": 2}, "b": {}}}, "experiments.x.variants.a.share"),
        ({"variants": {"a": {"shar": 0.1}, "b": {}}}, "experiments.x.variants.a.shar"),
        ({"variants": {"a": {}, "b": {}}, "control": "c"}, "experiments.x.control"),
        ({"variants": {"a": {"ranker_weights": {"like": 1}}, "b": {}}}, "ranker_weights.like"),
        ({"variants": {"a": {"max_share": 0.8}, "b": {"max_share": 0.5}}}, "add up"),
        ({"variants": {"a": {}, "b": {}}, "guard": {"max_p95_ms": -1}}, "guard.max_p95_ms"),
    ],
)
def test_bad_definitions_name_the_field(raw, field):
    with pytest.raises(ExperimentError, match=field.replace(".", r"\.")):
        Experiment.from_definition("x", raw)


def test_parse_shares():
    assert parse_shares("0.3", ["a", "b"]) == {"a": 0.3, "b": 0.3}
    with pytest.raises(ExperimentError, match="NAME=SHARE"):
        parse_shares("a:0.3")


def user_vectors(rng, users: int, ctr: float) -> np.ndarray:
    """Per-user totals: impressions vary by user, clicks binomial with a per-user rate."""
    out = np.zeros((users, len(QUANTITIES)))
    impressions = rng.integers(1, 30, users)
    rate = np.clip(rng.normal(ctr, 0.05, users), 0, 1)  # users differ: clustering
    out[:, QUANTITIES.index("impressions")] = impressions
    out[:, QUANTITIES.index("clicks")] = rng.binomial(impressions, rate)
    out[:, QUANTITIES.index("requests")] = 1
    return out


def moments_of(vectors: np.ndarray) -> Moments:
    m = Moments()
    for row in vectors:
        m.move(None, row.tolist())
    return m


def test_moments_equal_the_direct_delta_method_and_moves_keep_them_exact():
    rng = np.random.default_rng(0)
    vectors = user_vectors(rng, 400, 0.2)
    m = moments_of(vectors)
    x, y = vectors[:, 3], vectors[:, 4]
    r = y.sum() / x.sum()
    se = math.sqrt(((y - r * x) ** 2).sum() * len(x) / (len(x) - 1)) / x.sum()
    got_r, got_se = m.ratio("clicks", "impressions")
    assert got_r == pytest.approx(r) and got_se == pytest.approx(se)
    # a user's totals growing in steps ends where adding them at once does
    stepwise = Moments()
    for row in vectors:
        half = (row // 2).tolist()
        stepwise.move(None, half)
        stepwise.move(half, row.tolist())
    assert stepwise.n == m.n
    assert stepwise.cross == pytest.approx(m.cross) and stepwise.sums == pytest.approx(m.sums)


def test_intervals_cover_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    runs = 150
    for _ in range(runs):
        a = moments_of(user_vectors(rng, 150, 0.20))
        b = moments_of(user_vectors(rng, 150, 0.23))
        c = compare(b.ratio("clicks", "impressions"), a.ratio("clicks", "impressions"))
        covered += c["ci_low"] <= 0.03 <= c["ci_high"]
    assert 0.88 <= covered / runs <= 0.995, covered / runs


def test_report_names_the_test_and_compares_each_variant_with_control():
    exp = definition().started(now=1.0)
    rng = np.random.default_rng(2)
    moments = {
        "control": moments_of(user_vectors(rng, 200, 0.1)),
        "treatment": moments_of(user_vectors(rng, 200, 0.3)),
    }
    body = report(exp, moments, {})
    assert "delta method" in body["test"]
    row = body["comparisons"]["treatment"]["click_through"]
    assert row["ci_low"] > 0 and row["p_value"] < 1e-6
    assert body["variants"]["control"]["users"] == 200
    assert body["variants"]["treatment"]["metrics"]["click_through"]["ci_low"] > 0.2


def test_comparisons_are_in_the_units_of_the_rows():
    exp = definition().started(now=1.0)
    rng = np.random.default_rng(3)
    moments = {}
    for name, seconds in (("control", 0.01), ("treatment", 0.05)):
        vectors = user_vectors(rng, 100, 0.2)
        vectors[:, QUANTITIES.index("latency_seconds")] = seconds * (1 + rng.random(100))
        moments[name] = moments_of(vectors)
    body = report(exp, moments, {})
    rows = {v: body["variants"][v]["metrics"]["latency_ms"]["value"] for v in moments}
    diff = body["comparisons"]["treatment"]["latency_ms"]["difference"]
    assert diff == pytest.approx(rows["treatment"] - rows["control"])
    assert 30 < diff < 80  # milliseconds
