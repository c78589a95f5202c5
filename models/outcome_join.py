"""The impression -> outcome join, as a fold over one user-partitioned log.

Every served list is logged as a **list record** (its items are the
impressions); the engagements of its user (click, favourite, cart, purchase,
and client ``impression`` events) follow as **engagement records**, and clock
**ticks** close what is due. All three kinds travel on one internal topic,
partitioned by user, so a partition's records arrive in one order and folding
them again (after a crash) gives the same outcomes: the join is exact by
construction, with a redelivery guard like the user state's
(:class:`~models.user_state.SeenIds`, over list ids and event ids).

Per user (:class:`JoinState`): the pending lists (each waits ``deadline -
served_at`` seconds, 30 min by default, for engagements), the request ids of
recently closed lists (to tell a late engagement from an unknown one), and the
user's totals per experiment run (what the per-variant statistics sum).

Matching: an engagement naming ``context.request_id`` goes to that list (if
the item is in it); one without goes to the latest pending list asked for
(HTTP, topic) that shows the item (last touch), else to the latest Redis copy
that does. A label is set once (a second click changes nothing);
``value`` of purchases adds up as revenue. An engagement after its list closed
is **late** and one naming a request id never seen is **unknown**: both are
counted, neither changes an outcome. A Redis copy (channel ``redis``) is
superseded by the user's next copy of the same surface: the old one closes then.

Per partition (:class:`Aggregates`): per experiment run and variant, the
:class:`~models.experiments.Moments` over users (requests, errors, latency,
impressions, clicks, ..., revenue) and a latency histogram. Only lists asked
for (channels ``http`` and ``topic``) count in them: a Redis copy may never be
shown. Every channel's outcomes are emitted (the ranker's training data).

Examples
--------
>>> users, aggregates, due = {}, Aggregates(), {}
>>> join = OutcomeJoin(users.get, lambda u: users.setdefault(u, JoinState()), aggregates, due)
>>> served = {"kind": "list", "list_id": "L1", "request_id": "r1", "user_id": "u",
...           "surface": "home", "channel": "http", "served_at": 0.0, "deadline": 60.0,
...           "experiment": "x", "run": "1", "variant": "a", "model_version": None,
...           "latency": 0.01, "error": False, "items": [["i1", ["popularity"], 1.0, None],
...                                                      ["i2", ["popularity"], 0.5, None]]}
>>> join.fold(served).kind, join.fold(served).kind
('list', 'duplicate')
>>> join.fold({"kind": "engagement", "event_id": "e1", "user_id": "u", "item_id": "i2",
...            "type": "click", "ts": 5.0}).kind
'matched'
>>> [(o["item_id"], o["y_click"]) for o in join.fold({"kind": "tick", "now": 61.0}).outcomes]
[('i1', 0), ('i2', 1)]
>>> aggregates.moments("x", "1", "a").sums[:5]
[1.0, 0.0, 0.01, 2.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from models.experiments import LATENCY_BUCKETS_MS, QUANTITIES, Moments, Q, latency_bucket
from models.user_state import SeenIds, event_digest

#: Label bits of one impression, by engagement type.
BITS = {"click": 1, "favorite": 2, "cart": 4, "purchase": 8, "impression": 16}
#: Event types the join reads.
JOINED_TYPES = frozenset(BITS)
#: Channels whose lists count in the per-variant statistics (asked for, so shown).
COUNTED_CHANNELS = frozenset({"http", "topic"})
#: Closed lists remembered per user, to call a later engagement "late".
CLOSED_KEPT = 16
#: Items remembered per closed list.
CLOSED_ITEMS_KEPT = 50
#: Experiment runs whose totals a user keeps (the oldest is dropped first).
RUNS_KEPT = 8
#: Experiment runs an aggregate keeps per partition.
AGGREGATE_RUNS_KEPT = 32

_packb = msgpack.Packer(use_bin_type=True).pack
_TAG_USER = "join-user"
_TAG_AGGREGATES = "join-aggregates"

# A pending list, as stored (a list, for compact packing):
_LIST_ID, _REQUEST_ID, _SURFACE, _CHANNEL, _SERVED_AT, _DEADLINE = range(6)
_EXPERIMENT, _RUN, _VARIANT, _MODEL, _ITEMS, _LABELS, _VALUES, _SIZE, _EXTRA = range(6, 15)


def run_key(experiment: str, run: str) -> str:
    return f"{experiment}\x1f{run}"


class JoinState:
    """One user's side of the join (see the module docstring)."""

    __slots__ = ("closed", "pending", "seen", "totals")

    def __init__(self, dedupe_window: int = 1000) -> None:
        self.seen = SeenIds(dedupe_window)
        #: Pending lists, oldest first.
        self.pending: list[list[Any]] = []
        #: Recently closed lists: [request_id, [item ids]], oldest first.
        self.closed: list[list[Any]] = []
        #: run key -> [variant, totals per QUANTITIES].
        self.totals: dict[str, list[Any]] = {}

    def earliest_deadline(self) -> float | None:
        return min((p[_DEADLINE] for p in self.pending), default=None)

    def pending_bytes(self) -> int:
        return sum(p[_SIZE] for p in self.pending)

    def pack(self) -> bytes:
        return _packb([_TAG_USER, self.seen.pack(), self.pending, self.closed, self.totals])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JoinState) and self.pack() == other.pack()

    __hash__ = None  # type: ignore[assignment]


