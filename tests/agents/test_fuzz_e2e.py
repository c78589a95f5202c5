"""End-to-end fuzz: generated hostile and valid input over the topic and ``POST /events``.

The same hypothesis generator as the decoder's fuzz (``tests/fuzzing.py``)
draws 10,000 messages for the topic (``TASTESTREAM_FUZZ_EXAMPLES`` for more), and a
tenth of them go to ``POST /events`` as bodies. The oracle is the contract's own
``decode_message``: the worker must apply every event it accepts (exactly
once per user and event id), dead-letter every rejection with its reason,
answer every body with the right counts, and keep going.
"""

from __future__ import annotations

import json
import random

import pytest
from fuzzing import EXAMPLES, generated_messages
from support import consume_all, http, wait_until

from agents.producer import kafka_producer
from streams.codecs import decode_message
from streams.topics import partition_for


@pytest.fixture(scope="module")
def drawn() -> list[tuple[bytes, list[bytes] | None]]:
    """The messages both tests send (drawn once: drawing 10,000 takes seconds)."""
    return generated_messages(EXAMPLES)


def expected(payloads: list[bytes]) -> tuple[set[tuple[str, str]], int, dict[str, set[str]]]:
    """(distinct (user, event id) accepted, rejections, user -> event ids), by the oracle."""
    accepted: set[tuple[str, str]] = set()
    by_user: dict[str, set[str]] = {}
    rejected = 0
    for payload in payloads:
        decoded = decode_message(payload)
        rejected += len(decoded.rejections)
        for event in decoded.events:
            accepted.add((event["user_id"], event["event_id"]))
            by_user.setdefault(event["user_id"], set()).add(event["event_id"])
    return accepted, rejected, by_user


def test_fuzzed_messages_over_the_topic_cost_only_themselves(drawn, settings, worker_factory):
    worker = worker_factory(settings.replace(snapshot_seconds=0.0))
    payloads = [payload for payload, _ in drawn]
    producer = kafka_producer(settings, **{"message.max.bytes": 2_000_000})
    topic = settings.topics.events.name
    rng = random.Random(0)
    for payload in payloads:
        decoded = decode_message(payload)
        user = decoded.events[0]["user_id"] if decoded.events else str(rng.random())
        partition = partition_for(user, settings.partitions)
        producer.produce(topic, payload, key=user.encode("utf-8", "replace"), partition=partition)
        producer.poll(0)
    producer.flush(60)
    accepted, rejected, by_user = expected(payloads)
    wait_until(
        lambda: worker.metric("tastestream_events_accepted_total") >= len(accepted),
        timeout=120,
        what=f"{len(accepted)} accepted events",
    )
    dead = consume_all(settings.kafka_bootstrap, settings.topics.dead_letter.name, rejected, 60)
    assert len(dead) == rejected
    assert all(json.loads(m.value())["reason"] for m in dead)
    assert worker.metric("tastestream_events_accepted_total") == len(accepted)
    assert worker.metric("tastestream_events_rejected_total") == rejected
    sample = rng.sample(sorted(by_user), min(25, len(by_user)))
    for user in sample:
        status, body = http("GET", f"{worker.url}/users/{_quote(user)}/history")
        assert status == 200, (user, body)
        assert {e["event_id"] for e in body["events"]} == by_user[user] or len(
            body["events"]
        ) == 200
    assert worker.proc.poll() is None
    print(f"\n{EXAMPLES} messages: {len(accepted)} events applied, {rejected} dead-lettered")


def test_fuzzed_bodies_over_http_are_answered_item_by_item(drawn, settings, worker_factory):
    worker = worker_factory(settings.replace(snapshot_seconds=0.0))
    bodies = drawn[: max(EXAMPLES // 10, 200)]
    applied: set[tuple[str, str]] = set()
    answered = {"400": 0, "202": 0}
    for payload, _ in bodies:
        decoded = decode_message(payload)
        content_type = "application/json" if payload[:1] in b"[{ \t\r\n" else "application/msgpack"
        status, body = _post(worker.url + "/events", payload, content_type)
        whole = [r for r in decoded.rejections if r.kind == "message"]
        if status == 400:
            answered["400"] += 1
            assert body["field"] == "body" and body["error"], body
            assert whole or not decoded.events, (payload[:80], body)
            continue
        answered["202"] += 1
        assert status == 202, (payload[:80], status, body)
        assert not whole
        assert len(body["rejected"]) == len(decoded.rejections)
        assert all(r["reason"] for r in body["rejected"])
        assert body["accepted"] + body["duplicates"] == len(decoded.events)
        applied |= {(e["user_id"], e["event_id"]) for e in decoded.events}
    wait_until(
        lambda: worker.metric("tastestream_events_accepted_total") >= len(applied),
        timeout=120,
        what=f"{len(applied)} accepted events",
        describe=lambda: {
            name: worker.metric(name)
            for name in (
                "tastestream_events_accepted_total",
                "tastestream_events_duplicate_total",
                "tastestream_events_rejected_total",
            )
        },
    )
    assert worker.metric("tastestream_events_accepted_total") == len(applied)
    assert answered["202"] and answered["400"], answered
    assert worker.proc.poll() is None


def _post(url: str, payload: bytes, content_type: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, data=payload, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _quote(user: str) -> str:
    from urllib.parse import quote

    return quote(user, safe="")
