"""Hostile input over the topic: each bad message or event costs itself and nothing else."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import msgpack
from support import WorkerProcess, consume_all, http, wait_until

from agents.producer import kafka_producer
from streams.topics import partition_for

BASE_TS = 1_767_225_600.0


def valid(user: str, k: int) -> dict:
    return {
        "user_id": user,
        "item_id": f"i{k % 17}",
        "type": ("view", "click", "cart")[k % 3],
        "ts": BASE_TS + k,
        "event_id": f"{user}-e{k}",
    }


#: Messages that broke the worker or took their batch with them (issue 9, item 2).
HOSTILE: list[tuple[str, bytes]] = [
    ("msgpack map keyed by an array", b"\x81\x91\x01\x01"),
    ("JSON nested 10,000 deep", b"[" * 10_000 + b"]" * 10_000),
    (
        "400-digit integer ts",
        b'{"user_id":"h","item_id":"i","type":"view","ts":' + b"9" * 400 + b"}",
    ),
    (
        "position 2**64",
        json.dumps({**valid("h", 0), "context": {"position": 2**64}}).encode(),
    ),
    ("lone surrogate", b'{"user_id":"\\ud800","item_id":"i","type":"view","ts":1}'),
    ("type as a list", json.dumps({**valid("h", 1), "type": ["view"]}).encode()),
    ("undecodable bytes", b"\xc1\xc1\xc1"),
]


def test_hostile_messages_cost_only_themselves(settings, worker_factory):
    worker: WorkerProcess = worker_factory(settings)
    producer = kafka_producer(settings)
    topic = settings.topics.events.name
    users = [f"px-u{u}" for u in range(50)]
    sent: dict[str, int] = dict.fromkeys(users, 0)
    hostile_at = {i * 150 + 7: payload for i, (_, payload) in enumerate(HOSTILE)}
    for m in range(1200):
        if m in hostile_at:
            producer.produce(topic, hostile_at[m], key=b"h", partition=m % settings.partitions)
        user = users[m % len(users)]
        batch = [valid(user, sent[user] + j) for j in range(5)]
        if m == 600:  # one bad event inside a batch: only it is rejected
            batch[2] = {**batch[2], "type": "like"}
            rejected_user = user
        sent[user] += 5
        partition = partition_for(user, settings.partitions)
        producer.produce(topic, msgpack.packb(batch), key=user.encode(), partition=partition)
    producer.flush(30)
    sent[rejected_user] -= 1
    wait_until(
        lambda: all(len(worker.history(u)) == min(sent[u], 200) for u in users),
        timeout=60,
        what="every valid event applied",
    )
    records = consume_all(
        settings.kafka_bootstrap, settings.topics.dead_letter.name, len(HOSTILE) + 1
    )
    dead = [json.loads(m.value()) for m in records]
    assert len(dead) == len(HOSTILE) + 1
    assert all(d["reason"] for d in dead)
    in_batch = [d for d in dead if d["index"] is not None]
    assert [d["index"] for d in in_batch] == [2] and in_batch[0]["field"] == "type"
    assert worker.metric("tastestream_events_accepted_total") == sum(sent.values())
    assert worker.proc.poll() is None


def test_long_emoji_ids_keep_the_worker_and_its_restarts_alive(settings, worker_factory):
    worker = worker_factory(settings)
    producer = kafka_producer(settings)
    user = "😀" * 100
    events = [
        {
            "user_id": user,
            "item_id": "💥" * 120 + str(k),
            "type": ("view", "purchase", "impression", "cart")[k % 4],
            "ts": BASE_TS + k,
            "event_id": f"emoji-{k}",
            "item": {"seller": "🛒" * 120 + str(k), "category": "c"},
        }
        for k in range(300)
    ]
    partition = partition_for(user, settings.partitions)
    for start in range(0, 300, 20):
        producer.produce(
            settings.topics.events.name,
            msgpack.packb(events[start : start + 20]),
            key=user.encode(),
            partition=partition,
        )
    producer.flush(30)
    wait_until(
        lambda: worker.metric("tastestream_events_accepted_total") >= 300, what="all applied"
    )
    time.sleep(1.5)  # written behind to the changelog
    worker.kill()
    restarted = worker_factory(settings)
    status, body = http("GET", f"{restarted.url}/users/{quote(user)}/history?limit=1")
    assert status == 200 and body["events"][0]["event_id"] == "emoji-299"
    assert restarted.proc.poll() is None


def test_a_message_over_the_limit_is_dead_lettered_with_its_digest_and_the_stream_goes_on(
    settings, worker_factory
):
    """Issue 9: a valid 4.3 MB batch of 10,000 events used to vanish without a trace."""
    import hashlib

    from streams.limits import MAX_MESSAGE_BYTES

    worker = worker_factory(settings)
    users = [f"big-u{u}" for u in range(1000)]
    big = msgpack.packb(
        [
            {**valid(users[k % 1000], k), "item": {"category": "c" * 200, "seller": "s" * 150}}
            for k in range(10_000)
        ]
    )
    assert len(big) > 4 * MAX_MESSAGE_BYTES
    producer = kafka_producer(settings, **{"message.max.bytes": 10_000_000})
    topic = settings.topics.events.name
    producer.produce(topic, big, key=b"big-u0", partition=partition_for("big-u0", 4))
    after = valid("big-after", 0)
    producer.produce(
        topic, msgpack.packb(after), key=b"big-after", partition=partition_for("big-after", 4)
    )
    producer.flush(30)
    wait_until(lambda: worker.history("big-after"), what="the next message applied")
    records = consume_all(settings.kafka_bootstrap, settings.topics.dead_letter.name, 1)
    dead = json.loads(records[0].value())
    assert str(MAX_MESSAGE_BYTES) in dead["reason"] or "limit" in dead["reason"]
    assert dead["original_size"] == len(big) and dead["original_truncated"]
    assert dead["original_sha256"] == hashlib.sha256(big).hexdigest()
    assert len(records[0].value()) < MAX_MESSAGE_BYTES
    # Over HTTP the same limit is a clear 413 naming it.
    status, body = http("POST", worker.url + "/events", b"[" + b" " * MAX_MESSAGE_BYTES + b"]")
    assert status == 413, body
    assert worker.proc.poll() is None