class Aggregates:
    """One partition's per-variant sums (see the module docstring)."""

    __slots__ = ("runs",)

    def __init__(self) -> None:
        #: run key -> {"experiment", "run", "variants": {variant: [moments state, latency]}}
        self.runs: dict[str, dict[str, Any]] = {}

    def _variant(self, experiment: str, run: str, variant: str) -> list[Any]:
        key = run_key(experiment, run)
        entry = self.runs.get(key)
        if entry is None:
            entry = self.runs[key] = {"experiment": experiment, "run": run, "variants": {}}
            while len(self.runs) > AGGREGATE_RUNS_KEPT:
                del self.runs[next(iter(self.runs))]
        found = entry["variants"].get(variant)
        if found is None:
            found = entry["variants"][variant] = [
                Moments().to_state(),
                [0] * (len(LATENCY_BUCKETS_MS) + 1),
            ]
        return found

    def moments(self, experiment: str, run: str, variant: str) -> Moments:
        """The variant's sums (a copy)."""
        return Moments.from_state(self._variant(experiment, run, variant)[0])

    def move(
        self, experiment: str, run: str, variant: str, old: list[float] | None, new: list[float]
    ) -> None:
        slot = self._variant(experiment, run, variant)
        moments = Moments.from_state(slot[0])
        moments.move(old, new)
        slot[0] = moments.to_state()

    def observe_latency(self, experiment: str, run: str, variant: str, seconds: float) -> None:
        self._variant(experiment, run, variant)[1][latency_bucket(seconds * 1000.0)] += 1

    def pack(self) -> bytes:
        return _packb([_TAG_AGGREGATES, self.runs])

    def as_dict(self) -> dict[str, Any]:
        return {"runs": self.runs}


def unpack(data: bytes, dedupe_window: int = 1000) -> JoinState | Aggregates:
    """A :class:`JoinState` or :class:`Aggregates` from its ``pack()``."""
    state = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if state[0] == _TAG_AGGREGATES:
        aggregates = Aggregates()
        aggregates.runs = state[1]
        return aggregates
    if state[0] != _TAG_USER:
        raise ValueError(f"not a join state: {state[0]!r}")
    user = JoinState(dedupe_window)
    user.seen = SeenIds(dedupe_window, state[1])
    user.pending, user.closed, user.totals = state[2], state[3], state[4]
    return user


@dataclass
class Folded:
    """What folding one record did: its ``kind`` of effect and the outcomes it closed."""

    kind: str
    outcomes: list[dict[str, Any]] = field(default_factory=list)


