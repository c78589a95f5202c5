"""Bytes on the wire <-> events: JSON or msgpack, one event or a batch per message.

A message holds either one event (a JSON object / msgpack map) or a batch (a
JSON array / msgpack array of them). The format is detected from the first
byte, so one topic can carry both from different producers.

:func:`decode_message` is what a consumer calls per message: it never raises,
and returns the canonical events it accepted and a :class:`Rejection` (index,
field, reason, original bytes) for each event, or for the whole message, it
did not. Valid events are decoded and validated in C by msgspec against
:class:`streams.events.EventRecord`; anything the typed decoder refuses is
decoded generically and judged by :func:`streams.events.validate_event`, whose
messages name the field. Limits (:mod:`streams.limits`) are checked before the
work they bound.

Examples
--------
>>> decoded = decode_message(b'[{"user_id": "u1", "item_id": "i1", "type": "view", "ts": 1},'
...                          b' {"user_id": "u1", "item_id": "i2", "type": "like", "ts": 2}]')
>>> [e["item_id"] for e in decoded.events], decoded.indexes
(['i1'], [0])
>>> rejection = decoded.rejections[0]
>>> rejection.index, rejection.field, rejection.original
(1, 'type', b'{"user_id": "u1", "item_id": "i2", "type": "like", "ts": 2}')
>>> decode_message(None).rejections[0].reason
'message has no value (null)'
>>> payload = decode_payload(b'[{"a": 1}, {"a": 2}]')
>>> payload.items, payload.is_batch
([{'a': 1}, {'a': 2}], True)
>>> decode_payload(encode_events([{"a": 1}])).items
[{'a': 1}]
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import msgspec

from streams.events import EventError, EventRecord, canonical_event, validate_event
from streams.limits import (
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    MAX_MESSAGE_BYTES,
)

__all__ = [
    "MAX_BATCH_EVENTS",
    "DecodeError",
    "DecodedMessage",
    "Payload",
    "Rejection",
    "decode_message",
    "decode_payload",
    "dumps_json",
    "encode_batches",
    "encode_event",
    "encode_events",
]


class DecodeError(ValueError):
    """The bytes of a message are not a JSON or msgpack event or batch."""


@dataclass(slots=True)
class Payload:
    """A decoded message: the raw items and whether it was a batch."""

    items: list[Any]
    is_batch: bool
    encoding: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """One input the contract refused: an event, or a whole message.

    ``kind`` is ``"event"`` when an event was read and broke the contract, and
    ``"message"`` when the message could not be read as events at all (null,
    empty, over a size or count limit, undecodable, or a batch that cannot be
    split): HTTP answers the latter with 400, the CLI counts it as an
    undecodable line. ``index`` is the event's position in its batch (``None``
    for a message that is not a batch, or a ``"message"`` rejection).
    ``original`` holds that event's or message's bytes exactly as sent (``None``
    for a null message).
    """

    index: int | None
    field: str | None
    reason: str
    original: bytes | None
    kind: str = "event"


@dataclass(slots=True)
class DecodedMessage:
    """What one message turned into: accepted canonical events and rejections.

    Every input is accounted for: a rejection of kind ``"message"`` stands for
    the whole message (then it is the only one, and nothing was accepted); a
    single-event message gives one event or one rejection (index ``None``); for
    a batch, ``indexes`` (of the accepted ``events``, in order) and the
    rejections' indexes together are exactly ``range(items)``.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    #: Position in the batch of each accepted event (0 for a single-event message).
    indexes: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    is_batch: bool = False
    #: "json", "msgpack", or None when the message was refused before its format mattered.
    encoding: str | None = None

    @property
    def items(self) -> int:
        """Inputs the message held: events of a batch, else 1 (the event or the message)."""
        return len(self.events) + len(self.rejections)


_WHITESPACE = b" \t\r\n"
_JSON_OBJECT, _JSON_ARRAY = 0x7B, 0x5B  # '{' and '['
_MSGPACK_ARRAYS = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])

_JSON_EVENT = msgspec.json.Decoder(EventRecord)
_MSGPACK_EVENT = msgspec.msgpack.Decoder(EventRecord)
# Batches are split into each event's raw bytes (skipped in C, not decoded), so one
# bad event costs itself alone and its rejection carries its bytes as sent.
_JSON_SPLIT = msgspec.json.Decoder(list[msgspec.Raw])
_MSGPACK_SPLIT = msgspec.msgpack.Decoder(list[msgspec.Raw])
_JSON_ANY = msgspec.json.Decoder()
_MSGPACK_ANY = msgspec.msgpack.Decoder()


