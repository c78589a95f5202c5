"""Generated messages for the fuzz tests: shared by the decoder's fuzz and the end-to-end fuzz.

Messages mix valid events, valid events with one field made hostile (wrong
types, huge integers, NaN, deep nesting, long or odd strings, dates out of
range, unknown fields), arbitrary values, hand-crafted odd and malformed
elements and random bytes, in JSON or msgpack, single or batched. Hypothesis
chooses the shape (encoding, batch size, the kind of each element) and a seed
from which each element's content is built (drawing every value through
hypothesis costs ~50 µs a draw, too slow for 10,000 messages in CI).
"""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack
from hypothesis import strategies as st

from streams.events import EVENT_TYPES
from streams.limits import MAX_ID_BYTES, MAX_NUMBER, MAX_TS

#: Messages per fuzz run (``TASTESTREAM_FUZZ_EXAMPLES`` sets more).
EXAMPLES = int(os.environ.get("TASTESTREAM_FUZZ_EXAMPLES", "10000"))

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


def generated_messages(count: int) -> list[tuple[bytes, list[bytes] | None]]:
    """``count`` messages drawn by hypothesis from :func:`messages`, for end-to-end runs.

    Each is a separate hypothesis example (one example's draws share a bounded
    buffer, so drawing thousands of messages inside one would make the later
    ones degenerate).
    """
    from hypothesis import HealthCheck, Phase, given, settings

    drawn: list[tuple[bytes, list[bytes] | None]] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(messages())
    def collect(message: tuple[bytes, list[bytes] | None]) -> None:
        drawn.append(message)

    collect()
    return drawn
