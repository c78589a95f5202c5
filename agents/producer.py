"""Sending events to the events topic the way high-rate producers should.

Events are validated, grouped by the partition that owns their user (murmur2,
as Faust partitions), and sent as msgpack batch messages with an explicit
partition, so the ingest agent pays its per-message cost once per batch. A
batch message holds at most ``batch_size`` events and never more than the
contract's limits (:mod:`streams.limits`: MAX_BATCH_EVENTS events,
MAX_MESSAGE_BYTES bytes); the producer is configured to send such messages
(``message.max.bytes`` = KAFKA_MAX_MESSAGE_BYTES).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import msgpack
from confluent_kafka import Producer

from agents.settings import Settings
from streams.codecs import decode_message, encode_batches
from streams.events import EventError, validate_event
from streams.limits import KAFKA_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES
from streams.topics import partition_for


@dataclass
class SendSummary:
    """What a producer sent: events sent, rejected by field, and failed delivery."""

    sent: int = 0
    rejected: Counter = field(default_factory=Counter)
    failed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "rejected": dict(self.rejected), "failed": self.failed}


def kafka_producer(settings: Settings, **overrides: Any) -> Producer:
    """A confluent-kafka producer for the events topic: Faust's partitioner, contract sizes."""
    config = {
        **settings.kafka_client_config(),
        "linger.ms": int(settings.producer_linger_seconds * 1000),
        "partitioner": "murmur2_random",  # what Faust and the Java client use
        "compression.type": "none",
        # librdkafka's default (1,000,000) is below a full-size message plus its framing.
        "message.max.bytes": KAFKA_MAX_MESSAGE_BYTES,
        "log_level": 3,
    }
    config.update(overrides)
    return Producer(config)


class EventProducer:
    """Validate, batch per partition, send; count what was sent and rejected.

    ``delivered`` keeps, per partition, the ``(offset, events)`` of every
    message the broker acknowledged: what ``produce --wait`` waits for
    (:mod:`agents.applied`).
    """

    def __init__(
        self,
        settings: Settings,
        batch_size: int = 100,
        producer: Producer | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ):
        self.settings = settings
        #: Kafka headers of every message (``replay --to-topic`` marks its messages).
        self.headers = headers
        self.topic = settings.topics.events.name
        self.batch_size = batch_size
        if producer is None:
            from agents.provision import broker_topics

            broker_topics(settings)  # one clear error now rather than a timeout at flush
        self.producer = producer or kafka_producer(settings)
        self.summary = SendSummary()
        self.delivered: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self._pending: dict[int, list[dict[str, Any]]] = defaultdict(list)

    def _delivered(self, err: Any, msg: Any, count: int) -> None:
        if err is not None:
            self.summary.failed += count
            self.summary.sent -= count
        elif msg is not None and msg.offset() is not None and msg.offset() >= 0:
            self.delivered[msg.partition()].append((msg.offset(), count))

    def delivered_ends(self) -> dict[int, int]:
        """Per partition, the offset after the last acknowledged message."""
        return {p: max(offset for offset, _ in sent) + 1 for p, sent in self.delivered.items()}

    def send(self, raw: Any) -> bool:
        """Queue one event (validated here); False and counted when rejected."""
        try:
            event = validate_event(raw)
        except EventError as exc:
            self.summary.rejected[exc.field or "event"] += 1
            return False
        partition = partition_for(event["user_id"], self.settings.partitions)
        pending = self._pending[partition]
        pending.append(event)
        if len(pending) >= self.batch_size:
            self._send_batch(partition)
        return True

    def send_many(self, events: Iterable[Any]) -> int:
        return sum(self.send(e) for e in events)

    def _send_batch(self, partition: int) -> None:
        for value, events in encode_batches(self._pending.pop(partition)):
            self._produce(partition, value, events)

    def _produce(self, partition: int, value: bytes, events: list[dict[str, Any]]) -> None:
        count = len(events)

        def delivered(err: Any, msg: Any) -> None:
            self._delivered(err, msg, count)

        while True:
            try:
                self.producer.produce(
                    self.topic,
                    value=value,
                    key=events[0]["user_id"].encode(),
                    partition=partition,
                    on_delivery=delivered,
                    headers=self.headers,
                )
                break
            except BufferError:
                self.producer.poll(0.1)  # local queue full: let deliveries drain
        self.summary.sent += count
        self.producer.poll(0)

    def flush(self, timeout: float = 30.0) -> SendSummary:
        for partition in list(self._pending):
            self._send_batch(partition)
        remaining = self.producer.flush(timeout)
        if remaining:
            raise TimeoutError(f"{remaining} messages not delivered within {timeout:.0f} s")
        return self.summary


