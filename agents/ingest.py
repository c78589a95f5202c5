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
from typing import Any

import msgpack
from faust.types import EventT

from agents.metrics import Metrics
from agents.state import StateService
from models.user_state import PairRecord, fold_message
from streams.codecs import DecodeError, decode_payload, dumps_json, encode_event, encode_events
from streams.deadletter import dead_letter_record
from streams.eventlog import EventLog
from streams.events import EventError, validate_event
from streams.topics import partition_for

log = logging.getLogger(__name__)

#: Pair records per internal message (~70 bytes each: far below the message limit).
PAIRS_PER_MESSAGE = 5000
#: Events per forwarded message.
EVENTS_PER_MESSAGE = 1000
#: Users whose owning partition is remembered (murmur2 in pure Python costs ~3 µs).
OWNER_CACHE_SIZE = 1_000_000

_packb = msgpack.Packer(use_bin_type=True).pack


def decode_message(
    value: bytes | None,
) -> tuple[list[dict[str, Any]], list[tuple[int | None, str | None, str, bytes | None]]]:
    """One message's valid events and its rejections ``(index, field, reason, original)``.

    Never raises: anything that goes wrong with one event rejects that event,
    with the whole message only when the message itself cannot be read.
    """
    try:
        payload = decode_payload(value)
    except DecodeError as exc:
        return [], [(None, None, str(exc), value)]
    except Exception as exc:  # RecursionError, TypeError, ... on hostile bytes
        return [], [(None, None, f"undecodable message: {exc!r}"[:500], value)]
    events: list[dict[str, Any]] = []
    rejections: list[tuple[int | None, str | None, str, bytes | None]] = []
    for index, raw in enumerate(payload.items):
        try:
            events.append(validate_event(raw))
        except EventError as exc:
            rejections.append(
                (_index(payload, index), exc.field, str(exc), _original(raw, payload, value))
            )
        except Exception as exc:
            reason = f"invalid event: {exc!r}"[:500]
            rejections.append(
                (_index(payload, index), None, reason, _original(raw, payload, value))
            )
    return events, rejections


def _index(payload: Any, index: int) -> int | None:
    return index if payload.is_batch else None


def _original(raw: Any, payload: Any, value: bytes | None) -> bytes | None:
    if not payload.is_batch:
        return value
    try:
        return dumps_json(raw) if payload.encoding == "json" else encode_event(raw)
    except Exception:
        return repr(raw).encode("utf-8", "backslashreplace")[:65536]


class Ingest:
    """The ingest domain: decode, fold, log, forward, dead-letter (see the module docstring)."""

    def __init__(
        self, settings: Any, worker_id: str, state: StateService, metrics: Metrics
    ) -> None:
        self.settings = settings
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
            settings = self.settings
            self._eventlog = EventLog(
                self.eventlog_dir,
                segment_bytes=settings.log_segment_bytes,
                fsync=settings.log_fsync,
                fsync_seconds=settings.log_fsync_seconds,
            )
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
        await self.state.send(self.dead_letter_topic, key, dumps_json(record), 0)
        self.metrics.inc("tastestream_events_rejected_total", labels={"field": field or "message"})

    async def process(self, batch: list[EventT]) -> None:
        """One batch of messages from the events topic."""
        state = self.state
        users = state.users
        wanted = {event.message.partition for event in batch}
        while True:
            owned = await state.wait_owned(users, wanted)
            async with state.lock:
                # Re-check under the lock: a rebalance may have moved partitions meanwhile.
                if not state.settled.is_set():
                    continue
                owned = wanted & state.assigned["users"]
                if not all(users.is_ready(p) for p in owned):
                    continue
                await self._fold_batch(batch, owned)
                return

    async def _fold_batch(self, batch: list[EventT], owned: set[int]) -> None:
        state = self.state
        users = state.users
        metrics = self.metrics
        now = time.time()
        forwards: dict[int, list[dict[str, Any]]] = defaultdict(list)
        pairs: dict[int, list[PairRecord]] = defaultdict(list)
        accepted_all: list[Any] = []
        changed: dict[str, None] = {}
        n_events = skipped = mine_total = 0
        partitions = self.settings.partitions
        for event in batch:
            msg = event.message
            partition = msg.partition
            if partition not in owned:
                skipped += 1  # revoked while buffered: its new owner folds it
                continue
            self.last_offsets[partition] = msg.offset
            metrics.observe("tastestream_ingest_latency_seconds", max(now - msg.timestamp, 0.0))
            source = {"topic": msg.topic, "partition": partition, "offset": msg.offset}
            events, rejections = decode_message(msg.value)
            n_events += len(events) + len(rejections)
            for index, field, reason, original in rejections:
                await self.dead_letter(original, reason, source, field, index, msg.key)
            mine = []
            for ev in events:
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
        for owner, events in forwards.items():
            for start in range(0, len(events), EVENTS_PER_MESSAGE):
                chunk = events[start : start + EVENTS_PER_MESSAGE]
                key = chunk[0]["user_id"].encode("utf-8", "surrogatepass")
                await state.send(self.events_topic, key, encode_events(chunk), owner)
            metrics.inc("tastestream_events_forwarded_total", len(events))
        for partition, records in pairs.items():
            for start in range(0, len(records), PAIRS_PER_MESSAGE):
                chunk = records[start : start + PAIRS_PER_MESSAGE]
                await state.send(self.pairs_topic, None, _packb(chunk), partition)
        accepted_n = len(accepted_all)
        if accepted_all:
            self.eventlog.append(accepted_all)
            state.catalogue.update_many(accepted_all)
            state.popularity.update_many(accepted_all)
            state.mark_dirty(changed)
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
