"""Streaming state: trajectories, Thompson-sampling bandits and co-occurrence, per event.

The ingest agent passes each batch of newly accepted (deduplicated) events on
to ``<prefix>.accepted-events``, co-partitioned with the events topic by user.
Three agents keep the state the sources compute in nightly batches:

``trajectories``  user-keyed: :class:`~models.trajectory.UserTrajectory` and the
                  user's session window; emits co-occurrence pairs ``p -> q``
                  repartitioned by the source token ``p`` to
                  ``<prefix>.cooccurrence-pairs``
``bandits``       user-keyed: :class:`~models.bandit.UserBandit`
``cooccurrence``  token-keyed: :class:`~models.cooccurrence.TokenNeighbours`

Each works per batch: events are grouped by key, each key's object is updated
once and written back once (one changelog record per key per batch). Live
objects are cached in front of the tables (decoding a table value per event
would cost more than the update); the cache is dropped at every rebalance, so
what a worker serves after a rebalance is what the changelog restored.

Worker-local views, rebuilt from the durable event log at start: item
catalogue (category, seller, availability) and windowed popularity. Users are
spread over workers by hash, so one worker's popularity is an unbiased sample
of the whole stream's.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from agents.app import (
    TastestreamApp,
    bytes_topic,
    flush_changelogs,
    source_event,
    user_table,
)
from models.bandit import UserBandit
from models.catalogue import ItemCatalogue
from models.cooccurrence import SessionWindow, TokenNeighbours
from models.popularity import Popularity
from models.trajectory import UserTrajectory
from streams.codecs import decode_payload, encode_events
from streams.eventlog import read_logs
from streams.topics import partition_for

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Records per internal message (events ~200 B, pairs ~60 B: well under 1 MiB).
INTERNAL_CHUNK = 1000


def token_key(item_id: str, etype: str) -> str:
    """Table key of an interaction token: ``type:item_id`` (types hold no colon)."""
    return f"{etype}:{item_id}"


def split_token_key(key: str) -> tuple[str, str]:
    """``(item_id, type)`` of a :func:`token_key`."""
    etype, _, item_id = key.partition(":")
    return item_id, etype


class SeenEvents:
    """The last ``capacity`` event ids applied to one key, as 8-byte digests.

    At-least-once delivery redelivers what was in flight at a crash; an event
    already applied to a key changes it no more. 128 ids cost 1 KiB per key.
    """

    __slots__ = ("capacity", "order", "seen")

    def __init__(self, capacity: int = 128, packed: bytes = b"") -> None:
        self.capacity = capacity
        self.order = [packed[i : i + 8] for i in range(0, len(packed), 8)]
        self.seen = set(self.order)

    @staticmethod
    def digest(event_id: str) -> bytes:
        return hashlib.blake2b(event_id.encode(), digest_size=8).digest()

    def admit(self, event_id: str) -> bool:
        """True (and remembered) the first time ``event_id`` is offered."""
        digest = self.digest(event_id)
        if digest in self.seen:
            return False
        self.seen.add(digest)
        self.order.append(digest)
        if len(self.order) > self.capacity:
            self.seen.discard(self.order.pop(0))
        return True

    def to_state(self) -> bytes:
        return b"".join(self.order)


class AppliedOffset:
    """The last offset of a key's own partition applied to it (keys never change partition)."""

    __slots__ = ("offset",)

    def __init__(self, offset: int = -1) -> None:
        self.offset = offset

    def admit(self, offset: int) -> bool:
        if offset <= self.offset:
            return False
        self.offset = offset
        return True

    def to_state(self) -> int:
        return self.offset


class CachedTable(Generic[T]):
    """Live objects in front of a Faust table, with a redelivery guard per key.

    The table holds ``[obj.to_state(), guard.to_state()]``; the guard
    (:class:`SeenEvents` or :class:`AppliedOffset`) makes applying the same
    input twice a no-op, so at-least-once delivery counts nothing twice.
    """

    def __init__(
        self,
        table: Any,
        new: Callable[[], T],
        load: Callable[[Any], T],
        guard: Callable[[Any], Any] = SeenEvents,
    ) -> None:
        self.table = table
        self.new = new
        self.load = load
        self.guard = guard
        self.live: dict[str, tuple[T, Any]] = {}

    def entry(self, key: str, create: bool = True) -> tuple[T, Any] | None:
        found = self.live.get(key)
        if found is None:
            stored = self.table.get(key)
            if stored is not None:
                found = (self.load(stored[0]), self.guard(stored[1]))
            elif create:
                found = (self.new(), self.guard())
            else:
                return None
            self.live[key] = found
        return found

    def get(self, key: str) -> T | None:
        found = self.entry(key, create=False)
        return found[0] if found is not None else None

    def put(self, key: str, entry: tuple[T, Any], origin: Any = None) -> None:
        """Store ``entry``; ``origin`` is a Faust event of the key's partition (for RocksDB)."""
        obj, guard = entry
        self.live[key] = entry
        with source_event(origin):
            self.table[key] = [obj.to_state(), guard.to_state()]  # type: ignore[attr-defined]

    def clear(self) -> None:
        self.live.clear()


