"""Ingest: decode, validate, dedupe, keep per-user history, append to the event log.

The agent reads ``<prefix>.events`` in batches of messages (Faust's
per-message cost is the limit, so everything below works per batch):

1. each message is decoded (one event, or an array of events) and every event
   validated; undecodable messages and invalid events go to the dead-letter
   topic with the reason, the original bytes and the source offset;
2. an event on a partition that does not own its user (a producer batched
   several users' events under one key) is forwarded to the right partition;
3. events are grouped by user and appended to the user's history once per
   batch; event ids already seen are dropped (at-least-once redelivery);
4. the new events are appended to the durable event log.

A poison message costs one dead-letter record and nothing else.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from faust.types import EventT

from agents.app import TastestreamApp, bytes_topic, source_event, user_table
from agents.history import append_events, new_history
from agents.metrics import Metrics
from streams.codecs import DecodeError, decode_payload, dumps_json, encode_event, encode_events
from streams.deadletter import dead_letter_record
from streams.eventlog import EventLog
from streams.events import EventError, validate_event
from streams.topics import partition_for

log = logging.getLogger(__name__)


@dataclass
class Rejection:
    reason: str
    field: str | None
    original: bytes | None
    index: int | None
    key: bytes | None


@dataclass
class DecodedBatch:
    """What one batch of messages turned into, before any state is touched."""

    by_user: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: user -> index of a message (of the user's own partition) their events came in
    origin: dict[str, int] = field(default_factory=dict)
    forwards: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    rejections: list[tuple[Rejection, dict[str, Any]]] = field(default_factory=list)
    items: int = 0


def _reencode(raw: Any, encoding: str) -> bytes:
    try:
        return dumps_json(raw) if encoding == "json" else encode_event(raw)
    except (TypeError, ValueError):
        return repr(raw).encode()


#: Users whose owning partition is remembered (murmur2 in pure Python costs ~3 µs).
OWNER_CACHE_SIZE = 1_000_000


def decode_messages(
    messages: list[tuple[bytes | None, bytes | None, dict[str, Any], int]],
    partitions: int,
    owners: dict[str, int] | None = None,
) -> DecodedBatch:
    """Decode and validate (key, value, source, partition) messages; pure, no I/O.

    ``owners`` caches user -> owning partition across calls.
    """
    owners = {} if owners is None else owners
    if len(owners) > OWNER_CACHE_SIZE:
        owners.clear()
    out = DecodedBatch()
    for position, (key, value, source, partition) in enumerate(messages):
        try:
            payload = decode_payload(value)
        except DecodeError as exc:
            out.rejections.append((Rejection(str(exc), None, value, None, key), source))
            continue
        out.items += len(payload.items)
        for index, raw in enumerate(payload.items):
            try:
                event = validate_event(raw)
            except EventError as exc:
                original = _reencode(raw, payload.encoding) if payload.is_batch else value
                in_batch = index if payload.is_batch else None
                out.rejections.append(
                    (Rejection(str(exc), exc.field, original, in_batch, key), source)
                )
                continue
            user = event["user_id"]
            owner = owners.get(user)
            if owner is None:
                owner = owners[user] = partition_for(user, partitions)
            if owner != partition:
                out.forwards[owner].append(event)
            else:
                out.by_user.setdefault(user, []).append(event)
                out.origin[user] = position
    return out


class Ingest:
    """The ingest domain of one app: topics, table, event log and metrics."""

    def __init__(self, app: TastestreamApp) -> None:
        settings = app.settings
        self.app = app
        self.settings = settings
        topics = settings.topics
        self.metrics: Metrics = app.metrics
        self.events_topic = bytes_topic(app, topics.events.name, settings.partitions)
        self.dead_letter_topic = bytes_topic(app, topics.dead_letter.name, 1)
        self.history = user_table(app, "user-history", settings.partitions)
        self._eventlog: EventLog | None = None
        self.last_offsets: dict[int, int] = {}
        self.owners: dict[str, int] = {}

    @property
    def eventlog(self) -> EventLog:
        if self._eventlog is None:
            directory = self.settings.eventlog_path / self.app.worker_id
            self._eventlog = EventLog(
                directory,
                segment_bytes=self.settings.log_segment_bytes,
                fsync=self.settings.log_fsync,
                fsync_seconds=self.settings.log_fsync_seconds,
            )
        return self._eventlog

    def close(self) -> None:
        if self._eventlog is not None:
            self._eventlog.close()
            self._eventlog = None

    async def dead_letter(self, rejection: Rejection, source: dict[str, Any]) -> None:
        record = dead_letter_record(
            rejection.original,
            rejection.reason,
            source,
            field=rejection.field,
            index=rejection.index,
        )
        await self.dead_letter_topic.send(key=rejection.key, value=dumps_json(record))
        self.metrics.inc(
            "tastestream_events_rejected_total", labels={"field": rejection.field or "message"}
        )

    async def dead_letter_batch(self, batch: list[EventT], reason: str) -> None:
        for event in batch:
            msg = event.message
            source = {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}
            await self.dead_letter(Rejection(reason, None, msg.value, None, msg.key), source)

    async def process(self, batch: list[EventT]) -> None:
        """One batch of messages from the events topic."""
        now = time.time()
        messages = []
        for event in batch:
            msg = event.message
            source = {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}
            messages.append((msg.key, msg.value, source, msg.partition))
            self.last_offsets[msg.partition] = msg.offset
            self.metrics.observe("tastestream_ingest_latency_seconds", max(now - msg.timestamp, 0))
        decoded = decode_messages(messages, self.settings.partitions, self.owners)
        self.metrics.inc("tastestream_messages_in_total", len(batch))
        self.metrics.inc("tastestream_events_in_total", decoded.items)
        for rejection, source in decoded.rejections:
            await self.dead_letter(rejection, source)
        for partition, events in decoded.forwards.items():
            await self.events_topic.send(
                key=events[0]["user_id"].encode(), value=encode_events(events), partition=partition
            )
            self.metrics.inc("tastestream_events_forwarded_total", len(events))
        origins = {user: batch[i] for user, i in decoded.origin.items()}
        accepted = self.apply(decoded.by_user, origins)
        self.history.flush_changelog()
        if accepted:
            self.eventlog.append(accepted)
            await self.app.streaming_state.publish_accepted(accepted)

    def apply(
        self, by_user: dict[str, list[dict[str, Any]]], origins: dict[str, EventT] | None = None
    ) -> list[dict[str, Any]]:
        """Append each user's events to their history once; return the new ones."""
        settings = self.settings
        history = self.history
        accepted: list[dict[str, Any]] = []
        duplicates = 0
        for user, events in by_user.items():
            state = history.get(user) or new_history()
            fresh = append_events(
                state,
                events,
                history_length=settings.history_length,
                dedupe_window=settings.dedupe_window,
            )
            duplicates += len(events) - len(fresh)
            if fresh:
                with source_event(origins.get(user) if origins else None):
                    history[user] = state
                accepted.extend(fresh)
        self.metrics.inc("tastestream_events_accepted_total", len(accepted))
        if duplicates:
            self.metrics.inc("tastestream_events_duplicate_total", duplicates)
        return accepted

    def lag(self) -> dict[int, int]:
        """Messages behind the fetched high watermark, per partition of the events topic."""
        from faust.types import TP

        out = {}
        consumer = self.app.consumer
        for partition, offset in self.last_offsets.items():
            try:
                high = consumer.highwater(TP(self.events_topic.get_topic_name(), partition))
            except Exception:
                continue
            if high is not None:
                out[partition] = max(high - offset - 1, 0)
        return out


def register(app: TastestreamApp) -> Ingest:
    ingest = Ingest(app)
    app.ingest = ingest
    settings = app.settings

    @app.agent(ingest.events_topic, name="ingest")
    async def ingest_agent(stream):
        async for batch in stream.take_events(
            settings.ingest_batch_size, within=settings.ingest_batch_seconds
        ):
            events = list(batch)
            try:
                await ingest.process(events)
            except Exception as exc:
                # A bug must not stall the stream, and must not lose input
                # silently: every message of the batch goes to the dead letter.
                log.exception("ingest batch failed; its messages go to the dead letter")
                app.metrics.inc("tastestream_ingest_errors_total")
                await ingest.dead_letter_batch(events, f"internal error: {exc!r}")

    @app.on_before_shutdown.connect
    async def close_eventlog(app, **kwargs: Any) -> None:
        ingest.close()

    return ingest
