"""The event contract: one validator for the HTTP API, the CLI and the stream.

An event is a JSON object or a msgpack map::

    required  user_id (str), item_id (str), type (one of EVENT_TYPES),
              ts (epoch seconds, or an ISO-8601 string)
    optional  event_id (str, the idempotency key), session_id (str),
              value (number), context (object), item (object)

:func:`validate_event` returns the event in canonical form (``ts`` as float
epoch seconds, ``event_id`` always present, keys in contract order) or raises
:class:`EventError` naming the field at fault. Sizes and ranges come from
:mod:`streams.limits`: strings of at most 512 UTF-8 bytes, finite numbers
within ±2**53, ``ts`` from 1970 to the year 5138 (numbers and ISO strings alike).

:class:`EventRecord` states the same contract as a typed msgspec schema, so the
stream decodes and validates valid events in C (:func:`streams.codecs.decode_message`);
:func:`canonical_event` finishes a record into the same canonical dict. The
hand-written validator stays the authority: whatever the typed schema refuses
is decided, and explained, by :func:`validate_event`.

Examples
--------
>>> e = validate_event({"user_id": "u1", "item_id": "i9", "type": "cart",
...                     "ts": "2026-01-02T03:04:05Z"})
>>> e["ts"], len(e["event_id"])
(1767323045.0, 24)
>>> try:
...     validate_event({"user_id": "u1", "item_id": "i9", "type": "like", "ts": 1})
... except EventError as exc:
...     print(exc.field, "|", exc.reason.split(";")[0])
type | unknown event type 'like'
>>> record = msgspec.json.decode(b'{"user_id": "u1", "item_id": "i9", "type": "cart",'
...                              b' "ts": "2026-01-02T03:04:05Z"}', type=EventRecord)
>>> canonical_event(record) == e
True
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from streams.limits import MAX_EVENT_BYTES, MAX_ID_BYTES, MAX_NUMBER, MAX_TS

EVENT_TYPES: tuple[str, ...] = ("view", "click", "favorite", "cart", "purchase", "impression")
EVENT_TYPE_SET = frozenset(EVENT_TYPES)

#: An id of more characters than this is too long whatever its encoding (a
#: character is at least one UTF-8 byte); the limit itself is MAX_ID_BYTES.
MAX_ID_CHARS = MAX_ID_BYTES

REQUIRED_FIELDS = ("user_id", "item_id", "type", "ts")
OPTIONAL_FIELDS = ("event_id", "session_id", "value", "context", "item")
KNOWN_FIELDS = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)
CONTEXT_FIELDS = {"surface": str, "request_id": str, "position": int}
ITEM_FIELDS = {"category": str, "seller": str, "price": float, "available": bool}

__all__ = [
    "CONTEXT_FIELDS",
    "EVENT_TYPES",
    "ITEM_FIELDS",
    "KNOWN_FIELDS",
    "MAX_EVENT_BYTES",
    "MAX_ID_CHARS",
    "MAX_TS",
    "EventError",
    "EventRecord",
    "canonical_event",
    "derive_event_id",
    "parse_ts",
    "validate_event",
]

#: Strings up to this many characters fit MAX_ID_BYTES whatever they hold (4 bytes a character).
_ALWAYS_SHORT_CHARS = MAX_ID_BYTES // 4
_PREVIEW_CHARS = 64


def _printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters and safe to encode (a lone surrogate escaped)."""
    text = text if len(text) <= limit else text[:limit] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class EventError(ValueError):
    """An event broke the contract; ``field`` names where (or ``None`` for the whole)."""

    def __init__(self, field: str | None, reason: str) -> None:
        # Both end up in JSON replies and dead-letter records: keep them short and encodable.
        self.field = None if field is None else _printable(field, _PREVIEW_CHARS)
        self.reason = _printable(reason, 4 * _PREVIEW_CHARS)
        super().__init__(f"{self.field}: {self.reason}" if self.field else self.reason)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _preview(value: Any) -> str:
    """A short repr of ``value`` for an error message (huge integers by their size)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, tuple | list | dict):  # may be huge or deeply nested: not its repr
        return f"of length {len(value)}"
    return _printable(repr(value), _PREVIEW_CHARS)


def _check_field_name(parent: str | None, key: Any) -> None:
    # msgpack maps may have keys of any type (a msgpack array decodes to a tuple).
    if not isinstance(key, str):
        kind = "array" if isinstance(key, tuple | list) else _type_name(key)
        raise EventError(parent, f"field names must be strings, got {kind} {_preview(key)}")


def _check_id(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise EventError(name, f"must be a string, got {_type_name(value)}")
    if not value:
        raise EventError(name, "must not be empty")
    if len(value) > MAX_ID_BYTES:
        raise EventError(name, f"is {len(value)} characters; the limit is {MAX_ID_BYTES} bytes")
    if not value.isascii():
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as exc:  # JSON can carry lone surrogates; UTF-8 cannot
            raise EventError(
                name, f"is not valid Unicode (a lone surrogate at character {exc.start})"
            ) from None
        if size > MAX_ID_BYTES:
            raise EventError(name, f"is {size} bytes of UTF-8; the limit is {MAX_ID_BYTES} bytes")
    return value


def _check_number(name: str, value: Any) -> float:
    # bool is an int subclass; True as a price is a producer bug, not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventError(name, f"must be a number, got {_type_name(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf if value > 0 else -math.inf
    if isinstance(value, float) and not math.isfinite(number):
        raise EventError(name, f"must be finite, got {value!r}")
    if not -MAX_NUMBER <= number <= MAX_NUMBER:
        raise EventError(
            name, f"is out of range: numbers lie within ±{MAX_NUMBER}, got {_preview(value)}"
        )
    return number


#: The range of ``ts`` as ISO-8601, for messages.
_EARLIEST_ISO = "1970-01-01T00:00:00Z"
_LATEST_ISO = datetime.fromtimestamp(MAX_TS, UTC).isoformat().replace("+00:00", "Z")


def parse_ts(value: Any, field: str = "ts") -> float:
    """Epoch seconds from a number or an ISO-8601 string (naive means UTC), range-checked.

    Numbers and ISO strings get the same range: 0 (1970) to ``MAX_TS`` (year 5138).

    Examples
    --------
    >>> parse_ts("1970-01-01T00:01:00+00:00"), parse_ts(60)
    (60.0, 60.0)
    >>> try:
    ...     parse_ts("0001-01-01")
    ... except EventError as exc:
    ...     print(exc.reason)
    '0001-01-01' is before 1970-01-01T00:00:00Z, the earliest accepted time
    """
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            ts = parsed.timestamp()
        except (ValueError, OverflowError):
            raise EventError(
                field, f"{_preview(value)} is neither epoch seconds nor an ISO-8601 time"
            ) from None
        if ts < 0:
            raise EventError(
                field, f"{_preview(value)} is before {_EARLIEST_ISO}, the earliest accepted time"
            )
        if ts > MAX_TS:
            raise EventError(
                field, f"{_preview(value)} is after {_LATEST_ISO}, the latest accepted time"
            )
        return ts
    ts = _check_number(field, value)
    if ts < 0:
        raise EventError(field, f"must not be negative, got {value!r}")
    if ts > MAX_TS:
        raise EventError(field, f"{value!r} looks like milliseconds; send epoch seconds")
    return ts


def _check_object(name: str, value: Any, spec: dict[str, type]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError(name, f"must be an object, got {_type_name(value)}")
    for key in value:
        if key not in spec:
            _check_field_name(name, key)
            raise EventError(f"{name}.{key}", f"unknown field; expected one of {', '.join(spec)}")
    out: dict[str, Any] = {}
    for key, kind in spec.items():  # contract order, whatever order the producer used
        raw = value.get(key)
        if raw is None:
            continue
        path = f"{name}.{key}"
        if kind is str:
            out[key] = _check_id(path, raw)
        elif kind is bool:
            if not isinstance(raw, bool):
                raise EventError(path, f"must be true or false, got {_type_name(raw)}")
            out[key] = raw
        elif kind is int:
            if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_NUMBER:
                raise EventError(
                    path, f"must be a non-negative integer up to {MAX_NUMBER}, got {_preview(raw)}"
                )
            out[key] = raw
        else:
            number = _check_number(path, raw)
            if number < 0:
                raise EventError(path, f"must not be negative, got {raw!r}")
            out[key] = number
    return out


def derive_event_id(user_id: str, item_id: str, etype: str, ts: float, session_id: str) -> str:
    """A stable idempotency key from the event's content (same event, same id)."""
    digest = hashlib.blake2b(
        f"{user_id}\x1f{item_id}\x1f{etype}\x1f{ts!r}\x1f{session_id}".encode(), digest_size=12
    )
    return digest.hexdigest()