Origin = Any  # a Faust EventT: the message an item arrived in


def group_by(
    items: Iterable[tuple[Any, Origin]], key: Callable[[Any], str]
) -> dict[str, list[tuple[Any, Origin]]]:
    """(item, origin) pairs grouped by the item's key, in arrival order."""
    grouped: dict[str, list[tuple[Any, Origin]]] = {}
    for pair in items:
        grouped.setdefault(key(pair[0]), []).append(pair)
    return grouped


def _user(event: dict[str, Any]) -> str:
    return event["user_id"]


class StreamingState:
    """Topics, tables, agents and worker-local views of the state domain."""

    def __init__(self, app: TastestreamApp) -> None:
        settings = app.settings
        self.app = app
        self.settings = settings
        prefix = settings.topic_prefix
        partitions = settings.partitions
        self.accepted_topic = bytes_topic(app, f"{prefix}.accepted-events", partitions, True)
        self.pairs_topic = bytes_topic(app, f"{prefix}.cooccurrence-pairs", partitions, True)
        half_life = settings.state_half_life_seconds
        gap = settings.session_gap_seconds
        window = settings.cooccurrence_window

        self.trajectories: CachedTable[UserTrajectory] = CachedTable(
            user_table(app, "trajectories", partitions),
            lambda: UserTrajectory(half_life=half_life),
            lambda s: UserTrajectory.from_state(s, half_life=half_life),
        )
        self.windows: CachedTable[SessionWindow] = CachedTable(
            user_table(app, "session-windows", partitions),
            lambda: SessionWindow(window, gap),
            lambda s: SessionWindow.from_state(s, window, gap),
        )
        self.bandits: CachedTable[UserBandit] = CachedTable(
            user_table(app, "bandits", partitions),
            lambda: UserBandit(half_life=half_life, window=settings.impression_window_seconds),
            lambda s: UserBandit.from_state(
                s, half_life=half_life, window=settings.impression_window_seconds
            ),
        )
        capacity = settings.cooccurrence_capacity
        self.neighbours: CachedTable[TokenNeighbours] = CachedTable(
            user_table(app, "token-neighbours", partitions),
            lambda: TokenNeighbours(capacity, half_life),
            lambda s: TokenNeighbours.from_state(s, capacity, half_life),
            guard=AppliedOffset,
        )
        self.catalogue = ItemCatalogue()
        self.popularity = Popularity(half_life=settings.popularity_half_life_seconds)
        #: Users whose state changed since their recommendations were last written.
        #: Users whose lists are stale, oldest change first (an insertion-ordered
        #: set): the refresh serves them in that order, so none starves.
        self.dirty_users: dict[str, None] = {}
        self.on_user_change: list[Callable[[set[str]], Any]] = []

    # -- helpers ---------------------------------------------------------------
    def clear_caches(self) -> None:
        for cached in (self.trajectories, self.windows, self.bandits, self.neighbours):
            cached.clear()

    async def publish_accepted(self, events: list[dict[str, Any]]) -> None:
        """Hand newly accepted events to the state agents, in messages per partition."""
        by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for event in events:
            by_partition[partition_for(event["user_id"], self.settings.partitions)].append(event)
        for partition, batch in by_partition.items():
            await self.send_chunked(self.accepted_topic, partition, batch)

    @staticmethod
    async def send_chunked(topic: Any, partition: int, records: list[Any]) -> None:
        """Messages of at most INTERNAL_CHUNK records: far below the broker's 1 MiB limit."""
        for start in range(0, len(records), INTERNAL_CHUNK):
            chunk = records[start : start + INTERNAL_CHUNK]
            first = chunk[0]
            key = first["user_id"] if isinstance(first, dict) else first[0]
            await topic.send(key=key.encode(), value=encode_events(chunk), partition=partition)

    def read_views(self) -> tuple[ItemCatalogue, Popularity, int]:
        """Catalogue and popularity of the durable event log (run in a thread at start)."""
        catalogue = ItemCatalogue()
        popularity = Popularity(half_life=self.settings.popularity_half_life_seconds)
        since = time.time() - 4 * self.settings.popularity_half_life_seconds
        root = self.settings.eventlog_path
        n = 0
        if root.exists():
            for event in read_logs(root, since_ts=since):
                catalogue.update(event)
                popularity.update(event)
                n += 1
        return catalogue, popularity, n

    def adopt_views(self, catalogue: ItemCatalogue, popularity: Popularity) -> None:
        """Swap in views read from the log, keeping what arrived meanwhile (it is newer)."""
        for item_id, info in self.catalogue.items.items():
            catalogue.update({"item_id": item_id, "item": info})
        popularity.merge(self.popularity)
        self.catalogue, self.popularity = catalogue, popularity

    # -- the three agents' bodies ---------------------------------------------
    async def update_trajectories(self, items: list[tuple[dict[str, Any], Origin]]) -> None:
        pairs_by_partition: dict[int, list[list[Any]]] = defaultdict(list)
        partitions = self.settings.partitions
        fresh_events: list[dict[str, Any]] = []
        for user, pairs in group_by(items, _user).items():
            entry = self.trajectories.entry(user)
            trajectory, seen = entry
            events = [e for e, _ in pairs if seen.admit(e["event_id"])]
            if not events:
                continue
            origin = pairs[0][1]
            fresh_events += events
            trajectory.update_many(events)
            # The session window rides on the trajectory's guard: same events, same agent.
            window_entry = self.windows.entry(user)
            window = window_entry[0]
            for event in events:
                if event["type"] == "impression":
                    continue
                q_key = token_key(event["item_id"], event["type"])
                ts = event["ts"]
                # An occurrence of q counts toward q's total (the denominator of P(.|q)).
                pairs_by_partition[partition_for(q_key, partitions)].append([q_key, None, 1.0, ts])
                for (p_item, p_type), weight in window.push(
                    event["item_id"], event["type"], ts, event.get("session_id")
                ):
                    p_key = token_key(p_item, p_type)
                    pairs_by_partition[partition_for(p_key, partitions)].append(
                        [p_key, q_key, weight, ts]
                    )
            self.trajectories.put(user, entry, origin)
            self.windows.put(user, window_entry, origin)
        if not fresh_events:
            return
        self.catalogue.update_many(fresh_events)
        self.popularity.update_many(fresh_events)
        for partition, records in pairs_by_partition.items():
            await self.send_chunked(self.pairs_topic, partition, records)
        self.mark_dirty({e["user_id"] for e in fresh_events})

    def update_bandits(self, items: list[tuple[dict[str, Any], Origin]]) -> None:
        changed = set()
        for user, pairs in group_by(items, _user).items():
            entry = self.bandits.entry(user)
            bandit, seen = entry
            events = [e for e, _ in pairs if seen.admit(e["event_id"])]
            if events:
                bandit.update_many(events)
                self.bandits.put(user, entry, pairs[0][1])
                changed.add(user)
        self.mark_dirty(changed)

    def update_cooccurrence(self, items: list[tuple[list[Any], Origin]]) -> None:
        for p_key, pairs in group_by(items, _source_token).items():
            entry = self.neighbours.entry(p_key)
            neighbours, applied = entry
            last = applied.offset
            for (_, q_key, weight, ts), origin in pairs:
                # Records of one message share its offset: skip whole redelivered messages.
                if origin.message.offset <= last:
                    continue
                if q_key is None:
                    neighbours.add_total(weight, ts)
                else:
                    neighbours.add(split_token_key(q_key), weight, ts)
            newest = max(origin.message.offset for _, origin in pairs)
            if applied.admit(newest):
                self.neighbours.put(p_key, entry, pairs[0][1])

    def mark_dirty(self, users: set[str]) -> None:
        for user in users:
            self.dirty_users.setdefault(user, None)


