"""Dead-letter records: rejected input, its original bytes, the reason and the source.

Records are JSON so that any client in any language can read them; the
original bytes travel base64-encoded. A record always fits any producer's
limit: past :data:`~streams.limits.DEAD_LETTER_ORIGINAL_BYTES` it keeps a
prefix of the original with the original's length and SHA-256, and every text
in it is cut to a bound, so its JSON is at most
:data:`~streams.limits.MAX_DEAD_LETTER_BYTES` whatever was sent.

Examples
--------
>>> source = {"topic": "t", "partition": 0, "offset": 7}
>>> rec = dead_letter_record(b"\\xff", "undecodable bytes", source)
>>> rec["reason"], original_bytes(rec), rec["original_truncated"]
('undecodable bytes', b'\\xff', False)
>>> big = dead_letter_record(b"x" * 5_000_000, "message is too big", source)
>>> big["original_size"], len(original_bytes(big)), big["original_truncated"]
(5000000, 131072, True)
>>> len(dead_letter_value(big)) <= MAX_DEAD_LETTER_BYTES
True
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

from streams.limits import DEAD_LETTER_ORIGINAL_BYTES, MAX_DEAD_LETTER_BYTES, MAX_REASON_CHARS

__all__ = ["MAX_DEAD_LETTER_BYTES", "dead_letter_record", "dead_letter_value", "original_bytes"]

#: Longest text kept for a field name or a source's string values.
_MAX_LABEL_CHARS = 256


def _bounded(text: Any, limit: int) -> Any:
    if not isinstance(text, str):
        return text
    return text if len(text) <= limit else text[:limit] + "…"


def dead_letter_record(
    original: bytes | None,
    reason: str,
    source: dict[str, Any],
    *,
    field: str | None = None,
    index: int | None = None,
    received_at: float | None = None,
) -> dict[str, Any]:
    """The record written to ``<prefix>.dead-letter`` for one rejected input.

    ``index`` is the position of the rejected event inside a batch message
    (``original`` then holds that event's bytes as sent; ``source`` names the
    whole message's topic, partition and offset). ``original_sha256`` and
    ``original_size`` describe the whole original even when only its first
    DEAD_LETTER_ORIGINAL_BYTES are kept (``original_truncated``).
    """
    original = original or b""
    kept = original[:DEAD_LETTER_ORIGINAL_BYTES]
    return {
        "reason": _bounded(str(reason), MAX_REASON_CHARS),
        "field": _bounded(field, _MAX_LABEL_CHARS),
        "source": {key: _bounded(value, _MAX_LABEL_CHARS) for key, value in source.items()},
        "index": index,
        "original_base64": base64.b64encode(kept).decode(),
        "original_size": len(original),
        "original_truncated": len(kept) < len(original),
        "original_sha256": hashlib.sha256(original).hexdigest(),
        "received_at": time.time() if received_at is None else received_at,
    }


def dead_letter_value(record: dict[str, Any]) -> bytes:
    """The record as the message value: JSON, ASCII-only so that any text encodes.

    At most MAX_DEAD_LETTER_BYTES for a record of :func:`dead_letter_record`.
    """
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode()


def original_bytes(record: dict[str, Any]) -> bytes:
    """The rejected input's bytes as the producer sent them (the first
    DEAD_LETTER_ORIGINAL_BYTES when ``original_truncated``)."""
    return base64.b64decode(record["original_base64"])
