"""Ingest: one user-keyed agent decodes, validates, dedupes and folds every event in one pass.

The agent reads ``<prefix>.events`` in batches of messages (Faust's cost is
per message, so everything below works per batch, under the state's lock):

1. each message is decoded and every event validated on its own: an
   undecodable message, or one invalid event in a batch, goes to the
   dead-letter topic with the reason and the original bytes, and costs nothing
   else;
2. an event whose user another partition owns (a producer batched several
   users' events under one key) is forwarded to that partition;
3. the others are folded into their users' states by
   :func:`models.user_state.fold_message` (history, redelivery guard,
   trajectory, session window, bandit: one value per user), which also yields
   the co-occurrence pair records, sent to ``<prefix>.cooccurrence-pairs``
   partitioned by token;
4. the events applied are appended to the durable event log, and the
   catalogue, popularity and the stale-list set are updated.

Nothing here commits an offset: the state's checkpoint does, after these
effects are durable (:mod:`agents.state`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from faust.types import EventT

from agents.metrics import REPLAY_EVENTS, Metrics
from agents.state import StateService
from models.user_state import PairRecord, fold_message
from streams.codecs import decode_message, encode_batches
from streams.deadletter import dead_letter_record, dead_letter_value
from streams.eventlog import EventLog
from streams.headers import is_replayed
from streams.topics import partition_for

log = logging.getLogger(__name__)

#: Pair records per internal message (~70 bytes each: far below the message limit).
PAIRS_PER_MESSAGE = 5000
#: Events per forwarded message.
EVENTS_PER_MESSAGE = 1000
#: Users whose owning partition is remembered (murmur2 in pure Python costs ~3 µs).
OWNER_CACHE_SIZE = 1_000_000


def configured_log(settings: Any, directory: Any) -> EventLog:
    """A durable log writer on ``directory`` with the settings' segment size and fsync policy."""
    return EventLog(
        directory,
        segment_bytes=settings.log_segment_bytes,
        fsync=settings.log_fsync,
        fsync_seconds=settings.log_fsync_seconds,
    )


