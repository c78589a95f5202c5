"""A/B experiments on a real worker: labelled lists on every channel, exposure and metric counts
exact on a scripted stream, the guard on an injected latency fault, and the CLI's errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter

import msgpack
import pytest
import redis

from agents.provision import ensure_topics
from tests.support import (
    REPO,
    WorkerProcess,
    consume_all,
    http,
    make_settings,
    send_events,
    settings_env,
    wait_until,
)

WINDOW = 3.0
EXPERIMENTS = {
    "ab": {
        "surfaces": ["home"],
        "control": "popularity",
        "variants": {
            "popularity": {"share": 0.5, "personalised": False},
            "personalised": {"share": 0.5},
        },
    },
    "slow-cart": {
        "surfaces": ["cart"],
        "variants": {"control": {"share": 0.5}, "slow": {"share": 0.5, "delay_ms": 300}},
        "guard": {"max_p95_ms": 150, "min_requests": 5, "window": 20},
    },
}


@pytest.fixture(scope="module")
def worker(stack, tmp_path_factory):
    base = tmp_path_factory.mktemp("experiments")
    settings = make_settings(
        stack,
        base / "data",
        experiments=EXPERIMENTS,
        outcome_window_seconds=WINDOW,
        outcome_tick_seconds=0.3,
        experiment_metrics_seconds=0.5,
    )
    ensure_topics(settings)
    started = WorkerProcess(settings, base / "worker.log").start()
    # a catalogue and some popularity for the lists to come from
    ts = time.time() - 100
    send_events(
        settings,
        [
            {
                "user_id": f"seed-{u}",
                "item_id": f"item-{(u * 7 + k) % 12}",
                "type": "click",
                "ts": ts + k,
                "item": {"category": f"c{k % 2}", "seller": "s"},
            }
            for u in range(10)
            for k in range(6)
        ],
    )
    wait_until(lambda: started.history("seed-9"), what="the seed events")
    yield started
    started.stop()


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", "experiment", *args],
        env=settings_env(settings),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )


def started(worker, name: str, *extra: str) -> dict:
    done = cli(worker.settings, "start", name, *extra)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    wait_until(
        lambda: http("GET", f"{worker.url}/experiments/{name}")[1].get("run") == record["run"],
        what=f"the workers to run {name}",
    )
    return record


def outcomes(settings, expect: int) -> dict[str, dict]:
    """The outcomes on the topic, by id (a repeat must be identical)."""
    found: dict[str, dict] = {}
    for msg in consume_all(settings.kafka_bootstrap, settings.topics.outcomes.name, expect):
        for outcome in msgpack.unpackb(msg.value(), raw=False):
            assert found.setdefault(outcome["event_id"], outcome) == outcome
    return found


def test_scripted_stream_gives_exact_exposure_outcome_and_metric_counts(worker):
    settings = worker.settings
    record = started(worker, "ab")
    tag = uuid.uuid4().hex[:6]
    users = [f"ab-{tag}-{i}" for i in range(24)]
    served: dict[str, dict] = {}
    for user in users:
        status, body = http("GET", f"{worker.url}/users/{user}/recommendations?surface=home&k=4")
        assert status == 200, body
        assert body["experiment"] == "ab" and body["request_id"] and body["items"]
        served[user] = body
    by_variant = Counter(body["variant"] for body in served.values())
    assert set(by_variant) <= {"popularity", "personalised", None}
    assert by_variant["popularity"] and by_variant["personalised"]
    # every user's variant is the one bucketing gives, and the control is popularity
    from models.experiments import Experiment

    experiment = Experiment.from_definition("ab", record)
    assert all(experiment.variant_of(u) == b["variant"] for u, b in served.items())

    # the script: per user a click on position 0 (with the request id, sent twice), and for
    # every other user a cart and a purchase (value 10) of position 1 without a request id;
    # plus a click naming a request id that never existed
    events, want = [], Counter()
    now = time.time()
    for i, (user, body) in enumerate(served.items()):
        variant = body["variant"]
        items = [it["item_id"] for it in body["items"]]
        want[(variant, "impressions")] += len(items)
        want[(variant, "requests")] += 1
        click = {
            "user_id": user,
            "item_id": items[0],
            "type": "click",
            "ts": now,
            "event_id": f"{user}-c",
            "context": {"request_id": body["request_id"]},
        }
        events += [click, click]
        want[(variant, "clicks")] += 1
        if i % 2 == 0 and len(items) > 1:
            for etype in ("cart", "purchase"):
                events.append(
                    {
                        "user_id": user,
                        "item_id": items[1],
                        "type": etype,
                        "ts": now + 1,
                        "event_id": f"{user}-{etype}",
                        "value": 10.0,
                    }
                )
            want[(variant, "carts")] += 1
            want[(variant, "purchases")] += 1
            want[(variant, "revenue")] += 10.0
    events.append(
        {
            "user_id": users[0],
            "item_id": "item-1",
            "type": "click",
            "ts": now,
            "event_id": f"{tag}-stray",
            "context": {"request_id": "never-served"},
        }
    )
    send_events(settings, events)

    def counts_match():
        body = http("GET", f"{worker.url}/experiments/ab")[1]
        got = {
            (v, q): body["variants"][v]["counts"][q]
            for v, _ in want
            for q in ("impressions", "requests", "clicks", "carts", "purchases", "revenue")
        }
        expected = {key: want.get(key, 0) for key in got}
        return body if got == expected else None

    body = wait_until(counts_match, timeout=30, what="the per-variant counts")
    for variant in ("popularity", "personalised"):
        row = body["variants"][variant]
        assert row["users"] == by_variant[variant]
        ctr = row["metrics"]["click_through"]
        assert ctr["value"] == pytest.approx(
            want[(variant, "clicks")] / want[(variant, "impressions")]
        )
        assert ctr["ci_low"] <= ctr["value"] <= ctr["ci_high"]
    comparison = body["comparisons"]["personalised"]["click_through"]
    assert comparison["ci_low"] <= comparison["difference"] <= comparison["ci_high"]
    assert "delta method" in body["test"]

    # one outcome per impression, with the labels the script set
    total = sum(len(b["items"]) for b in served.values())
    ours = wait_until(
        lambda: (lambda found: found if len(found) >= total else None)(
            {
                k: o
                for k, o in outcomes(settings, total).items()
                if o["user_id"] in served and o["channel"] == "http"
            }
        ),
        timeout=30,
        what="the outcomes",
    )
    assert len(ours) == total
    for o in ours.values():
        body = served[o["user_id"]]
        assert o["request_id"] == body["request_id"] and o["variant"] == body["variant"]
        assert o["y_click"] == int(o["position"] == 0)
        i = list(served).index(o["user_id"])
        bought = int(o["position"] == 1 and i % 2 == 0)
        assert (o["y_cart"], o["y_purchase"], o["value"]) == (
            bought,
            bought,
            10.0 if bought else None,
        )
    # the durable outcome log holds them too
    from streams.eventlog import read_logs

    logged = {o["event_id"] for o in read_logs(settings.data_path / "outcomes")}
    assert set(ours) <= logged


def test_lists_on_every_channel_carry_their_experiment_and_variant(worker):
    settings = worker.settings
    if http("GET", f"{worker.url}/experiments/ab")[1].get("status") != "running":
        started(worker, "ab")
    user = f"channels-{uuid.uuid4().hex[:6]}"
    send_events(
        settings, [{"user_id": user, "item_id": "item-3", "type": "click", "ts": time.time()}]
    )
    # Redis: the refreshed copy
    client = redis.Redis.from_url(settings.redis_url)
    key = f"{settings.topic_prefix}:recs:home:{user}"
    copy = json.loads(wait_until(lambda: client.get(key), what="the Redis copy"))
    assert copy["experiment"] == "ab" and copy["variant"] and copy["request_id"]
    # Kafka: a request on the requests topic, the answer on the recommendations topic
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random"}
    )
    producer.produce(
        settings.topics.recommendation_requests.name,
        key=user.encode(),
        value=json.dumps({"request_id": "rq-1", "user_id": user, "surface": "home", "k": 3}),
    )
    producer.flush(10)
    answers = consume_all(settings.kafka_bootstrap, settings.topics.recommendations.name, 1)
    answer = json.loads(answers[0].value())
    assert answer["request_id"] == "rq-1" and answer["experiment"] == "ab"
    assert answer["variant"] == copy["variant"]  # a user's bucket is the same everywhere
    # the request log: one JSON line, a hash instead of the user id
    line = wait_until(
        lambda: next(
            (ln for ln in worker.log_tail(200_000).splitlines() if '"request_id": "rq-1"' in ln),
            None,
        ),
        what="the request log line",
    )
    logged = json.loads(line)
    assert logged["channel"] == "topic" and logged["variant"] == answer["variant"]
    assert user not in line


def test_the_guard_stops_a_variant_with_injected_latency(worker):
    started(worker, "slow-cart")
    tag = uuid.uuid4().hex[:6]
    slow_users = []
    for i in range(80):
        user = f"cart-{tag}-{i}"
        status, body = http("GET", f"{worker.url}/users/{user}/recommendations?surface=cart&k=3")
        assert status == 200, body
        if body["variant"] == "slow" and "served_as" not in body:
            slow_users.append(user)
        report = http("GET", f"{worker.url}/experiments/slow-cart")[1]
        if report["stopped_variants"]:
            break
    stops = report["stopped_variants"]
    assert set(stops) == {"slow"}, report
    assert "p95 latency" in stops["slow"]["reason"]
    assert 5 <= len(slow_users) <= 6  # it fired as soon as it had its minimum of requests
    assert worker.metric("tastestream_experiment_guard_stops_total") == 1
    # the slow variant's users now get the control, fast, and the list says so
    started_at = time.monotonic()
    status, body = http("GET", f"{worker.url}/users/{slow_users[0]}/recommendations?surface=cart")
    assert time.monotonic() - started_at < 0.3
    assert body["variant"] == "slow" and body["served_as"] == "control"
    assert "experiment_guard_stop" in worker.log_tail(200_000)
    # every worker learns it from the control topic: the CLI reads the same record
    listed = json.loads(cli(worker.settings, "list").stdout)["experiments"]
    assert "slow" in next(e for e in listed if e["name"] == "slow-cart")["stopped_variants"]


def test_cli_errors_are_one_line(worker):
    started(worker, "ab", "--shares", "0.2")
    lower = cli(worker.settings, "ramp", "ab", "--shares", "0.1")
    assert lower.returncode == 2 and "only raises shares" in lower.stderr
    assert len(lower.stderr.strip().splitlines()) == 1
    unknown = cli(worker.settings, "start", "nope")
    assert unknown.returncode == 2 and "no experiment 'nope' in the config" in unknown.stderr
    ramped = cli(worker.settings, "ramp", "ab", "--shares", "popularity=0.4,personalised=0.3")
    assert ramped.returncode == 0, ramped.stderr
    shares = {v["name"]: v["share"] for v in json.loads(ramped.stdout)["variants"]}
    assert shares == {"popularity": 0.4, "personalised": 0.3}
