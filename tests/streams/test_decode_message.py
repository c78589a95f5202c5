"""decode_message: per-event isolation, limits before work, the hostile inputs of issue 9."""

from __future__ import annotations

import json

import msgpack
import pytest

from streams.codecs import DecodeError, decode_message, decode_payload, encode_events
from streams.events import EventError, validate_event
from streams.limits import MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_ID_BYTES, MAX_MESSAGE_BYTES


def event(i: int = 0, **changes) -> dict:
    e = {"user_id": f"u{i}", "item_id": f"i{i}", "type": "view", "ts": 1767225600 + i}
    e.update(changes)
    return e


def json_batch(*elements: bytes) -> bytes:
    return b"[" + b",".join(elements) + b"]"


def msgpack_batch(*elements: bytes) -> bytes:
    return msgpack.Packer().pack_array_header(len(elements)) + b"".join(elements)


GOOD_JSON = json.dumps(event(1)).encode()
GOOD_MSGPACK = msgpack.packb(event(1))


def accounted(decoded) -> bool:
    """Every input is either accepted or rejected, once."""
    whole = [r for r in decoded.rejections if r.kind == "message"]
    if whole:
        return len(decoded.rejections) == 1 and not decoded.events and whole[0].index is None
    positions = sorted(decoded.indexes + [r.index for r in decoded.rejections])
    return positions == list(range(decoded.items))


# -- the inputs that escaped before (issue 9, item 2), each between two valid events --------


def between_good(name: str, middle: bytes | dict, field: str | None, words: str, msgpack_=False):
    """A case: ``middle`` (bytes, or an event to encode) between two valid events."""
    if isinstance(middle, dict):
        middle = msgpack.packb(middle) if msgpack_ else json.dumps(middle).encode()
    if msgpack_:
        message = msgpack_batch(GOOD_MSGPACK, middle, GOOD_MSGPACK)
    else:
        message = json_batch(GOOD_JSON, middle, GOOD_JSON)
    return pytest.param(message, field, words, id=name)


NINES = b'{"user_id":"u","item_id":"i","type":"view","ts":' + b"9" * 400 + b"}"
HOSTILE = [
    between_good("map-with-array-key", b"\x81\x91\x01\x02", None, "got array of length 1", True),
    between_good("map-with-map-key", b"\x81\x80\x01", None, "undecodable msgpack", True),
    between_good("400-digit-ts", NINES, "ts", "out of range"),
    between_good(
        "position-2**64", event(2, context={"position": 2**64}), "context.position", "up to"
    ),
    between_good(
        "msgpack-position-2**64-1",
        event(2, context={"position": 2**64 - 1}),
        "context.position",
        "non-negative integer up to",
        True,
    ),
    between_good("type-as-a-list", event(2, type=["view"]), "type", "must be a string, got list"),
    between_good("nested-50-deep", b"[" * 50 + b"]" * 50, None, "must be an object/map, got list"),
    between_good(
        "nested-in-context",
        event(2, context={"surface": [[[["x"]]]]}),
        "context.surface",
        "must be a string, got list",
    ),
    between_good("value-1e300", event(2, value=1e300), "value", "out of range"),
    between_good("nan", event(2, value=float("nan")), "value", "must be finite", True),
    between_good("invalid-utf8", b"\x81\xa7user_id\xa2\xff\xfe", None, "undecodable msgpack", True),
    between_good(
        "timestamp-ext", event(2, ts=msgpack.Timestamp(5)), "ts", "must be a number", True
    ),
    between_good("iso-year-1", event(2, ts="0001-01-01"), "ts", "before 1970-01-01"),
    between_good("iso-year-9999", event(2, ts="9999-12-31"), "ts", "after 5138-11-16"),
    between_good(
        "129-emoji-id",
        event(2, item_id="😀" * 129),
        "item_id",
        "516 bytes of UTF-8; the limit is 512 bytes",
    ),
]


@pytest.mark.parametrize(("message", "field", "words"), HOSTILE)
def test_a_hostile_event_costs_itself_alone(message, field, words):
    decoded = decode_message(message)
    assert decoded.indexes == [0, 2], decoded.rejections
    assert [e["item_id"] for e in decoded.events] == ["i1", "i1"]
    (rejection,) = decoded.rejections
    assert (rejection.index, rejection.field, rejection.kind) == (1, field, "event")
    assert words in rejection.reason
    assert message.count(rejection.original) >= 1  # the event's bytes as sent
    assert accounted(decoded)


