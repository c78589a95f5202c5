"""Producers, topics and consumers agree on the contract's sizes, on the real broker."""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter

import aiokafka
import msgpack
from confluent_kafka.admin import AdminClient, ConfigResource
from support import consume_all

from agents.producer import EventProducer, kafka_producer, read_event_file
from streams.codecs import decode_message, encode_batches
from streams.events import validate_event
from streams.limits import KAFKA_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES
from streams.topics import partition_for


def big_event(i: int) -> dict:
    """A valid event of about 1.8 KB: a thousand of them do not fit one message."""
    pad = "x" * 248
    return {
        "user_id": "user-1",
        "item_id": f"{pad}{i:08d}",
        "type": "view",
        "ts": 1767225600 + i,
        "session_id": pad,
        "context": {"surface": pad, "request_id": pad},
        "item": {"category": pad, "seller": pad},
    }


def test_the_events_topic_is_created_to_take_full_size_messages(settings):
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 3})
    resource = ConfigResource(ConfigResource.Type.TOPIC, settings.topics.events.name)
    config = admin.describe_configs([resource])[resource].result(15)
    assert int(config["max.message.bytes"].value) == KAFKA_MAX_MESSAGE_BYTES


def test_big_batches_are_split_into_messages_within_the_limit(settings):
    events = [big_event(i) for i in range(1500)]
    producer = EventProducer(settings, batch_size=10_000)
    assert producer.send_many(events) == 1500
    summary = producer.flush()
    assert summary.sent == 1500 and summary.failed == 0
    messages = consume_all(settings.kafka_bootstrap, settings.topics.events.name, expect=3)
    assert len(messages) == 3  # 1500 x 1.8 KB: three messages of at most 1 MiB
    partition = partition_for("user-1", settings.partitions)
    received = []
    for message in messages:
        assert len(message.value()) <= MAX_MESSAGE_BYTES
        assert message.partition() == partition
        decoded = decode_message(message.value())
        assert not decoded.rejections
        received += decoded.events
    assert received == [validate_event(e) for e in events]


def test_a_full_size_message_goes_through_the_broker_to_both_clients(settings):
    # librdkafka refuses messages over its default 1,000,000 bytes before they leave;
    # kafka_producer raises it to what the topic takes.
    topic = settings.topics.events.name
    events = [validate_event({**big_event(i), "user_id": "u"}) for i in range(700)]
    value, batch = next(encode_batches(events))  # as full as a message gets
    assert 1_000_000 < len(value) <= MAX_MESSAGE_BYTES
    producer = kafka_producer(settings)
    errors = []
    producer.produce(topic, value, b"u", partition=0, on_delivery=lambda e, _m: errors.append(e))
    producer.flush(15)
    assert errors == [None]
    (message,) = consume_all(settings.kafka_bootstrap, topic, expect=1)
    assert message.value() == value

    async def read_with_aiokafka() -> bytes:
        # Faust's client, with Faust's default per-partition fetch size (1 MiB).
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=1024**2,
        )
        await consumer.start()
        try:
            tp = aiokafka.TopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.seek(tp, 0)
            batch = await consumer.getmany(tp, timeout_ms=10_000)
            return batch[tp][0].value
        finally:
            await consumer.stop()

    assert asyncio.run(read_with_aiokafka()) == value
    assert decode_message(value).events == batch


def test_read_event_file_yields_canonical_events_and_counts_rejections_by_field():
    good = {"user_id": "u", "item_id": "i", "type": "view", "ts": "2026-01-01T00:00:00Z"}
    lines = [
        json.dumps(good),
        json.dumps([good, {**good, "type": "zap"}, {**good, "ts": "9999-12-31"}]),
        "{broken",
        "[" * 5000 + "]" * 5000,
        json.dumps({**good, "context": {"position": 2**64}}),
        json.dumps([1]),
        "",
    ]
    rejected: Counter = Counter()
    stream = io.BufferedReader(io.BytesIO("\n".join(lines).encode()))
    events = list(read_event_file(stream, rejected))
    assert events == [validate_event(good)] * 2
    # 5,000 brackets: msgspec refuses the depth on Python 3.11 (an undecodable line); on
    # 3.13 its recursion guard lets it through and the one element is no event. Either
    # way one rejection with its reason; the contract's decoder says which.
    deep = decode_message(lines[3].encode()).rejections
    assert len(deep) == 1 and deep[0].reason
    deep_kind = "undecodable line" if deep[0].kind == "message" else "event"
    expected = Counter({"type": 1, "ts": 1, "undecodable line": 1, "context.position": 1})
    expected["event"] += 1
    expected[deep_kind] += 1
    assert rejected == expected


def test_read_event_file_stops_cleanly_on_a_broken_msgpack_stream():
    good = {"user_id": "u", "item_id": "i", "type": "view", "ts": 1}
    data = msgpack.packb(good) + msgpack.packb([good, {**good, "type": 1}]) + b"\x81\x91\x01\x02"
    rejected: Counter = Counter()
    events = list(read_event_file(io.BufferedReader(io.BytesIO(data)), rejected))
    assert events == [validate_event(good)] * 2
    assert rejected == {"type": 1, "undecodable msgpack": 1}