def _source_token(record: list[Any]) -> str:
    return record[0]


def _decode_batches(batch: Iterable[Any]) -> list[tuple[Any, Origin]]:
    """(item, the message it came in) for every item of a batch of internal messages."""
    out: list[tuple[Any, Origin]] = []
    for event in batch:
        # Internal topics carry only what our own agents wrote: msgpack arrays.
        out.extend((item, event) for item in decode_payload(event.message.value).items)
    return out


def register(app: TastestreamApp) -> StreamingState:
    state = StreamingState(app)
    app.streaming_state = state
    settings = app.settings
    size, within = settings.ingest_batch_size, settings.ingest_batch_seconds

    @app.agent(state.accepted_topic, name="trajectories")
    async def trajectories(stream):
        async for batch in stream.take_events(size, within=within):
            await state.update_trajectories(_decode_batches(batch))
            flush_changelogs(app)

    @app.agent(state.accepted_topic, name="bandits")
    async def bandits(stream):
        async for batch in stream.take_events(size, within=within):
            state.update_bandits(_decode_batches(batch))
            flush_changelogs(app)

    @app.agent(state.pairs_topic, name="cooccurrence")
    async def cooccurrence(stream):
        async for batch in stream.take_events(size, within=within):
            state.update_cooccurrence(_decode_batches(batch))
            flush_changelogs(app)

    @app.on_partitions_revoked.connect
    async def drop_caches(app, revoked, **kwargs: Any) -> None:
        state.clear_caches()

    @app.task
    async def warm() -> None:
        catalogue, popularity, n = await asyncio.to_thread(state.read_views)
        state.adopt_views(catalogue, popularity)
        log.info("catalogue and popularity warmed from %d logged events", n)

    return state
