"""Ingest over the real broker: a real worker process, real producers, real Redis."""

from __future__ import annotations

import json
import subprocess
import uuid

import msgpack
import pytest
from confluent_kafka import Producer
from support import WorkerProcess, consume_all, http, wait_until

from streams.deadletter import original_bytes
from streams.topics import partition_for


@pytest.fixture(scope="module")
def shared(module_worker):
    return module_worker


def users(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"u-{tag}-{i}" for i in range(n)]


def event(user: str, i: int, etype: str = "click", **extra) -> dict:
    return {"user_id": user, "item_id": f"i{i}", "type": etype, "ts": 1767225600 + i, **extra}


def producer(settings) -> Producer:
    return Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "log_level": 3,
        }
    )


def wait_history(worker: WorkerProcess, user: str, n: int, timeout: float = 30.0) -> list[dict]:
    return wait_until(
        lambda: (lambda h: h if len(h) >= n else None)(worker.history(user)),
        timeout=timeout,
        what=f"{n} events in {user}'s history",
    )


def test_single_events_from_confluent_kafka_arrive_newest_first(shared):
    (user,) = users(1)
    p = producer(shared.settings)
    for i in range(5):
        p.produce(shared.settings.topics.events.name, json.dumps(event(user, i)).encode(), user)
    p.flush(10)
    history = wait_history(shared, user, 5)
    assert [e["item_id"] for e in history] == ["i4", "i3", "i2", "i1", "i0"]
    assert all(e["user_id"] == user and e["event_id"] for e in history)


def test_batch_of_many_users_under_one_key_reaches_every_owner(shared):
    names = users(12)
    owners = {partition_for(u, shared.settings.partitions) for u in names}
    assert len(owners) > 1  # the batch really spans partitions
    batch = [event(u, j) for j, u in enumerate(names)] * 1  # one event per user
    p = producer(shared.settings)
    # Everything lands on partition 0: events of users owned elsewhere are forwarded.
    p.produce(shared.settings.topics.events.name, msgpack.packb(batch), b"whatever", partition=0)
    p.flush(10)
    for j, u in enumerate(names):
        assert [e["item_id"] for e in wait_history(shared, u, 1)] == [f"i{j}"]


def test_redelivered_events_are_counted_once(shared):
    (user,) = users(1)
    events = [event(user, i, event_id=f"{user}-e{i}") for i in range(4)]
    p = producer(shared.settings)
    before = shared.metric("tastestream_events_duplicate_total")
    for _ in range(3):  # three deliveries of the same four events
        p.produce(shared.settings.topics.events.name, msgpack.packb(events), user)
        p.flush(10)
    wait_history(shared, user, 4)
    wait_until(
        lambda: shared.metric("tastestream_events_duplicate_total") - before >= 8,
        what="duplicates to be counted",
    )
    history = shared.history(user)
    assert sorted(e["event_id"] for e in history) == sorted(e["event_id"] for e in events)
    assert shared.metric("tastestream_events_duplicate_total") - before == 8


