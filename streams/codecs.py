"""Bytes on the wire <-> events: JSON or msgpack, one event or a batch per message.

A message holds either one event (a JSON object / msgpack map) or a batch (a
JSON array / msgpack array of them). The format is detected from the first
byte, so one topic can carry both from different producers.

Examples
--------
>>> payload = decode_payload(b'[{"a": 1}, {"a": 2}]')
>>> payload.items, payload.is_batch
([{'a': 1}, {'a': 2}], True)
>>> decode_payload(encode_events([{"a": 1}])).items
[{'a': 1}]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgpack

from streams.events import MAX_EVENT_BYTES

#: A batch message may be this large at most (each event in it is still capped).
MAX_BATCH_BYTES = 16 * 1024 * 1024
#: A batch message may hold this many events at most.
MAX_BATCH_EVENTS = 10_000


class DecodeError(ValueError):
    """The bytes of a message are not a JSON or msgpack event or batch."""


@dataclass(slots=True)
class Payload:
    """A decoded message: the raw items and whether it was a batch."""

    items: list[Any]
    is_batch: bool
    encoding: str


_WHITESPACE = b" \t\r\n"


def _first_byte(data: bytes) -> int | None:
    for byte in data[:64]:
        if byte not in _WHITESPACE:
            return byte
    return None


def decode_payload(data: bytes | bytearray | memoryview | None) -> Payload:
    """Decode one message's bytes; raise :class:`DecodeError` with the reason."""
    if data is None:
        raise DecodeError("message has no value (null)")
    data = bytes(data)
    if not data:
        raise DecodeError("message value is empty")
    if len(data) > MAX_BATCH_BYTES:
        raise DecodeError(f"message is {len(data)} bytes; the limit is {MAX_BATCH_BYTES}")
    first = _first_byte(data)
    if first in (0x7B, 0x5B):  # '{' or '[': JSON
        encoding = "json"
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise DecodeError(f"invalid JSON: {exc}") from None
    else:
        encoding = "msgpack"
        try:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as exc:
            raise DecodeError(f"undecodable bytes (neither JSON nor msgpack): {exc}") from None
    if isinstance(obj, list):
        if len(obj) > MAX_BATCH_EVENTS:
            raise DecodeError(f"batch holds {len(obj)} events; the limit is {MAX_BATCH_EVENTS}")
        return Payload(obj, True, encoding)
    if len(data) > MAX_EVENT_BYTES:
        raise DecodeError(f"event is {len(data)} bytes; the limit is {MAX_EVENT_BYTES}")
    return Payload([obj], False, encoding)


def encode_events(events: list[dict[str, Any]]) -> bytes:
    """One msgpack batch message: how high-rate producers should send."""
    return msgpack.packb(events, use_bin_type=True)


def encode_event(event: dict[str, Any]) -> bytes:
    """One event as a msgpack map."""
    return msgpack.packb(event, use_bin_type=True)


def dumps_json(obj: Any) -> bytes:
    """Compact JSON bytes (for topics that any client in any language reads)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
