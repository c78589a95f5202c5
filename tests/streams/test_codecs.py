import json

import msgpack
import pytest

from streams.codecs import (
    MAX_BATCH_EVENTS,
    DecodeError,
    decode_payload,
    encode_event,
    encode_events,
)
from streams.events import MAX_EVENT_BYTES

EVENT = {"user_id": "u1", "item_id": "i1", "type": "view", "ts": 1.0}


def test_json_single_and_batch():
    single = decode_payload(json.dumps(EVENT).encode())
    assert single.items == [EVENT] and not single.is_batch and single.encoding == "json"
    batch = decode_payload(b"  " + json.dumps([EVENT, EVENT]).encode())
    assert batch.items == [EVENT, EVENT] and batch.is_batch


def test_msgpack_single_and_batch_round_trip():
    assert decode_payload(encode_event(EVENT)).items == [EVENT]
    payload = decode_payload(encode_events([EVENT] * 3))
    assert payload.is_batch and payload.encoding == "msgpack" and len(payload.items) == 3


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (None, "no value"),
        (b"", "empty"),
        (b"\xc1\xff\x00", "undecodable bytes"),
        (b'{"user_id": ', "invalid JSON"),
        (b'{"a": "\xff"}', "invalid JSON"),
    ],
)
def test_undecodable_input_explains_itself(data, words):
    with pytest.raises(DecodeError, match=words):
        decode_payload(data)


def test_oversize_single_event_is_rejected():
    big = json.dumps({**EVENT, "item_id": "x" * MAX_EVENT_BYTES}).encode()
    with pytest.raises(DecodeError, match="limit is 65536"):
        decode_payload(big)


def test_batch_with_too_many_events_is_rejected():
    with pytest.raises(DecodeError, match="batch holds"):
        decode_payload(msgpack.packb([1] * (MAX_BATCH_EVENTS + 1)))
