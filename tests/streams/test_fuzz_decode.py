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
import random
from typing import Any

import msgpack
import msgspec
import pytest
from fuzzing import EXAMPLES, arbitrary, messages, spoiled_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.codecs import decode_message
from streams.events import EventError, validate_event

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

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