def _first_byte(data: bytes) -> int | None:
    for byte in data[:64]:
        if byte not in _WHITESPACE:
            return byte
    return None


def _sniff(data: bytes) -> tuple[str, bool]:
    """(encoding, is_batch) from the first byte that is not whitespace."""
    first = _first_byte(data)
    if first in (_JSON_OBJECT, _JSON_ARRAY):
        return "json", first == _JSON_ARRAY
    return "msgpack", first in _MSGPACK_ARRAYS


def _undecodable(encoding: str, exc: BaseException, whole: bool) -> str:
    detail = _describe(exc)
    if encoding == "json":
        return f"invalid JSON: {detail}"
    if whole:
        return f"undecodable bytes (neither JSON nor msgpack): {detail}"
    return f"undecodable msgpack: {detail}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deep"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"


def _message_problem(data: bytes | None) -> str | None:
    """Why a message is refused before it is parsed, or None."""
    if data is None:
        return "message has no value (null)"
    if not data:
        return "message value is empty"
    if len(data) > MAX_MESSAGE_BYTES:
        return f"message is {len(data)} bytes; the limit is {MAX_MESSAGE_BYTES}"
    return None


def _event_too_big(size: int) -> str | None:
    if size > MAX_EVENT_BYTES:
        return f"event is {size} bytes; the limit is {MAX_EVENT_BYTES}"
    return None


def _whole(
    original: bytes | None, reason: str, encoding: str | None, is_batch: bool
) -> DecodedMessage:
    return DecodedMessage(
        rejections=[Rejection(None, None, reason, original, "message")],
        is_batch=is_batch,
        encoding=encoding,
    )


def decode_message(value: bytes | bytearray | memoryview | None) -> DecodedMessage:
    """Decode and validate one message; never raises.

    Parameters
    ----------
    value
        The message value as it came off the topic (or an HTTP body, or a line).

    Returns
    -------
    DecodedMessage
        The accepted canonical events with their positions, and a rejection
        (with its reason and original bytes) for every event, or the whole
        message, that broke the contract. Any exception while decoding or
        validating one event rejects that event alone.
    """
    try:
        data = None if value is None else value if type(value) is bytes else bytes(value)
    except Exception:  # not a buffer at all (a str, say): a caller's bug, still this message only
        return _whole(None, f"message value is {type(value).__name__}, not bytes", None, False)
    try:
        return _decode_message(data)
    except Exception as exc:  # a bug must cost this message alone, never its neighbours
        return _whole(data, f"internal error while decoding: {_describe(exc)}", None, False)


def _decode_message(data: bytes | None) -> DecodedMessage:
    problem = _message_problem(data)
    if problem is not None:
        return _whole(data, problem, None, False)
    assert data is not None
    encoding, is_batch = _sniff(data)
    elements: Sequence[Any]
    if is_batch:
        # msgpack states an array's length up front: too long is refused before any work.
        if encoding == "msgpack" and _msgpack_array_length(data) > MAX_BATCH_EVENTS:
            return _whole(data, _too_many(_msgpack_array_length(data)), encoding, True)
        try:
            elements = (_JSON_SPLIT if encoding == "json" else _MSGPACK_SPLIT).decode(data)
        except Exception as exc:
            return _whole(data, _undecodable(encoding, exc, whole=True), encoding, True)
        if len(elements) > MAX_BATCH_EVENTS:
            return _whole(data, _too_many(len(elements)), encoding, True)
    else:
        problem = _event_too_big(len(data))
        if problem is not None:
            return _whole(data, problem, encoding, False)
        elements = (data,)
    typed = _JSON_EVENT if encoding == "json" else _MSGPACK_EVENT
    out = DecodedMessage(is_batch=is_batch, encoding=encoding)
    events, indexes, rejections = out.events, out.indexes, out.rejections
    for index, raw in enumerate(elements):
        problem = _event_too_big(len(raw))  # (a single event was checked above)
        if problem is not None:
            rejections.append(Rejection(index, None, problem, bytes(raw)))
            continue
        try:
            event = canonical_event(typed.decode(raw))
        except Exception:
            # The typed decoder refused it (or a check after it did): the hand-written
            # validator decides, so the reason is the one HTTP and the CLI give.
            event = _judge(raw, encoding, index if is_batch else None, rejections)
            if event is None:
                continue
        events.append(event)
        indexes.append(index)
    return out


def _too_many(count: int) -> str:
    return f"batch holds {count} events; the limit is {MAX_BATCH_EVENTS}"


