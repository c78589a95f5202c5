"""Sessions: the one sessionisation rule shared by the state agents and the trainer.

A user's events belong to one session while they carry the same ``session_id``;
events without one are split by an inactivity gap (default 30 minutes).
Impressions are not interactions and never enter a session's token sequence.

Examples
--------
>>> events = [
...     {"user_id": "u", "item_id": "a", "type": "click", "ts": 0.0},
...     {"user_id": "u", "item_id": "b", "type": "cart", "ts": 60.0},
...     {"user_id": "u", "item_id": "c", "type": "click", "ts": 4000.0},
... ]
>>> [[t for t in s.tokens] for s in sessionise(events)]
[[('a', 'click'), ('b', 'cart')], [('c', 'click')]]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

DEFAULT_GAP_SECONDS = 30 * 60.0
INTERACTION_TYPES = ("view", "click", "favorite", "cart", "purchase")

Token = tuple[str, str]  # (item_id, interaction type)


@dataclass(slots=True)
class Session:
    """One user's session: its interaction tokens in time order."""

    user_id: str
    key: str
    start: float
    end: float
    tokens: list[Token] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)


def same_session(
    prev_ts: float | None,
    prev_session_id: str | None,
    ts: float,
    session_id: str | None,
    gap_seconds: float = DEFAULT_GAP_SECONDS,
) -> bool:
    """Whether an event continues the session of the previous event of its user."""
    if prev_ts is None:
        return False
    if session_id is not None or prev_session_id is not None:
        return session_id == prev_session_id
    return ts - prev_ts <= gap_seconds


def sessionise(
    events: Iterable[dict[str, Any]], gap_seconds: float = DEFAULT_GAP_SECONDS
) -> Iterator[Session]:
    """Split events into per-user sessions of interaction tokens.

    Events are sorted by (user, ts) first, so input order does not matter.
    """
    ordered = sorted(
        (e for e in events if e["type"] in INTERACTION_TYPES),
        key=lambda e: (e["user_id"], e["ts"]),
    )
    current: Session | None = None
    prev_sid: str | None = None
    for event in ordered:
        sid = event.get("session_id")
        user = event["user_id"]
        if (
            current is None
            or current.user_id != user
            or not same_session(current.end, prev_sid, event["ts"], sid, gap_seconds)
        ):
            if current is not None:
                yield current
            key = sid if sid is not None else f"{user}@{event['ts']:.0f}"
            current = Session(user, key, event["ts"], event["ts"])
        current.tokens.append((event["item_id"], event["type"]))
        current.timestamps.append(event["ts"])
        current.end = event["ts"]
        prev_sid = sid
    if current is not None:
        yield current
