"""A/B experiments on a real worker: labelled lists on every channel, exposure and metric counts
exact on a scripted stream, the guard on an injected latency fault, the CLI's errors, and the
operator's page in headless chromium (experiments with intervals, rollback behind the token,
dead letters)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from collections import Counter

import msgpack
import pytest
import redis
from support import (
    REPO,
    WorkerProcess,
    consume_all,
    http,
    make_settings,
    send_events,
    settings_env,
    wait_until,
)

from agents.provision import ensure_topics

WINDOW = 3.0
TOKEN = "operator-secret"
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
        model_poll_seconds=1.0,
        api_token=TOKEN,
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


def outcomes(settings, wanted, expect: int, timeout: float = 30.0) -> dict[str, dict]:
    """The ``wanted`` outcomes on the topic, by id, once ``expect`` of them arrived.

    A repeat (after a crash) must be identical to the first copy.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    topic = settings.topics.outcomes.name
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "log_level": 3,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    found: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expect and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            for outcome in msgpack.unpackb(msg.value(), raw=False):
                if wanted(outcome):
                    assert found.setdefault(outcome["event_id"], outcome) == outcome
    finally:
        consumer.close()
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
    ours = outcomes(settings, lambda o: o["user_id"] in served and o["channel"] == "http", total)
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


def test_outcomes_and_counts_stay_exact_across_kill_9(worker):
    """Lists served, engagements in flight, the worker killed: after its restart every logged
    impression has exactly one outcome (repeats on the topic are identical) and the counts
    moved by exactly what was sent."""
    settings = worker.settings
    before = http("GET", f"{worker.url}/experiments/ab")[1]
    tag = uuid.uuid4().hex[:6]
    served = {}
    for i in range(12):
        user = f"kill-{tag}-{i}"
        status, body = http("GET", f"{worker.url}/users/{user}/recommendations?surface=home&k=3")
        assert status == 200
        served[user] = body
    clicks = [
        {
            "user_id": u,
            "item_id": b["items"][0]["item_id"],
            "type": "click",
            "ts": time.time(),
            "event_id": f"{u}-k",
            "context": {"request_id": b["request_id"]},
        }
        for u, b in served.items()
    ]
    send_events(settings, clicks)
    time.sleep(0.3)  # some folded and checkpointed, some not
    worker.kill()
    worker.start()
    total = sum(len(b["items"]) for b in served.values())
    ours = outcomes(settings, lambda o: o["user_id"] in served and o["channel"] == "http", total)
    assert len(ours) == total
    assert all(o["y_click"] == int(o["position"] == 0) for o in ours.values())

    def moved():
        body = http("GET", f"{worker.url}/experiments/ab")[1]
        deltas = {}
        for v, row in body["variants"].items():
            for q in ("requests", "impressions", "clicks"):
                deltas[(v, q)] = row["counts"][q] - before["variants"][v]["counts"][q]
        return deltas

    want = Counter()
    for b in served.values():
        if b["variant"] is not None:
            want[(b["variant"], "requests")] += 1
            want[(b["variant"], "impressions")] += len(b["items"])
            want[(b["variant"], "clicks")] += 1
    wait_until(lambda: moved() == {k: want.get(k, 0) for k in moved()}, what="exact counts")


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


def test_operator_page_shows_experiments_models_and_dead_letters(worker, tmp_path):
    import asyncio

    from browser import keep, start_chromium
    from confluent_kafka import Producer

    from models.factorization import FactorizationParams
    from models.model_version import set_current, write_version
    from models.simulator import ClickstreamSimulator, SimulatorConfig
    from models.token_embedding import EmbeddingParams
    from models.training import TrainingParams, train_version

    settings = worker.settings
    # two model versions, the newer one CURRENT, an evaluation report beside the older
    sim = ClickstreamSimulator(SimulatorConfig(users=40, items=80, categories=4, sellers=6))
    events = list(sim.events(3000))
    root = settings.data_path / "models"
    versions = []
    for seed in (1, 2):
        params = TrainingParams(
            seed=seed,
            embedding=EmbeddingParams(dim=8, epochs=1),
            factorization=FactorizationParams(factors=4, epochs=1),
        )
        versions.append(write_version(root, train_version(events, params)))
    (versions[0].path / "evaluation.json").write_text(json.dumps({"hit_rate": 0.123}))
    set_current(root, versions[1].version)
    wait_until(lambda: http("GET", f"{worker.url}/models")[1]["live"], what="a live model")
    # a message the contract rejects, straight onto the events topic
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    bad = {"user_id": "op-u", "item_id": "op-i", "type": "like", "ts": time.time()}
    producer.produce(settings.topics.events.name, key=b"op-u", value=json.dumps(bad).encode())
    producer.flush(10)

    browser, ws_url = start_chromium(
        f"{worker.url}/ui/operator", tmp_path / "profile", "/ui/operator"
    )
    try:
        path = asyncio.run(drive_operator_page(worker, ws_url, versions, tmp_path))
    finally:
        browser.terminate()
        browser.wait(10)
    keep(path, "ui-operator.png")


