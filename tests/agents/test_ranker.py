"""The learned ranker in a real worker: weights per request, cold fallback, refusal, round trip."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from support import WorkerProcess, ensure_topics, http, make_settings, send_events, wait_until

from models.ranking.ranker import LearnedRanker

MIN_EXAMPLES = 30


@pytest.fixture(scope="module")
def worker(stack, tmp_path_factory):
    base = tmp_path_factory.mktemp("ranker")
    settings = make_settings(
        stack,
        base / "data",
        outcome_window_seconds=2.0,
        outcome_tick_seconds=0.3,
        ranker_min_examples=MIN_EXAMPLES,
    )
    ensure_topics(settings)
    started = WorkerProcess(settings, base / "worker.log").start()
    yield started
    started.stop()


def recs(worker, user, query=""):
    return http("GET", f"{worker.url}/users/{user}/recommendations?{query}")


def test_weights_per_request_are_validated_and_reported(worker):
    user = f"w-{uuid.uuid4().hex[:6]}"
    status, body = recs(worker, user, "k=5&weights=save:1")
    assert status == 400 and body["field"] == "weights.save", body
    status, body = recs(worker, user, "k=5&weights=click:-1")
    assert status == 400 and body["field"] == "weights.click" and "-1" in body["error"]
    status, body = recs(worker, user, "k=5&weights=cart")
    assert status == 400 and "type:weight" in body["error"]
    status, body = recs(worker, user, "k=5&weights=cart:2,purchase:7")
    assert status == 200, body
    ranker = body["ranker"]
    assert ranker["weights_from"] == "request"
    assert ranker["weights"]["cart"] == 2.0 and ranker["weights"]["purchase"] == 7.0
    assert ranker["weights"]["click"] == 1.0  # the surface's, not overridden
    assert all("features" not in item for item in body["items"])  # logged, not shown
    status, body = recs(worker, user, "k=5&surface=cart")
    assert status == 200 and "ranker" not in body  # only configured surfaces are ranked


def test_a_broken_ranker_file_is_refused_and_the_old_one_kept(worker, tmp_path):
    before = http("GET", f"{worker.url}/ranker")[1]
    good = LearnedRanker()
    broken = good.save(tmp_path / "broken.npz")
    with np.load(broken) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["intercept"] = np.array([np.nan, 0.0, 0.0, 0.0])
    np.savez(broken, **arrays)
    status, body = http("POST", f"{worker.url}/ranker", {"path": str(broken)})
    assert status == 409 and "intercept" in body["error"], body
    status, body = http("POST", f"{worker.url}/ranker", {"path": str(tmp_path / "none.npz")})
    assert status == 409, body
    after = http("GET", f"{worker.url}/ranker")[1]
    assert after["source"] == before["source"] and "intercept" not in after["refused"]["reason"]
    assert after["refused"]["path"].endswith("none.npz")


def test_round_trip_served_lists_to_an_update_that_changes_the_next_list(worker):
    """served list -> impressions -> engagements -> outcomes -> learned -> a reordered list."""
    tag = uuid.uuid4().hex[:6]
    user = f"rt-{tag}"
    now = time.time()
    items = [f"{tag}-i{i}" for i in range(12)]
    events = [
        {"user_id": user, "item_id": item, "type": "view", "ts": now - 100 + i}
        for i, item in enumerate(items)
    ]
    send_events(worker.settings, events)
    status, cold = wait_until(
        lambda: (lambda r: r if r[0] == 200 and len(r[1]["items"]) >= 10 else None)(
            recs(worker, user, "k=10&seed=1")
        ),
        what="a list of the user's items",
    )
    assert cold["ranker"]["status"] == "cold" and "first-pass order" in cold["ranker"]["reason"]
    assert all("p" not in item for item in cold["items"])
    cold_order = [i["item_id"] for i in cold["items"]]
    # Four lists asked for; the user engages with the two last items of each.
    engagements = []
    for n in range(4):
        status, body = recs(worker, user, "k=10&seed=1")
        assert status == 200
        for position, item in list(enumerate(body["items"]))[-2:]:
            for etype in ("click", "cart"):
                engagements.append(
                    {
                        "event_id": f"{tag}-{n}-{position}-{etype}",
                        "user_id": user,
                        "item_id": item["item_id"],
                        "type": etype,
                        "ts": time.time(),
                        "context": {"request_id": body["request_id"], "position": position},
                    }
                )
    send_events(worker.settings, engagements)
    state = wait_until(
        lambda: (lambda r: r[1] if r[1]["examples"] >= MIN_EXAMPLES else None)(
            http("GET", f"{worker.url}/ranker")
        ),
        timeout=30,
        what="the ranker to learn from the joined outcomes",
    )
    assert state["status"] == "ready"
    # Progressive validation scores each batch before learning it, so a first batch is
    # learned unscored; a list served now closes in a later batch, scored by what was learned.
    assert recs(worker, user, "k=10&seed=2")[0] == 200
    state = wait_until(
        lambda: (lambda r: r[1] if r[1]["heads"]["click"]["examples"] > 0 else None)(
            http("GET", f"{worker.url}/ranker")
        ),
        timeout=30,
        what="a batch scored by the learned heads",
    )
    assert state["learned_per_head"]["cart"] >= 8  # every positive is learned
    status, ranked = recs(worker, user, "k=10&seed=1")
    assert status == 200 and ranked["ranker"]["status"] == "ranked", ranked["ranker"]
    assert all(0.0 <= item["p"]["cart"] <= 1.0 for item in ranked["items"])
    assert all(item["explanation"].startswith("p(") for item in ranked["items"])
    assert [i["item_id"] for i in ranked["items"]] != cold_order
    utilities = [item["utility"] for item in ranked["items"]]
    assert utilities == sorted(utilities, reverse=True)
    metrics = http("GET", f"{worker.url}/metrics")[1]
    assert 'tastestream_ranker_brier{head="cart"}' in metrics
