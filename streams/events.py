"""The event contract: one validator for the HTTP API, the CLI and the stream.

An event is a JSON object or a msgpack map::

    required  user_id (str), item_id (str), type (one of EVENT_TYPES),
              ts (epoch seconds, or an ISO-8601 string)
    optional  event_id (str, the idempotency key), session_id (str),
              value (number), context (object), item (object)

:func:`validate_event` returns the event in canonical form (``ts`` as float
epoch seconds, ``event_id`` always present) or raises :class:`EventError`
naming the field at fault.

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
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Any

EVENT_TYPES: tuple[str, ...] = ("view", "click", "favorite", "cart", "purchase", "impression")
EVENT_TYPE_SET = frozenset(EVENT_TYPES)

#: Largest encoded event accepted (bytes); larger input is rejected, never truncated.
MAX_EVENT_BYTES = 64 * 1024
#: Longest id string (user, item, event, session, seller, ...).
MAX_ID_CHARS = 512
#: Latest accepted timestamp: values above it are almost always epoch milliseconds.
MAX_TS = 1e11

REQUIRED_FIELDS = ("user_id", "item_id", "type", "ts")
OPTIONAL_FIELDS = ("event_id", "session_id", "value", "context", "item")
KNOWN_FIELDS = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)
CONTEXT_FIELDS = {"surface": str, "request_id": str, "position": int}
ITEM_FIELDS = {"category": str, "seller": str, "price": float, "available": bool}


class EventError(ValueError):
    """An event broke the contract; ``field`` names where (or ``None`` for the whole)."""

    def __init__(self, field: str | None, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_id(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise EventError(name, f"must be a string, got {_type_name(value)}")
    if not value:
        raise EventError(name, "must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise EventError(name, f"is {len(value)} characters; the limit is {MAX_ID_CHARS}")
    return value


def _check_number(name: str, value: Any) -> float:
    # bool is an int subclass; True as a price is a producer bug, not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventError(name, f"must be a number, got {_type_name(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise EventError(name, f"must be finite, got {value!r}")
    return number


def parse_ts(value: Any, field: str = "ts") -> float:
    """Epoch seconds from a number or an ISO-8601 string (naive means UTC)."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise EventError(
                field, f"{value[:64]!r} is neither epoch seconds nor an ISO-8601 time"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    ts = _check_number(field, value)
    if ts < 0:
        raise EventError(field, f"must not be negative, got {value!r}")
    if ts > MAX_TS:
        raise EventError(field, f"{value!r} looks like milliseconds; send epoch seconds")
    return ts


def _check_object(name: str, value: Any, spec: dict[str, type]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError(name, f"must be an object, got {_type_name(value)}")
    out: dict[str, Any] = {}
    for key, raw in value.items():
        kind = spec.get(key)
        path = f"{name}.{key}"
        if kind is None:
            raise EventError(path, f"unknown field; expected one of {', '.join(spec)}")
        if raw is None:
            continue
        if kind is str:
            out[key] = _check_id(path, raw)
        elif kind is bool:
            if not isinstance(raw, bool):
                raise EventError(path, f"must be true or false, got {_type_name(raw)}")
            out[key] = raw
        elif kind is int:
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
                raise EventError(path, f"must be a non-negative integer, got {raw!r}")
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

    Raises
    ------
    EventError
        With the offending field and a reason a producer can act on.
    """
    if not isinstance(raw, dict):
        raise EventError(None, f"an event must be an object/map, got {_type_name(raw)}")
    for key in raw:
        if key not in KNOWN_FIELDS:
            raise EventError(
                str(key)[:64],
                f"unknown field; expected {', '.join(REQUIRED_FIELDS + OPTIONAL_FIELDS)}",
            )
    for key in REQUIRED_FIELDS:
        if key not in raw or raw[key] is None:
            raise EventError(key, "missing required field")
    etype = raw["type"]
    if etype not in EVENT_TYPE_SET:
        if not isinstance(etype, str):
            raise EventError("type", f"must be a string, got {_type_name(etype)}")
        raise EventError(
            "type", f"unknown event type {etype[:64]!r}; expected one of {', '.join(EVENT_TYPES)}"
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