class Ingest:
    """The ingest domain: decode, fold, log, forward, dead-letter (see the module docstring)."""

    def __init__(
        self,
        settings: Any,
        worker_id: str,
        state: StateService,
        metrics: Metrics,
        on_accepted: Callable[[list[Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        #: Called with every batch's accepted events (the impression join's engagements).
        self.on_accepted = on_accepted
        self.state = state
        self.metrics = metrics
        topics = settings.topics
        self.events_topic = topics.events.name
        self.pairs_topic = topics.cooccurrence_pairs.name
        self.dead_letter_topic = topics.dead_letter.name
        self.eventlog_dir = settings.eventlog_path / worker_id
        self._eventlog: EventLog | None = None
        self.owners: dict[str, int] = {}
        self.last_offsets: dict[int, int] = {}

    @property
    def eventlog(self) -> EventLog:
        if self._eventlog is None:
            self._eventlog = configured_log(self.settings, self.eventlog_dir)
        return self._eventlog

    def close(self) -> None:
        if self._eventlog is not None:
            self._eventlog.close()
            self._eventlog = None

    def owner(self, user_id: str) -> int:
        owner = self.owners.get(user_id)
        if owner is None:
            if len(self.owners) > OWNER_CACHE_SIZE:
                self.owners.clear()
            owner = self.owners[user_id] = partition_for(user_id, self.settings.partitions)
        return owner

    async def dead_letter(
        self,
        original: bytes | None,
        reason: str,
        source: dict[str, Any],
        field: str | None,
        index: int | None,
        key: bytes | None,
    ) -> None:
        record = dead_letter_record(original, reason, source, field=field, index=index)
        await self.state.send(self.dead_letter_topic, key, dead_letter_value(record), 0)
        self.metrics.inc("tastestream_events_rejected_total", labels={"field": field or "message"})

    async def process(self, batch: list[EventT]) -> None:
        """One batch of messages from the events topic."""
        wanted = {event.message.partition for event in batch}
        async with self.state.folding(self.state.users, wanted) as owned:
            await self._fold_batch(batch, owned)

    async def _fold_batch(self, batch: list[EventT], owned: set[int]) -> None:
        state = self.state
        users = state.users
        metrics = self.metrics
        now = time.time()
        forwards: dict[int, list[dict[str, Any]]] = defaultdict(list)
        pairs: dict[int, list[PairRecord]] = defaultdict(list)
        accepted_all: list[Any] = []
        changed: dict[str, None] = {}
        n_events = skipped = mine_total = replayed_events = 0
        partitions = self.settings.partitions
        for event in batch:
            msg = event.message
            partition = msg.partition
            if partition not in owned:
                skipped += 1  # revoked while buffered: its new owner folds it
                continue
            self.last_offsets[partition] = msg.offset
            replayed = is_replayed(msg.headers)
            if not replayed:  # latency and freshness describe live traffic only
                metrics.observe("tastestream_ingest_latency_seconds", max(now - msg.timestamp, 0.0))
            source = {"topic": msg.topic, "partition": partition, "offset": msg.offset}
            decoded = decode_message(msg.value)
            n_events += decoded.items
            if replayed:
                replayed_events += decoded.items
            for r in decoded.rejections:
                await self.dead_letter(r.original, r.reason, source, r.field, r.index, msg.key)
            mine = []
            for ev in decoded.events:
                owner = self.owner(ev["user_id"])
                if owner == partition:
                    mine.append(ev)
                else:
                    forwards[owner].append(ev)
            if not mine:
                continue
            mine_total += len(mine)

            def get_user(user_id: str, _p: int = partition) -> Any:
                return users.get_for_update(user_id, _p)

            try:
                accepted, records = fold_message(
                    mine, get_user, partition, msg.offset, changed.setdefault
                )
            except Exception as exc:
                # A bug must not stall the stream nor lose input silently.
                log.exception("folding a message failed; it goes to the dead letter")
                metrics.inc("tastestream_ingest_errors_total")
                await self.dead_letter(
                    msg.value, f"internal error: {exc!r}"[:500], source, None, None, msg.key
                )
                continue
            accepted_all.extend(accepted)
            for record in records:
                token = record[1] if record[0] is None else record[0]
                pairs[partition_for(token, partitions)].append(record)
        metrics.inc("tastestream_messages_in_total", len(batch) - skipped)
        metrics.inc("tastestream_events_in_total", n_events)
        if skipped:
            metrics.inc("tastestream_messages_skipped_total", skipped)
        if replayed_events:
            metrics.inc(REPLAY_EVENTS, replayed_events)
        for owner, events in forwards.items():
            for value, chunk in encode_batches(events, max_events=EVENTS_PER_MESSAGE):
                await state.send(self.events_topic, chunk[0]["user_id"].encode(), value, owner)
            metrics.inc("tastestream_events_forwarded_total", len(events))
        for partition, records in pairs.items():
            # Chunked by bytes too: long ids make records long.
            for value, _ in encode_batches(records, max_events=PAIRS_PER_MESSAGE):
                await state.send(self.pairs_topic, None, value, partition)
        accepted_n = len(accepted_all)
        if accepted_all:
            self.eventlog.append(accepted_all)
            state.catalogue.update_many(accepted_all)
            state.popularity.update_many(accepted_all)
            state.mark_dirty(changed)
            if self.on_accepted is not None:
                await self.on_accepted(accepted_all)
        metrics.inc("tastestream_events_accepted_total", accepted_n)
        if mine_total > accepted_n:
            metrics.inc("tastestream_events_duplicate_total", mine_total - accepted_n)

    def lag(self, consumer: Any) -> dict[int, int]:
        """Messages behind the fetched high watermark, per partition of the events topic."""
        from faust.types import TP

        out = {}
        for partition, offset in self.last_offsets.items():
            try:
                high = consumer.highwater(TP(self.events_topic, partition))
            except Exception:
                continue
            if high is not None:
                out[partition] = max(high - offset - 1, 0)
        return out


def register(app: Any, ingest: Ingest, events_topic: Any) -> None:
    settings = ingest.settings

    @app.agent(events_topic, name="ingest")
    async def ingest_agent(stream: Any) -> None:
        async for batch in stream.take_events(
            settings.ingest_batch_size, within=settings.ingest_batch_seconds
        ):
            await ingest.process(list(batch))

    @app.on_before_shutdown.connect
    async def close_eventlog(app: Any, **kwargs: Any) -> None:
        ingest.close()