def validate_event(raw: Any) -> dict[str, Any]:
    """Check ``raw`` against the contract and return its canonical form.

    Never raises anything but :class:`EventError`, whatever ``raw`` holds.

    Raises
    ------
    EventError
        With the offending field and a reason a producer can act on.
    """
    if not isinstance(raw, dict):
        raise EventError(None, f"an event must be an object/map, got {_type_name(raw)}")
    for key in raw:
        if key not in KNOWN_FIELDS:
            _check_field_name(None, key)
            raise EventError(
                key, f"unknown field; expected {', '.join(REQUIRED_FIELDS + OPTIONAL_FIELDS)}"
            )
    for key in REQUIRED_FIELDS:
        if raw.get(key) is None:
            raise EventError(key, "missing required field")
    etype = raw["type"]
    if not isinstance(etype, str):
        raise EventError("type", f"must be a string, got {_type_name(etype)}")
    if etype not in EVENT_TYPE_SET:
        raise EventError(
            "type",
            f"unknown event type {_preview(etype)}; expected one of {', '.join(EVENT_TYPES)}",
        )
    event: dict[str, Any] = {
        "user_id": _check_id("user_id", raw["user_id"]),
        "item_id": _check_id("item_id", raw["item_id"]),
        "type": etype,
        "ts": parse_ts(raw["ts"]),
    }
    session_id = raw.get("session_id")
    if session_id is not None:
        event["session_id"] = _check_id("session_id", session_id)
    value = raw.get("value")
    if value is not None:
        event["value"] = _check_number("value", value)
    context = raw.get("context")
    if context is not None:
        event["context"] = _check_object("context", context, CONTEXT_FIELDS)
    item = raw.get("item")
    if item is not None:
        event["item"] = _check_object("item", item, ITEM_FIELDS)
    event_id = raw.get("event_id")
    if event_id is None:
        event_id = derive_event_id(
            event["user_id"], event["item_id"], etype, event["ts"], session_id or ""
        )
    else:
        event_id = _check_id("event_id", event_id)
    event["event_id"] = event_id
    return event


