"""Property-based fuzz of decode_message (hypothesis).

Generated messages mix valid events, valid events with one field made hostile
(wrong types, huge integers, NaN, deep nesting, long or odd strings, dates out
of range, unknown fields), arbitrary values, hand-crafted odd and malformed
elements and random bytes, in JSON or msgpack, single or batched. For each:

- decode_message never raises;
- every input is accounted for: accepted events and rejections cover the
  batch's positions exactly once (or one rejection stands for the whole message,
  and then only because the message cannot be split into events);
- every rejection carries a reason and the original bytes of its event;
- each event is judged as validate_event judges it decoded generically: the
  same canonical event, or the same field and message; so valid events around
  bad ones are accepted.

Hypothesis chooses the shape (encoding, batch size, the kind of each element)
and a seed from which each element's content is built: drawing every
value through hypothesis costs ~50 µs a draw, too slow for 10,000 messages in CI.
``TASTESTREAM_FUZZ_EXAMPLES`` sets the number of messages (10,000 by default).
"""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.codecs import decode_message
from streams.events import EVENT_TYPES, EventError, validate_event
from streams.limits import MAX_ID_BYTES, MAX_NUMBER, MAX_TS

EXAMPLES = int(os.environ.get("TASTESTREAM_FUZZ_EXAMPLES", "10000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- content from a seed ----------------------------------------------------------------------

ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyz0123456789-_:.",
    "àéîõüßçñ€",
    "日本語中文한국어",
    "😀🎉👍🏽🚀",
    "\x00\x01\t\n\x7f\u200b\ufeff",
    '"\\/[]{}',
]
BOUNDARY_LENGTHS = [0, 1, 2, 127, 128, 129, 255, 256, 257, 511, 512, 513, 600]


def text(rng: random.Random, short: bool = False) -> str:
    length = rng.randint(1, 12) if short else rng.choice([*BOUNDARY_LENGTHS, rng.randint(1, 40)])
    alphabet = "".join(rng.sample(ALPHABETS, rng.randint(1, 3)))
    return "".join(rng.choice(alphabet) for _ in range(length))


def an_id(rng: random.Random) -> str:
    if rng.random() < 0.8:
        return text(rng, short=True)
    return rng.choice(["x" * MAX_ID_BYTES, "😀" * (MAX_ID_BYTES // 4), "é" * (MAX_ID_BYTES // 2)])


def iso(rng: random.Random, earliest: int = 1, latest: int = 9999) -> str:
    moment = datetime(rng.randint(earliest, latest), rng.randint(1, 12), rng.randint(1, 28))
    moment += timedelta(seconds=rng.randint(0, 86_399), microseconds=rng.randint(0, 999_999))
    zone = rng.choice([None, UTC, timezone(timedelta(minutes=rng.randint(-1439, 1439)))])
    stamp = moment.replace(tzinfo=zone).isoformat()
    return stamp.replace("+00:00", "Z") if rng.random() < 0.3 else stamp


def valid_ts(rng: random.Random) -> Any:
    return rng.choice(
        [rng.uniform(0, MAX_TS), rng.randint(0, int(MAX_TS)), iso(rng, 1971, 5000), 0, MAX_TS]
    )


def valid_event(rng: random.Random) -> dict[str, Any]:
    event: dict[str, Any] = {
        "user_id": an_id(rng),
        "item_id": an_id(rng),
        "type": rng.choice(EVENT_TYPES),
        "ts": valid_ts(rng),
    }
    optional = {
        "event_id": lambda: an_id(rng),
        "session_id": lambda: an_id(rng),
        "value": lambda: rng.choice([rng.uniform(-1e6, 1e6), rng.randint(-100, 100), MAX_NUMBER]),
        "context": lambda: {
            k: v
            for k, v in (
                ("surface", an_id(rng)),
                ("request_id", an_id(rng)),
                ("position", rng.choice([0, rng.randint(0, 500), MAX_NUMBER])),
            )
            if rng.random() < 0.6
        },
        "item": lambda: {
            k: v
            for k, v in (
                ("category", an_id(rng)),
                ("seller", an_id(rng)),
                ("price", rng.choice([0, 19.5, rng.uniform(0, 1e4), rng.randint(0, 10**6)])),
                ("available", rng.random() < 0.5),
            )
            if rng.random() < 0.6
        },
    }
    for key, make in optional.items():
        roll = rng.random()
        if roll < 0.3:
            event[key] = make()
        elif roll < 0.35:
            event[key] = None  # null means absent
    if rng.random() < 0.5:  # producers send keys in any order
        keys = list(event)
        rng.shuffle(keys)
        event = {k: event[k] for k in keys}
    return event


def number(rng: random.Random, encoding: str) -> Any:
    choices: list[Any] = [
        rng.randint(-(2**63), 2**64 - 1),
        rng.uniform(-1e20, 1e20),
        rng.choice([MAX_TS, MAX_TS + 1, 2**53, 2**53 + 1, -(2**53) - 2, 2**63 - 1, 2**64 - 1]),
        rng.choice([-0.0, 1e-320, 1.7976931348623157e308, -1.0, 0.5]),
    ]
    if encoding == "json":
        choices.append(10 ** rng.randint(19, 400) * rng.choice([1, -1]))
    else:
        choices.append(rng.choice([float("nan"), float("inf"), float("-inf")]))
    return rng.choice(choices)


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def arbitrary(rng: random.Random, encoding: str, depth: int = 0) -> Any:
    roll = rng.randrange(8 if depth < 3 else 5)
    if roll == 0:
        return None
    if roll == 1:
        return rng.random() < 0.5
    if roll == 2:
        return number(rng, encoding)
    if roll == 3:
        return text(rng)
    if roll == 4:
        return rng.choice([iso(rng), "yesterday", "2026-13-01", "", " 2026-01-01 "])
    if roll == 5:
        return [arbitrary(rng, encoding, depth + 1) for _ in range(rng.randint(0, 3))]
    if roll == 6:
        return nested(rng.randint(1, 200))
    return {text(rng, short=True): arbitrary(rng, encoding, depth + 1) for _ in range(3)}


FIELDS = [
    "user_id",
    "item_id",
    "type",
    "ts",
    "event_id",
    "session_id",
    "value",
    "context",
    "item",
    "context.position",
    "context.surface",
    "item.price",
    "item.available",
    "extra",
]


def spoiled_event(rng: random.Random, encoding: str) -> dict[str, Any]:
    """A valid event with one field made hostile, or removed."""
    event = valid_event(rng)
    key = rng.choice(FIELDS)
    hostile = arbitrary(rng, encoding)
    if key == "ts" and rng.random() < 0.5:
        hostile = rng.choice([iso(rng, 1, 1969), iso(rng, 5139, 9999), -1, MAX_TS * 1000])
    if "." in key:
        parent, child = key.split(".")
        event[parent] = {child: hostile}
    elif key in event and rng.random() < 0.2:
        del event[key]
    else:
        event[key] = hostile
    return event


ODD_JSON = [
    b'{"user_id": "u", "user_id": 5, "item_id": "i", "type": "view", "ts": 1}',
    b'{"user_id":"u","item_id":"i","type":"view","ts":1e400}',
    b'{"user_id":"u","item_id":"i","type":"view","ts":' + b"9" * 400 + b"}",
    b"[" * 300 + b"]" * 300,
    b'{"user_id":"\\ud83d\\ude00","item_id":"i","type":"view","ts":1}',
    b'  {"user_id" : "u" , "item_id":"i","type":"view","ts":1}  ',
    b'{"user_id":"u","item_id":"i","type":"view","ts":1,"context":{"position":1.0}}',
    b"null",
]
MALFORMED_JSON = [b'{"user_id":"\\ud800"}', b"{", b'{"a":}', b"NaN", b"\xff", b'{"a":1}}', b"'"]
ODD_MSGPACK = [
    b"\x81\x91\x01\x02",  # a map with an array as key
    b"\x81\x80\x01",  # a map with a map as key
    b"\x81\xa7user_id\xa2\xff\xfe",  # invalid UTF-8
    b"\x81\xa2ts\xd6\xff\x00\x00\x00\x01",  # timestamp extension
    b"\x81\xc4\x07user_id\xa1u",  # a bin key
    b"\x91" * 300 + b"\x90",  # deep, but splittable
    b"\xc0",
]
MALFORMED_MSGPACK = [b"\xc1", b"\x81\xa1a", b"\xa3ab", b"\x92\x01", b"\xd9"]


MALFORMED = 19  # element kinds 0-7 valid, 8-13 spoiled, 14-15 arbitrary, 16-18 odd, 19 malformed


def element(kind: int, seed: int, encoding: str) -> bytes:
    rng = random.Random(seed)
    if kind < 8:
        value = valid_event(rng)
    elif kind < 14:
        value = spoiled_event(rng, encoding)
    elif kind < 16:
        value = arbitrary(rng, encoding)
    elif kind < MALFORMED:
        return rng.choice(ODD_JSON if encoding == "json" else ODD_MSGPACK)
    else:
        return rng.choice(MALFORMED_JSON if encoding == "json" else MALFORMED_MSGPACK)
    if encoding == "json":
        return json.dumps(value, ensure_ascii=rng.random() < 0.5, allow_nan=False).encode()
    return msgpack.packb(value)


KIND = st.integers(0, MALFORMED)
SEED = st.integers(0, 2**32)


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, list[bytes] | None]:
    """A message, and the bytes of its elements when it is a batch built here."""
    encoding = draw(st.sampled_from(["json", "msgpack", "random"]))
    if encoding == "random":
        return draw(st.binary(max_size=100)), None
    seed = draw(SEED)
    if draw(st.integers(0, 3)) == 0:
        return element(draw(KIND), seed, encoding), None
    kinds = draw(st.lists(KIND, max_size=8))
    parts = [element(kind, seed + position, encoding) for position, kind in enumerate(kinds)]
    # A malformed element can swallow its neighbour's bytes: then the parts are not the events.
    known = parts if all(kind < MALFORMED for kind in kinds) else None
    if encoding == "json":
        separator = draw(st.sampled_from([b",", b" , ", b",\n"]))
        return b"[" + separator.join(parts) + b"]", known
    return msgpack.Packer().pack_array_header(len(parts)) + b"".join(parts), known


# -- the oracle: an event decoded generically, judged by validate_event -----------------------


def judged(original: bytes, encoding: str) -> tuple[str, Any]:
    """("valid", event) | ("invalid", (field, message)) | ("malformed", None)."""
    try:
        decoded = (msgspec.json if encoding == "json" else msgspec.msgpack).decode(original)
    except Exception:
        return "malformed", None
    try:
        return "valid", validate_event(decoded)
    except EventError as exc:
        return "invalid", (exc.field, str(exc))


def check_judgement(kind: str, verdict: Any, event: Any, rejection: Any) -> None:
    if kind == "valid":
        assert rejection is None, f"a valid event was rejected: {rejection}"
        assert event == verdict and list(event) == list(verdict)
    else:
        assert event is None, f"an event the contract refuses was accepted: {event}"
        assert rejection.reason
        if kind == "invalid":
            assert (rejection.field, rejection.reason) == verdict


@FUZZ
@given(messages())
def test_decode_message_judges_every_input_alone_and_never_raises(message) -> None:
    data, parts = message
    decoded = decode_message(data)  # must not raise
    assert all(r.reason and r.original is not None for r in decoded.rejections)
    assert all(r.kind in ("event", "message") for r in decoded.rejections)
    whole = [r for r in decoded.rejections if r.kind == "message"]
    if whole and decoded.is_batch:
        # Only a batch that cannot be split into events is rejected whole.
        assert len(decoded.rejections) == 1 and not decoded.events
        assert whole[0].original == data
        codec = msgspec.json if decoded.encoding == "json" else msgspec.msgpack
        with pytest.raises((msgspec.DecodeError, RecursionError)):
            codec.decode(data, type=list[msgspec.Raw])
        return
    if not decoded.is_batch:
        assert decoded.items == 1 and decoded.indexes in ([], [0])
        kind, verdict = judged(data, decoded.encoding or "msgpack")
        event = decoded.events[0] if decoded.events else None
        rejection = decoded.rejections[0] if decoded.rejections else None
        check_judgement(kind, verdict, event, rejection)
        if rejection is not None:  # unreadable as an event <=> a "message" rejection
            assert rejection.index is None
            assert (rejection.kind == "message") == (kind == "malformed")
        return
    assert not whole and all(r.index is not None for r in decoded.rejections)
    rejected = {r.index: r for r in decoded.rejections}
    accepted = dict(zip(decoded.indexes, decoded.events, strict=True))
    assert len(rejected) == len(decoded.rejections)
    assert sorted([*accepted, *rejected]) == list(range(decoded.items))
    for index in range(decoded.items):
        if parts is not None:
            original = parts[index]
        elif index in rejected:
            original = rejected[index].original
        else:
            continue  # accepted, but where its bytes lie is unknown here
        if index in rejected:
            assert rejected[index].original == original  # its own bytes, exactly as sent
            assert original in data
        kind, verdict = judged(original, decoded.encoding or "")
        check_judgement(kind, verdict, accepted.get(index), rejected.get(index))
    if parts is not None:
        assert decoded.items == len(parts)


@settings(max_examples=max(EXAMPLES // 5, 200), deadline=None)
@given(st.integers(0, 15), st.integers(0, 2**32), st.sampled_from(["json", "msgpack"]))
def test_validate_event_raises_only_event_errors_that_encode(kind, seed, encoding) -> None:
    rng = random.Random(seed)
    raw = spoiled_event(rng, encoding) if kind < 12 else arbitrary(rng, encoding)
    try:
        event = validate_event(raw)
    except EventError as exc:
        json.dumps({"field": exc.field, "reason": str(exc)}, ensure_ascii=False).encode()
    else:
        msgpack.packb(event)  # a canonical event always encodes, both ways
        json.dumps(event, ensure_ascii=False, allow_nan=False).encode()
