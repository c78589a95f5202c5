"""Kafka record headers of the events topic that the workers read.

``tastestream replay --to-topic`` marks every message it sends with
``tastestream-replay: 1``: a worker folds it like any other message (the same
state, the same redelivery guards) but counts it apart
(``tastestream_replayed_events_total``) and leaves it out of ingest latency and
freshness, which describe live traffic. Producers of live traffic send no
such header.

Examples
--------
>>> is_replayed([(REPLAY_HEADER, b"1")]), is_replayed(None), is_replayed([("other", b"1")])
(True, False, False)
>>> is_replayed({REPLAY_HEADER: b"1"})
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: The header a replayed message carries, with the value :data:`REPLAY_VALUE`.
REPLAY_HEADER = "tastestream-replay"
REPLAY_VALUE = b"1"
#: The headers ``replay --to-topic`` sends, as producers take them.
REPLAY_HEADERS: list[tuple[str, bytes]] = [(REPLAY_HEADER, REPLAY_VALUE)]


def is_replayed(headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> bool:
    """Whether a message's headers (a list of pairs or a mapping) mark it as replayed."""
    if not headers:
        return False
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return any(name == REPLAY_HEADER and value == REPLAY_VALUE for name, value in pairs)