# -- the same contract as a typed schema, decoded and checked in C by msgspec ---------------
# Each constraint mirrors a check above; tests/streams/test_decode_message.py holds the
# two to the same results on generated input. Where they could differ the schema is
# stricter, and anything it refuses is decided by validate_event.

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_BYTES)]
_Number = Annotated[float, msgspec.Meta(ge=-MAX_NUMBER, le=MAX_NUMBER)]
_NonNegative = Annotated[float, msgspec.Meta(ge=0, le=MAX_NUMBER)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_NUMBER)]
_EpochSeconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_TS)]


class ContextRecord(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """``context`` of an event, typed (see ``CONTEXT_FIELDS``)."""

    surface: _Id | None = None
    request_id: _Id | None = None
    position: _Count | None = None


class ItemRecord(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """``item`` of an event, typed (see ``ITEM_FIELDS``)."""

    category: _Id | None = None
    seller: _Id | None = None
    price: _NonNegative | None = None
    available: bool | None = None


class EventRecord(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """An event as the typed decoder reads it; :func:`canonical_event` finishes it.

    Field order is the canonical key order (``event_id`` last, as validate_event puts it).
    """

    user_id: _Id
    item_id: _Id
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    ts: _EpochSeconds | str
    session_id: _Id | None = None
    value: _Number | None = None
    context: ContextRecord | None = None
    item: ItemRecord | None = None
    event_id: _Id | None = None


_to_builtins = msgspec.to_builtins


def _check_utf8_size(name: str, value: str | None) -> None:
    # The schema bounds characters; multi-byte strings may still exceed the byte limit.
    if value is not None and len(value) > _ALWAYS_SHORT_CHARS and not value.isascii():
        _check_id(name, value)


def canonical_event(record: EventRecord) -> dict[str, Any]:
    """The canonical event (as :func:`validate_event` returns it) from a decoded record.

    Raises
    ------
    EventError
        When a check the schema cannot express fails (an ISO ``ts`` out of range,
        a string over MAX_ID_BYTES bytes of UTF-8).
    """
    event = _to_builtins(record)  # omit_defaults: absent and null fields are left out
    ts = event["ts"]
    if ts.__class__ is str:
        event["ts"] = ts = parse_ts(ts)
    # The byte checks, inlined for the fields every event has: this runs per event.
    user_id, item_id, session_id = record.user_id, record.item_id, record.session_id
    if len(user_id) > _ALWAYS_SHORT_CHARS and not user_id.isascii():
        _check_id("user_id", user_id)
    if len(item_id) > _ALWAYS_SHORT_CHARS and not item_id.isascii():
        _check_id("item_id", item_id)
    _check_utf8_size("session_id", session_id)
    if record.event_id is None:
        event["event_id"] = derive_event_id(user_id, item_id, record.type, ts, session_id or "")
    else:
        _check_utf8_size("event_id", record.event_id)
    context = record.context
    if context is not None:
        _check_utf8_size("context.surface", context.surface)
        _check_utf8_size("context.request_id", context.request_id)
    item = record.item
    if item is not None:
        _check_utf8_size("item.category", item.category)
        _check_utf8_size("item.seller", item.seller)
    return event