class EventFileError(ValueError):
    """The input is neither JSON lines nor a msgpack stream of events."""


def read_event_file(
    stream: IO[bytes], rejected: Counter, name: str = "the input"
) -> Iterator[dict[str, Any]]:
    """Canonical events from JSONL, or from a stream of msgpack maps/arrays.

    Each JSONL line is a message (one event or a batch, at most MAX_MESSAGE_BYTES)
    decoded by :func:`streams.codecs.decode_message`: what it rejects is counted in
    ``rejected`` under the field at fault, ``"event"`` for an event as a whole, or
    ``"undecodable line"``. A msgpack stream that stops decoding after some
    events counts as ``"undecodable msgpack"`` and ends the reading (msgpack
    cannot resynchronise); a file that is neither from its first bytes (a binary
    file, a zip) raises :class:`EventFileError` naming ``name``.

    Examples
    --------
    >>> import io
    >>> good = b'{"user_id": "u", "item_id": "i", "type": "view", "ts": 1}\\n'
    >>> [e["item_id"] for e in read_event_file(io.BufferedReader(io.BytesIO(good)), Counter())]
    ['i']
    >>> zipped = io.BufferedReader(io.BytesIO(b"PK\\x03..."))
    >>> list(read_event_file(zipped, Counter(), "a.zip"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    agents.producer.EventFileError: a.zip is neither JSON lines nor msgpack events (it starts...
    """
    head = stream.peek(1)[:1] if hasattr(stream, "peek") else b""
    if head and head[0] not in b"{[ \t\r\n":
        yield from _read_msgpack_stream(stream, rejected, name, head)
        return
    for line in stream:
        if not line.strip():
            continue
        decoded = decode_message(line)
        for rejection in decoded.rejections:
            if rejection.kind == "message":
                rejected["undecodable line"] += 1
            else:
                rejected[rejection.field or "event"] += 1
        yield from decoded.events


def _read_msgpack_stream(
    stream: IO[bytes], rejected: Counter, name: str, head: bytes
) -> Iterator[dict[str, Any]]:
    unpacker = msgpack.Unpacker(
        stream, raw=False, strict_map_key=False, max_buffer_size=MAX_MESSAGE_BYTES
    )
    count = 0
    not_events = EventFileError(
        f"{name} is neither JSON lines nor msgpack events (it starts with {head!r})"
    )
    try:
        for obj in unpacker:
            if not isinstance(obj, dict | list):
                if count == 0:
                    raise not_events
                rejected["undecodable msgpack"] += 1
                continue
            count += 1
            for raw in obj if isinstance(obj, list) else [obj]:
                try:
                    yield validate_event(raw)
                except EventError as exc:
                    rejected[exc.field or "event"] += 1
    except EventFileError:
        raise
    except Exception:  # malformed, too deep, too big, or an unhashable map key
        if count == 0:
            raise not_events from None
        rejected["undecodable msgpack"] += 1


def write_jsonl(events: Iterable[dict[str, Any]], out: IO[str]) -> int:
    n = 0
    for event in events:
        out.write(json.dumps(event, separators=(",", ":")) + "\n")
        n += 1
    return n
