"""Per-user history with idempotent appends: the ingest agent's table values.

A value is a plain dict (msgpack-able, so it rides the table changelog)::

    {"events": [newest, ..., oldest],   # at most history_length canonical events
     "seen":   [oldest id, ..., newest id]}  # the last dedupe_window event ids

Redelivered events (at-least-once delivery after a crash or a rebalance) carry
an event id already in ``seen`` and change nothing.

Examples
--------
>>> state = new_history()
>>> e = {"event_id": "e1", "user_id": "u", "item_id": "i", "type": "view", "ts": 1.0}
>>> [x["event_id"] for x in append_events(state, [e, e], history_length=200, dedupe_window=10)]
['e1']
>>> append_events(state, [e], history_length=200, dedupe_window=10)
[]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def new_history() -> dict[str, list]:
    return {"events": [], "seen": []}


def append_events(
    state: dict[str, list],
    events: Iterable[dict[str, Any]],
    *,
    history_length: int,
    dedupe_window: int,
) -> list[dict[str, Any]]:
    """Add ``events`` (oldest first) to ``state`` in place; return the ones that were new."""
    seen = state["seen"]
    recent = set(seen)
    fresh: list[dict[str, Any]] = []
    for event in events:
        event_id = event["event_id"]
        if event_id in recent:
            continue
        recent.add(event_id)
        seen.append(event_id)
        fresh.append(event)
    if not fresh:
        return fresh
    if len(seen) > dedupe_window:
        del seen[: len(seen) - dedupe_window]
    # Newest first; events in one batch can arrive out of ts order, keep arrival order.
    history = state["events"]
    history[:0] = reversed(fresh)
    if len(history) > history_length:
        del history[history_length:]
    return fresh
