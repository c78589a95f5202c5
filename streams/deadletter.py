"""Dead-letter records: rejected input, its original bytes, the reason and the source.

Records are JSON so that any client in any language can read them; the
original bytes travel base64-encoded.

Examples
--------
>>> source = {"topic": "t", "partition": 0, "offset": 7}
>>> rec = dead_letter_record(b"\\xff", "undecodable bytes", source)
>>> rec["reason"], original_bytes(rec)
('undecodable bytes', b'\\xff')
"""

from __future__ import annotations

import base64
import time
from typing import Any


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
    (``original`` then holds that event, re-encoded as the message was encoded;
    ``source`` names the whole message's topic, partition and offset).
    """
    return {
        "reason": reason,
        "field": field,
        "source": source,
        "index": index,
        "original_base64": base64.b64encode(original or b"").decode(),
        "original_size": len(original or b""),
        "received_at": time.time() if received_at is None else received_at,
    }


def original_bytes(record: dict[str, Any]) -> bytes:
    """The rejected input's bytes, as the producer sent them."""
    return base64.b64decode(record["original_base64"])
