import math

import pytest

from streams.events import EVENT_TYPES, MAX_ID_CHARS, EventError, validate_event


def base(**changes):
    event = {"user_id": "u1", "item_id": "i1", "type": "click", "ts": 1767225600}
    event.update(changes)
    return event


def test_valid_event_is_canonicalised():
    event = validate_event(
        base(
            ts="2026-01-01T00:00:00+01:00",
            session_id="s1",
            value=12,
            context={"surface": "home", "request_id": "r1", "position": 3},
            item={"category": "lamps", "seller": "s9", "price": 19.5, "available": True},
        )
    )
    assert event["ts"] == 1767222000.0
    assert event["value"] == 12.0 and isinstance(event["value"], float)
    assert event["context"]["position"] == 3
    assert event["item"]["available"] is True


@pytest.mark.parametrize("etype", EVENT_TYPES)
def test_every_type_is_accepted(etype):
    assert validate_event(base(type=etype))["type"] == etype


def test_derived_event_id_is_stable_and_content_based():
    a, b = validate_event(base()), validate_event(base())
    assert a["event_id"] == b["event_id"]
    assert validate_event(base(item_id="i2"))["event_id"] != a["event_id"]
    assert validate_event(base(event_id="mine"))["event_id"] == "mine"


@pytest.mark.parametrize(
    ("event", "field", "words"),
    [
        ({"item_id": "i", "type": "view", "ts": 1}, "user_id", "missing"),
        (base(type="like"), "type", "unknown event type 'like'"),
        (base(type=7), "type", "must be a string"),
        (base(user_id=5), "user_id", "must be a string, got int"),
        (base(user_id=""), "user_id", "must not be empty"),
        (base(user_id="x" * (MAX_ID_CHARS + 1)), "user_id", "the limit is"),
        (base(ts="yesterday"), "ts", "neither epoch seconds nor an ISO-8601"),
        (base(ts=1767225600000), "ts", "looks like milliseconds"),
        (base(ts=-1), "ts", "must not be negative"),
        (base(ts=True), "ts", "must be a number, got bool"),
        (base(value=math.inf), "value", "must be finite"),
        (base(value="12"), "value", "must be a number, got str"),
        (base(context={"surface": "home", "color": "red"}), "context.color", "unknown field"),
        (base(context={"position": -1}), "context.position", "non-negative integer"),
        (base(item={"available": "yes"}), "item.available", "true or false"),
        (base(item={"price": -3}), "item.price", "must not be negative"),
        (base(item=[1]), "item", "must be an object"),
        (base(extra=1), "extra", "unknown field"),
    ],
)
def test_invalid_events_name_the_field(event, field, words):
    with pytest.raises(EventError) as info:
        validate_event(event)
    assert info.value.field == field
    assert words in str(info.value)


def test_non_object_is_rejected():
    with pytest.raises(EventError, match="must be an object/map, got list"):
        validate_event([1, 2])