def test_json_nested_ten_thousand_deep_is_rejected_whole_without_crashing():
    message = json_batch(GOOD_JSON, b"[" * 10_000 + b"]" * 10_000)
    decoded = decode_message(message)
    (rejection,) = decoded.rejections
    assert rejection.index is None and "nested too deep" in rejection.reason
    assert rejection.original == message and not decoded.events


def test_a_batch_that_cannot_be_split_into_events_is_rejected_whole():
    # 0xc1 is never used in msgpack: where the second event ends is unknowable.
    message = msgpack_batch(GOOD_MSGPACK, b"\xc1", GOOD_MSGPACK)
    decoded = decode_message(message)
    (rejection,) = decoded.rejections
    assert rejection.index is None and "undecodable bytes" in rejection.reason
    assert rejection.original == message and not decoded.events


def test_msgpack_nested_ten_thousand_deep_is_rejected_without_crashing():
    decoded = decode_message(b"\x91" * 10_000 + b"\x90")
    assert not decoded.events and len(decoded.rejections) == 1
    assert decoded.rejections[0].reason


def test_a_lone_surrogate_in_json_is_malformed_json():
    # Strict JSON (RFC 8259 text must be UTF-8): a lone surrogate escape cannot become
    # UTF-8 downstream, so it is refused where it is decoded, never later.
    single = b'{"user_id":"\\ud800","item_id":"i","type":"view","ts":1}'
    (rejection,) = decode_message(single).rejections
    assert rejection.index is None and rejection.reason.startswith("invalid JSON")
    with pytest.raises(DecodeError):
        decode_payload(single)


def test_validate_event_refuses_a_lone_surrogate_by_field():
    # HTTP and the CLI may hand validate_event strings from a lenient decoder.
    with pytest.raises(EventError) as info:
        validate_event(event(1, session_id="ab\ud800"))
    assert info.value.field == "session_id" and "lone surrogate" in info.value.reason
    json.dumps(str(info.value), ensure_ascii=False).encode()  # the message itself encodes


# -- limits, before the work they bound ------------------------------------------------------


def test_message_over_the_limit_is_refused_before_parsing():
    message = b"[" + b" " * MAX_MESSAGE_BYTES + b"]"
    (rejection,) = decode_message(message).rejections
    assert rejection.index is None
    assert rejection.reason == f"message is {len(message)} bytes; the limit is {MAX_MESSAGE_BYTES}"


def test_single_event_over_the_event_limit_is_refused():
    message = json.dumps(event(1, item_id="x" * MAX_EVENT_BYTES)).encode()
    (rejection,) = decode_message(message).rejections
    assert rejection.index is None and f"limit is {MAX_EVENT_BYTES}" in rejection.reason


def test_an_oversized_event_in_a_batch_costs_itself_alone():
    padded = b'{"user_id":"u2",' + b" " * MAX_EVENT_BYTES + b'"item_id":"i","type":"view","ts":1}'
    decoded = decode_message(json_batch(GOOD_JSON, padded, GOOD_JSON))
    assert decoded.indexes == [0, 2]
    (rejection,) = decoded.rejections
    assert rejection.index == 1 and f"limit is {MAX_EVENT_BYTES}" in rejection.reason


@pytest.mark.parametrize("encode", [msgpack.packb, lambda items: json.dumps(items).encode()])
def test_a_batch_over_the_event_count_is_refused_whole(encode):
    decoded = decode_message(encode([1] * (MAX_BATCH_EVENTS + 1)))
    (rejection,) = decoded.rejections
    assert rejection.reason == f"batch holds {MAX_BATCH_EVENTS + 1} events; the limit is 10000"


def test_msgpack_batch_count_is_checked_from_its_header_before_decoding():
    # The header claims four billion events; the body is 3 bytes. Refused, no allocation.
    (rejection,) = decode_message(b"\xdd\xff\xff\xff\xff\x01\x02\x03").rejections
    assert "batch holds 4294967295 events" in rejection.reason