def _msgpack_array_length(data: bytes) -> int:
    """The length a msgpack array header states (0 when ``data`` starts otherwise).

    Examples
    --------
    >>> _msgpack_array_length(encode_events([{}] * 70_000))
    70000
    """
    first = data[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F
    if first == 0xDC:
        return int.from_bytes(data[1:3], "big")
    if first == 0xDD:
        return int.from_bytes(data[1:5], "big")
    return 0


def _judge(
    raw: Any, encoding: str, index: int | None, rejections: list[Rejection]
) -> dict[str, Any] | None:
    """Decode one event generically and validate it by hand; reject it (alone) or return it."""
    original = bytes(raw)
    try:
        item = (_JSON_ANY if encoding == "json" else _MSGPACK_ANY).decode(original)
    except Exception as exc:
        whole = index is None  # a single event that does not decode is an unreadable message
        reason = _undecodable(encoding, exc, whole)
        rejections.append(Rejection(index, None, reason, original, "message" if whole else "event"))
        return None
    try:
        return validate_event(item)
    except EventError as exc:
        rejections.append(Rejection(index, exc.field, str(exc), original))
    except Exception as exc:  # validate_event promises EventError only; a bug costs one event
        reason = f"internal error while validating: {_describe(exc)}"
        rejections.append(Rejection(index, None, reason, original))
    return None


def decode_payload(data: bytes | bytearray | memoryview | None) -> Payload:
    """Decode one message's raw items (not validated); raise :class:`DecodeError` with the reason.

    The same decoders and limits as :func:`decode_message`; for callers that
    validate items themselves. Never raises anything but DecodeError.
    """
    data = None if data is None else bytes(data)
    problem = _message_problem(data)
    if problem is not None:
        raise DecodeError(problem)
    assert data is not None
    encoding, is_batch = _sniff(data)
    if not is_batch:
        problem = _event_too_big(len(data))
        if problem is not None:
            raise DecodeError(problem)
    elif encoding == "msgpack" and _msgpack_array_length(data) > MAX_BATCH_EVENTS:
        raise DecodeError(_too_many(_msgpack_array_length(data)))
    try:
        obj = (_JSON_ANY if encoding == "json" else _MSGPACK_ANY).decode(data)
    except Exception as exc:
        raise DecodeError(_undecodable(encoding, exc, whole=True)) from None
    if isinstance(obj, list):
        if len(obj) > MAX_BATCH_EVENTS:
            raise DecodeError(_too_many(len(obj)))
        return Payload(obj, True, encoding)
    return Payload([obj], False, encoding)


def encode_events(events: list[dict[str, Any]]) -> bytes:
    """One msgpack batch message: how high-rate producers should send."""
    return msgpack.packb(events, use_bin_type=True)


def encode_event(event: dict[str, Any]) -> bytes:
    """One event as a msgpack map."""
    return msgpack.packb(event, use_bin_type=True)


def encode_batches(
    records: Sequence[Any],
    max_bytes: int = MAX_MESSAGE_BYTES,
    max_events: int = MAX_BATCH_EVENTS,
) -> Iterator[tuple[bytes, list[Any]]]:
    """msgpack array messages of ``records``, in order, each within the limits.

    Yields ``(message, records_in_it)``; every message is at most ``max_bytes``
    and ``max_events`` records. Each record is encoded once. For events (a
    canonical event is at most MAX_CANONICAL_EVENT_BYTES, far below any message
    limit) and for any other msgpack records a worker sends (co-occurrence
    pairs, forwards): chunking by count alone lets long ids outgrow the
    producer's limit. A record that alone exceeds ``max_bytes`` raises ValueError.

    Examples
    --------
    >>> events = [{"n": i} for i in range(5)]
    >>> [len(batch) for _, batch in encode_batches(events, max_events=2)]
    [2, 2, 1]
    >>> all(decode_payload(m).items == b for m, b in encode_batches(events, max_bytes=12))
    True
    """
    packer = msgpack.Packer(use_bin_type=True)
    parts: list[bytes] = []
    batch: list[Any] = []
    size = 5  # the largest array header
    for record in records:
        part = packer.pack(record)
        if len(part) + 5 > max_bytes:
            raise ValueError(f"a record of {len(part)} bytes cannot fit a {max_bytes}-byte message")
        if batch and (size + len(part) > max_bytes or len(batch) >= max_events):
            yield packer.pack_array_header(len(parts)) + b"".join(parts), batch
            parts, batch, size = [], [], 5
        parts.append(part)
        batch.append(record)
        size += len(part)
    if batch:
        yield packer.pack_array_header(len(parts)) + b"".join(parts), batch


def dumps_json(obj: Any) -> bytes:
    """Compact JSON bytes (for topics that any client in any language reads)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
