"""The limits are consistent with each other and with what Kafka must allow."""

from __future__ import annotations

import hashlib
import json

import msgpack
import pytest

from streams.codecs import decode_message, encode_batches, encode_event
from streams.deadletter import dead_letter_record, dead_letter_value, original_bytes
from streams.events import validate_event
from streams.limits import (
    DEAD_LETTER_ORIGINAL_BYTES,
    KAFKA_MAX_MESSAGE_BYTES,
    MAX_BATCH_EVENTS,
    MAX_CANONICAL_EVENT_BYTES,
    MAX_DEAD_LETTER_BYTES,
    MAX_EVENT_BYTES,
    MAX_ID_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_NUMBER,
)

LONGEST = "x" * MAX_ID_BYTES


def largest_event(string: str = LONGEST) -> dict:
    """Every field present, every string at the limit, every number 8 bytes wide."""
    return {
        "user_id": string,
        "item_id": string,
        "type": "impression",
        "ts": 1767225600.125,
        "event_id": string,
        "session_id": string,
        "value": -1.5e15,
        "context": {"surface": string, "request_id": string, "position": MAX_NUMBER},
        "item": {"category": string, "seller": string, "price": 1.5e15, "available": False},
    }


def test_canonical_event_bound_holds_and_is_tight():
    for string in (LONGEST, "😀" * (MAX_ID_BYTES // 4), "é" * (MAX_ID_BYTES // 2)):
        size = len(encode_event(validate_event(largest_event(string))))
        assert size <= MAX_CANONICAL_EVENT_BYTES
        assert size >= 0.95 * MAX_CANONICAL_EVENT_BYTES
    assert MAX_CANONICAL_EVENT_BYTES < MAX_EVENT_BYTES  # a canonical event is a valid input


def test_a_full_message_plus_its_largest_key_fits_what_kafka_is_told_to_allow():
    # Record batch framing is ~61 bytes, a record's own ~20: 64 KiB of headroom is ample.
    assert MAX_MESSAGE_BYTES + MAX_ID_BYTES + 1024 <= KAFKA_MAX_MESSAGE_BYTES


def test_batches_of_the_largest_events_are_split_within_both_limits():
    events = [validate_event({**largest_event(), "event_id": f"e{i}"}) for i in range(500)]
    messages = list(encode_batches(events))
    assert len(messages) == 2  # 500 x 3.8 KB does not fit one 1 MiB message
    assert [e for _, batch in messages for e in batch] == events
    for message, batch in messages:
        assert len(message) <= MAX_MESSAGE_BYTES
        assert (
            message is messages[-1][0]
            or len(message) > MAX_MESSAGE_BYTES - MAX_CANONICAL_EVENT_BYTES
        )
        assert decode_message(message).events == batch  # each is a valid message on its own
    small = [
        validate_event({"user_id": "u", "item_id": "i", "type": "view", "ts": i})
        for i in range(25_000)
    ]
    counts = [len(batch) for _, batch in encode_batches(small)]
    assert counts == [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS, 5_000]


def test_encode_batches_refuses_an_event_that_cannot_fit_any_message():
    with pytest.raises(ValueError, match="cannot fit"):
        list(encode_batches([{"blob": "x" * 100}], max_bytes=50))


SOURCE = {"topic": "tastestream.events", "partition": 3, "offset": 2**62}


@pytest.mark.parametrize("size", [1_000_000, 5_000_000, 16 * 1024 * 1024])
def test_a_dead_letter_record_always_fits(size):
    original = bytes(range(256)) * (size // 256)
    hostile_reason = "😀\ud800" * 5_000  # long, and not even encodable as UTF-8
    record = dead_letter_record(original, hostile_reason, SOURCE, field="f" * 10_000, index=None)
    value = dead_letter_value(record)
    assert len(value) <= MAX_DEAD_LETTER_BYTES
    back = json.loads(value)
    assert back["original_size"] == len(original) and back["original_truncated"]
    assert original_bytes(back) == original[:DEAD_LETTER_ORIGINAL_BYTES]
    assert back["original_sha256"] == hashlib.sha256(original).hexdigest()
    assert back["reason"].startswith("😀") and back["source"] == SOURCE


def test_a_rejected_event_is_kept_whole_in_its_dead_letter_record():
    event = msgpack.packb({"user_id": "u", "blob": "x" * (MAX_EVENT_BYTES - 100)})
    (rejection,) = decode_message(event).rejections
    record = dead_letter_record(rejection.original, rejection.reason, SOURCE, field=rejection.field)
    back = json.loads(dead_letter_value(record))
    assert original_bytes(back) == event and not back["original_truncated"]
    assert back["field"] == "blob" and "unknown field" in back["reason"]