def test_ids_are_limited_in_utf8_bytes_not_characters():
    assert validate_event(event(1, user_id="x" * MAX_ID_BYTES))["user_id"] == "x" * MAX_ID_BYTES
    assert validate_event(event(1, user_id="😀" * (MAX_ID_BYTES // 4)))
    for too_long in ("x" * (MAX_ID_BYTES + 1), "😀" * (MAX_ID_BYTES // 4 + 1), "é" * 257):
        decoded = decode_message(msgpack.packb(event(1, user_id=too_long)))
        assert [r.field for r in decoded.rejections] == ["user_id"]
        assert f"the limit is {MAX_ID_BYTES} bytes" in decoded.rejections[0].reason


# -- the contract and its messages are validate_event's ---------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"item_id": "i", "type": "view", "ts": 1},
        event(1, type="like"),
        event(1, user_id=""),
        event(1, ts="yesterday"),
        event(1, ts=1767225600000),
        event(1, ts=-1),
        event(1, ts=True),
        event(1, value="12"),
        event(1, context={"surface": "home", "color": "red"}),
        event(1, item={"available": "yes"}),
        event(1, item={"price": -3}),
        event(1, item=[1]),
        event(1, extra=1),
        event(1, user_id=None),
    ],
)
@pytest.mark.parametrize("encode", [msgpack.packb, lambda e: json.dumps(e).encode()])
def test_rejections_carry_validate_events_field_and_message(bad, encode):
    with pytest.raises(EventError) as info:
        validate_event(bad)
    decoded = decode_message(encode([event(0), bad]))
    assert decoded.indexes == [0]
    (rejection,) = decoded.rejections
    assert (rejection.field, rejection.reason) == (info.value.field, str(info.value))


def test_accepted_events_equal_validate_event_including_key_order():
    full = event(
        3,
        ts="2026-01-01T00:00:00+01:00",
        session_id="s",
        value=12,
        context={"position": 3, "surface": "home"},
        item={"available": True, "category": "lamps", "seller": "s9", "price": 19},
    )
    for message in (msgpack.packb(full), json.dumps([full, event(4)]).encode()):
        decoded = decode_message(message)
        expected = validate_event(full)
        assert decoded.events[0] == expected
        assert list(decoded.events[0]) == list(expected)
        assert list(decoded.events[0]["context"]) == ["surface", "position"]


def test_numbers_ints_and_floats_come_out_as_validate_event_makes_them():
    e = event(1, value=2**53 + 1, item={"price": 0})
    (accepted,) = decode_message(msgpack.packb(e)).events
    assert accepted == validate_event(e)
    assert accepted["value"] == float(2**53) and isinstance(accepted["ts"], float)


def test_single_event_and_whole_message_rejections_have_no_index():
    for message, kind, words in [
        (None, "message", "no value (null)"),
        (b"", "message", "empty"),
        (b"\xc1\xff\x00", "message", "undecodable bytes (neither JSON nor msgpack)"),
        (b'{"user_id": ', "message", "invalid JSON"),
        (b'[{"user_id": "u"}, ', "message", "invalid JSON"),
        (json.dumps(event(1, type="like")).encode(), "event", "unknown event type"),
        (msgpack.packb(7), "event", "an event must be an object/map, got int"),
    ]:
        decoded = decode_message(message)
        (rejection,) = decoded.rejections
        assert rejection.index is None and words in rejection.reason
        assert rejection.original == message and rejection.kind == kind


def test_bytearray_and_memoryview_values_decode_like_bytes():
    data = encode_events([event(1), event(2)])
    for value in (bytearray(data), memoryview(data)):
        assert decode_message(value).events == decode_message(data).events


def test_decode_payload_raises_only_decode_errors_on_hostile_bytes():
    (item,) = decode_payload(b"\x81\x91\x01\x02").items  # decodes; validate_event refuses it
    with pytest.raises(EventError, match="field names must be strings"):
        validate_event(item)
    for data in (
        b"[" * 10_000 + b"]" * 10_000,
        b"\x91" * 10_000,
        b"[" + b"1," * 20_000 + b"1]",
    ):
        with pytest.raises(DecodeError):
            decode_payload(data)