class OutcomeJoin:
    """Folds one partition's records (see the module docstring).

    Parameters
    ----------
    peek
        User id -> that user's :class:`JoinState`, or ``None`` (never creates).
    get_for_update
        User id -> that user's state, created when new; the caller persists it.
    aggregates
        The partition's :class:`Aggregates` (persisted by the caller).
    due
        User id -> earliest pending deadline, for ticks (a view of the states,
        kept up to date here; rebuild it from :meth:`JoinState.earliest_deadline`
        after a recovery).
    max_lists, max_bytes
        Pending lists (and their packed bytes) per user at most: the oldest
        closes early (``overflow``) so no state outgrows a changelog record.
    """

    def __init__(
        self,
        peek: Callable[[str], JoinState | None],
        get_for_update: Callable[[str], JoinState],
        aggregates: Aggregates,
        due: dict[str, float],
        max_lists: int = 100,
        max_bytes: int = 256 * 1024,
    ) -> None:
        self.peek = peek
        self.get_for_update = get_for_update
        self.aggregates = aggregates
        self.due = due
        self.max_lists = max_lists
        self.max_bytes = max_bytes

    def fold(self, record: Mapping[str, Any]) -> Folded:
        """Fold one record; return what it did and the outcomes it closed, in order."""
        kind = record.get("kind")
        if kind == "list":
            return self._list(record)
        if kind == "engagement":
            return self._engagement(record)
        if kind == "tick":
            return Folded("tick", self.close_due(float(record["now"])))
        raise ValueError(f"unknown join record kind {kind!r}")

    # -- lists -------------------------------------------------------------------------
    def _list(self, record: Mapping[str, Any]) -> Folded:
        user_id = record["user_id"]
        state = self.get_for_update(user_id)
        if not state.seen.admit(event_digest("list:" + record["list_id"])):
            return Folded("duplicate")
        items = [list(item) for item in record.get("items") or ()]
        entry = [
            record["list_id"],
            record.get("request_id") or "",
            record.get("surface", ""),
            record.get("channel", ""),
            float(record["served_at"]),
            float(record["deadline"]),
            record.get("experiment"),
            record.get("run"),
            record.get("variant"),
            record.get("model_version"),
            items,
            [0] * len(items),
            [None] * len(items),
            len(_packb(items)) + 64,
            {k: record[k] for k in ("ranker_weights",) if record.get(k) is not None},
        ]
        out: list[dict[str, Any]] = []
        if entry[_CHANNEL] == "redis":
            for old in [
                p
                for p in state.pending
                if p[_CHANNEL] == "redis" and p[_SURFACE] == entry[_SURFACE]
            ]:
                out.extend(self._close(user_id, state, old, entry[_SERVED_AT], "superseded"))
        if entry[_EXPERIMENT] and entry[_CHANNEL] in COUNTED_CHANNELS:
            latency = float(record.get("latency") or 0.0)
            self._count(
                state,
                entry,
                {
                    "requests": 1,
                    "errors": int(bool(record.get("error"))),
                    "latency_seconds": latency,
                    "impressions": len(items),
                },
            )
            self.aggregates.observe_latency(
                entry[_EXPERIMENT], entry[_RUN], entry[_VARIANT], latency
            )
        if items:
            state.pending.append(entry)
            while len(state.pending) > 1 and (
                len(state.pending) > self.max_lists or state.pending_bytes() > self.max_bytes
            ):
                out.extend(
                    self._close(user_id, state, state.pending[0], entry[_SERVED_AT], "overflow")
                )
        self._reindex(user_id, state)
        return Folded("list", out)

    # -- engagements -----------------------------------------------------------------
    def _engagement(self, record: Mapping[str, Any]) -> Folded:
        user_id = record["user_id"]
        etype = record["type"]
        bit = BITS.get(etype)
        if bit is None:
            return Folded("ignored")
        if self.peek(user_id) is None:
            return Folded("unmatched")  # nothing was ever served to this user here
        state = self.get_for_update(user_id)
        if not state.seen.admit(event_digest(record["event_id"])):
            return Folded("duplicate")
        item_id = record["item_id"]
        request_id = record.get("request_id")
        # Without a request id, lists asked for (so shown) before Redis copies (maybe not).
        shown = [p for p in state.pending if p[_CHANNEL] in COUNTED_CHANNELS]
        copies = [p for p in state.pending if p[_CHANNEL] not in COUNTED_CHANNELS]
        for entry in reversed(state.pending) if request_id else [*copies, *shown][::-1]:
            if request_id and entry[_REQUEST_ID] != request_id:
                continue
            position = next((i for i, it in enumerate(entry[_ITEMS]) if it[0] == item_id), None)
            if position is None:
                if request_id:
                    return Folded("unmatched")  # the named list did not show this item
                continue
            self._label(state, entry, position, bit, etype, record.get("value"))
            return Folded("matched")
        if request_id:
            closed = any(c[0] == request_id for c in state.closed)
            return Folded("late" if closed else "unknown_request")
        closed = any(item_id in c[1] for c in state.closed)
        return Folded("late" if closed else "unmatched")

    def _label(
        self, state: JoinState, entry: list[Any], position: int, bit: int, etype: str, value: Any
    ) -> None:
        labels = entry[_LABELS]
        fresh = not labels[position] & bit
        labels[position] |= bit
        changes: dict[str, float] = {}
        if fresh and etype != "impression":
            changes[
                {
                    "click": "clicks",
                    "favorite": "favorites",
                    "cart": "carts",
                    "purchase": "purchases",
                }[etype]
            ] = 1
        if etype == "purchase" and isinstance(value, int | float) and not isinstance(value, bool):
            entry[_VALUES][position] = (entry[_VALUES][position] or 0.0) + float(value)
            changes["revenue"] = float(value)
        if changes and entry[_EXPERIMENT] and entry[_CHANNEL] in COUNTED_CHANNELS:
            self._count(state, entry, changes)

    # -- totals --------------------------------------------------------------------------
    def _count(self, state: JoinState, entry: list[Any], changes: Mapping[str, float]) -> None:
        key = run_key(entry[_EXPERIMENT], entry[_RUN])
        found = state.totals.get(key)
        old = None if found is None else list(found[1])
        new = [0.0] * len(QUANTITIES) if old is None else list(old)
        for name, delta in changes.items():
            new[Q[name]] += delta
        state.totals[key] = [entry[_VARIANT], new]
        while len(state.totals) > RUNS_KEPT:
            del state.totals[next(iter(state.totals))]
        self.aggregates.move(entry[_EXPERIMENT], entry[_RUN], entry[_VARIANT], old, new)

    # -- closing -------------------------------------------------------------------------
    def close_due(self, now: float) -> list[dict[str, Any]]:
        """Close every pending list whose deadline is at or before ``now``; their outcomes."""
        out: list[dict[str, Any]] = []
        for user_id in sorted(u for u, deadline in self.due.items() if deadline <= now):
            state = self.get_for_update(user_id)
            for entry in sorted(
                (p for p in state.pending if p[_DEADLINE] <= now),
                key=lambda p: (p[_DEADLINE], p[_LIST_ID]),
            ):
                out.extend(self._close(user_id, state, entry, now, "window"))
            self._reindex(user_id, state)
        return out

    def _close(
        self, user_id: str, state: JoinState, entry: list[Any], now: float, reason: str
    ) -> list[dict[str, Any]]:
        state.pending.remove(entry)
        state.closed.append(
            [entry[_REQUEST_ID], [item[0] for item in entry[_ITEMS][:CLOSED_ITEMS_KEPT]]]
        )
        del state.closed[:-CLOSED_KEPT]
        return [
            outcome(user_id, entry, position, now, reason) for position in range(len(entry[_ITEMS]))
        ]

    def _reindex(self, user_id: str, state: JoinState) -> None:
        deadline = state.earliest_deadline()
        if deadline is None:
            self.due.pop(user_id, None)
        else:
            self.due[user_id] = deadline