def test_bad_input_goes_to_dead_letter_and_the_stream_goes_on(shared):
    settings = shared.settings
    (user,) = users(1)
    topic = settings.topics.events.name
    poison = [
        (b"\xc1\xc1 not msgpack", "undecodable"),
        (json.dumps(event(user, 1, etype="like")).encode(), "unknown event type"),
        (json.dumps({"user_id": user, "type": "view", "ts": 1}).encode(), "item_id: missing"),
        (json.dumps(event(user, 2, value="12")).encode(), "value: must be a number"),
        (json.dumps(event(user, 3, item_id="x" * 70_000)).encode(), "limit is 65536"),
    ]
    p = producer(settings)
    for value, _ in poison:
        p.produce(topic, value, user)
    # A batch mixing good and bad events: the good ones are accepted.
    mixed = [event(user, 10), {"user_id": user, "item_id": "i11", "type": "view"}, event(user, 12)]
    p.produce(topic, msgpack.packb(mixed), user)
    p.produce(topic, json.dumps(event(user, 13)).encode(), user)  # after the poison
    p.flush(10)
    history = wait_history(shared, user, 3)
    assert [e["item_id"] for e in history] == ["i13", "i12", "i10"]

    records = [
        json.loads(m.value())
        for m in consume_all(settings.kafka_bootstrap, settings.topics.dead_letter.name, 6, 20)
    ]
    assert len(records) == 6
    by_offset = sorted(records, key=lambda r: (r["source"]["offset"], r["index"] or 0))
    for (value, words), record in zip(poison, by_offset[:5], strict=True):
        assert words in record["reason"]
        assert original_bytes(record) == value
        assert record["source"]["topic"] == topic
    batch_record = by_offset[5]
    assert batch_record["index"] == 1 and batch_record["field"] == "ts"
    assert msgpack.unpackb(original_bytes(batch_record)) == mixed[1]


def test_events_from_kcat_arrive(shared, kcat):
    binary, env = kcat
    (user,) = users(1)
    lines = "".join(f"{user}\t{json.dumps(event(user, i, etype='cart'))}\n" for i in range(3))
    subprocess.run(
        [
            binary,
            "-P",
            "-b",
            shared.settings.kafka_bootstrap,
            "-t",
            shared.settings.topics.events.name,
            "-K",
            "\t",
            "-X",
            "topic.partitioner=murmur2_random",
        ],
        input=lines.encode(),
        env=env,
        check=True,
        timeout=30,
    )
    history = wait_history(shared, user, 3)
    assert [e["item_id"] for e in history] == ["i2", "i1", "i0"]
    assert {e["type"] for e in history} == {"cart"}


def test_http_api(shared):
    url = shared.url
    a, b = users(2)
    status, body = http(
        "POST", url + "/events", [event(a, 1), event(b, 2, etype="nope"), event(a, 3)]
    )
    assert status == 202
    assert body["accepted"] == 2
    assert body["rejected"][0]["index"] == 1 and "nope" in body["rejected"][0]["reason"]
    status, body = http("POST", url + "/events", event(b, 4, etype="purchase"))
    assert (status, body["accepted"]) == (202, 1)
    assert [e["item_id"] for e in wait_history(shared, a, 2)] == ["i3", "i1"]
    assert [e["type"] for e in wait_history(shared, b, 1)] == ["purchase"]

    status, body = http("POST", url + "/events", b"{not json")
    assert status == 400 and body["field"] == "body" and "not valid JSON" in body["error"]
    status, body = http("GET", url + "/users/nobody-" + a + "/history")
    assert status == 404 and "no events" in body["error"]
    status, body = http("GET", url + f"/users/{a}/history?limit=1")
    assert status == 200 and len(body["events"]) == 1

    status, body = http("GET", url + "/health")
    assert status == 200 and body["broker"]["ok"] and body["redis"]["ok"] and body["ready"]
    status, text = http("GET", url + "/metrics")
    assert status == 200
    assert "# TYPE tastestream_events_accepted_total counter" in text
    assert shared.metric("tastestream_events_accepted_total") >= 3
    assert "tastestream_consumer_lag{partition=" in text
    assert "tastestream_ingest_latency_seconds_count" in text


def test_decode_keeps_good_events_of_a_batch_with_bad_ones():
    """Pure: rejects in a batch keep their index; good events around them are kept."""
    from streams.codecs import decode_message

    user = "u-decode"
    batch = [{"user_id": user, "type": "view"}] * 3 + [event(user, 1)]
    decoded = decode_message(msgpack.packb(batch))
    assert [r.index for r in decoded.rejections] == [0, 1, 2]
    assert [e["user_id"] for e in decoded.events] == [user]
    decoded = decode_message(b"\xc1")
    assert decoded.events == [] and [r.index for r in decoded.rejections] == [None]