async def drive_operator_page(worker, ws_url, versions, tmp_path):
    from browser import open_page

    async with open_page(ws_url, height=1300) as page:
        # experiments: per-variant rows with click-through and its interval, against control
        ctr = await page.wait_for(
            '(() => { const c = document.querySelector(\'[data-experiment="ab"] '
            'tr[data-variant="personalised"] td.click_through\'); return c && c.innerText })()',
            "the ab experiment's click-through",
        )
        assert "%" in ctr and "[" in ctr  # a value and its 95% interval
        report = http("GET", f"{worker.url}/experiments/ab")[1]
        shown_users = await page.eval(
            'document.querySelector(\'[data-experiment="ab"] tr[data-variant="personalised"]'
            " td.users').innerText"
        )
        assert int(shown_users) == report["variants"]["personalised"]["users"]
        assert await page.eval("!!document.querySelector('[data-comparison=\"personalised\"]')")
        stop = await page.wait_for(
            '(() => { const s = document.querySelector(\'[data-experiment="slow-cart"] '
            ".stop-reason'); return s && s.innerText })()",
            "the guard's stop",
        )
        assert "p95 latency" in stop and "control" in stop
        assert "delta method" in await page.eval("document.querySelector('#test-used').innerText")
        # models: both versions, the report, the live one marked; a rollback needs the token
        older, newer = versions[0].version, versions[1].version
        await page.wait_for(
            f"!!document.querySelector('tr[data-version=\"{newer}\"] .badge.live')",
            "the live version marked",
        )
        assert "evaluation.json" in await page.eval(
            f"document.querySelector('tr[data-version=\"{older}\"]').innerText"
        )
        button = f"document.querySelector('tr[data-version=\"{older}\"] button.rollback')"
        await page.eval(f"{button}.click()")
        message = await page.wait_for(
            "document.querySelector('#rollback-message').innerText", "the refusal"
        )
        assert "needs the API token" in message
        assert http("GET", f"{worker.url}/operator/models")[1]["current"] == newer
        await page.eval(f"document.querySelector('#token').value = {json.dumps(TOKEN)}")
        await page.eval("document.querySelector('#save-token').click()")
        await page.eval(f"{button}.click()")
        message = await page.wait_for(
            "(() => { const m = document.querySelector('#rollback-message').innerText;"
            " return m.includes('CURRENT') && m })()",
            "the rollback",
        )
        assert older in message
        wait_until(
            lambda: http("GET", f"{worker.url}/models")[1]["live"]["version"] == older,
            what="the worker to serve the older version",
        )
        # dead letters, with their reasons; the original's first bytes for the token's holder
        row = await page.wait_for(
            "(() => { const r = [...document.querySelectorAll('#dead-letters tr')]"
            ".find(tr => tr.innerText.includes('like') && tr.querySelector('.preview'));"
            " return r && r.innerText })()",
            "the dead letter with its original's first bytes",
        )
        assert "unknown event type" in row and "type" in row and "op-u" in row
        path = tmp_path / "operator.png"
        await page.screenshot(path)
        return path


def test_metrics_has_every_series_the_grafana_dashboard_reads(worker):
    import re

    dashboard = json.loads((REPO / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    read = {
        re.sub(r"_bucket$", "", name) for e in exprs for name in re.findall(r"tastestream_\w+", e)
    }
    # only once the thing happened (a replay folded, an error seen)
    later = {
        "tastestream_replay_events_total",
        "tastestream_redis_errors_total",
        "tastestream_broker_errors_total",
    }
    _, text = http("GET", worker.url + "/metrics")
    exposed = {
        re.sub(r"_(bucket|count|sum)$", "", line.split("{")[0].split(" ")[0])
        for line in text.splitlines()
        if line.startswith("tastestream_")
    }
    assert read - later <= exposed, sorted(read - later - exposed)
    assert 'tastestream_serving_seconds_bucket{channel="http"' in text
    assert 'tastestream_experiment_outcomes_total{experiment="ab"' in text


def test_cli_errors_are_one_line(worker):
    started(worker, "ab", "--shares", "0.2")
    lower = cli(worker.settings, "ramp", "ab", "--shares", "0.1")
    assert lower.returncode == 2 and "only raises shares" in lower.stderr
    assert len(lower.stderr.strip().splitlines()) == 1
    from agents.cli_io import CliError
    from agents.experiment_command import run_command

    with pytest.raises(CliError, match="no experiment 'nope' in the config"):
        run_command(worker.settings, argparse.Namespace(experiment_command="start", name="nope"))
    ramped = cli(worker.settings, "ramp", "ab", "--shares", "popularity=0.4,personalised=0.3")
    assert ramped.returncode == 0, ramped.stderr
    shares = {v["name"]: v["share"] for v in json.loads(ramped.stdout)["variants"]}
    assert shares == {"popularity": 0.4, "personalised": 0.3}