def outcome(
    user_id: str, entry: list[Any], position: int, closed_at: float, reason: str
) -> dict[str, Any]:
    """One labelled impression, as emitted to the outcomes topic and the durable log.

    ``event_id`` (``{list_id}:{position}``) identifies it: a reader drops
    repeats (a worker killed after emitting, before its checkpoint, emits the
    same outcome again, byte for byte).
    """
    item_id, sources, score, features = (list(entry[_ITEMS][position]) + [None] * 4)[:4]
    labels = entry[_LABELS][position]
    value = entry[_VALUES][position]
    return {
        "event_id": f"{entry[_LIST_ID]}:{position}",
        "ts": closed_at,
        "list_id": entry[_LIST_ID],
        "request_id": entry[_REQUEST_ID],
        "user_id": user_id,
        "surface": entry[_SURFACE],
        "channel": entry[_CHANNEL],
        "position": position,
        "item_id": item_id,
        "sources": sources,
        "score": score,
        "features": features,
        "model_version": entry[_MODEL],
        "experiment": entry[_EXPERIMENT],
        "run": entry[_RUN],
        "variant": entry[_VARIANT],
        **entry[_EXTRA],
        "served_at": entry[_SERVED_AT],
        "closed": reason,
        "seen": int(bool(labels & BITS["impression"])),
        "y_click": int(bool(labels & BITS["click"])),
        "y_favorite": int(bool(labels & BITS["favorite"])),
        "y_cart": int(bool(labels & BITS["cart"])),
        "y_purchase": int(bool(labels & BITS["purchase"])),
        "value": value,
    }


def engagement_record(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The join's record of a canonical event, or ``None`` for one the join ignores.

    Views are ignored, and so are ``impression`` events without a
    ``context.request_id``: a client's own slates, not our lists.
    """
    context = event.get("context") or {}
    if event["type"] not in JOINED_TYPES or (
        event["type"] == "impression" and not context.get("request_id")
    ):
        return None
    record: dict[str, Any] = {
        "kind": "engagement",
        "event_id": event["event_id"],
        "user_id": event["user_id"],
        "item_id": event["item_id"],
        "type": event["type"],
        "ts": event["ts"],
    }
    if event.get("value") is not None:
        record["value"] = event["value"]
    if context.get("request_id"):
        record["request_id"] = context["request_id"]
    return record
