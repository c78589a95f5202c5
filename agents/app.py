"""The Faust application: built by :func:`create_app` from :class:`Settings`.

There is no module-level app: building it reads settings, and Faust's
autodiscovery imports every module, so import stays free of I/O. The CLI (and
the tests) call ``create_app(settings)``, which wires the agents, tables and
web views of every domain module.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import faust
import msgpack
from faust.serializers import codecs
from faust.streams import _current_event
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, EventT

from agents.metrics import Metrics
from agents.offsets import true_end_offsets
from agents.settings import Settings
from streams.topics import partition_for


class MsgpackCodec(codecs.Codec):
    """Compact binary table values (Faust's default JSON is larger and slower)."""

    def _dumps(self, obj: Any) -> bytes:
        return msgpack.packb(obj, use_bin_type=True)

    def _loads(self, s: bytes) -> Any:
        return msgpack.unpackb(s, raw=False, strict_map_key=False)


class Utf8KeyCodec(codecs.Codec):
    """Table keys as plain UTF-8, so murmur2 of the key is what producers compute.

    Faust's default for ``str`` keys is JSON (``"u1"`` with quotes): a producer
    keying by the raw user id would then land on another partition than the
    table's, and table routing would ask the wrong worker.
    """

    def _dumps(self, obj: Any) -> bytes:
        return obj.encode() if isinstance(obj, str) else bytes(obj)

    def _loads(self, s: bytes) -> Any:
        return s.decode()


#: Largest batched changelog record: well under Kafka's default 1 MiB message limit.
MAX_RECORD_BYTES = 512 * 1024

TABLE_CODEC = "tastestream-msgpack"
KEY_CODEC = "tastestream-utf8"
codecs.register(TABLE_CODEC, MsgpackCodec())
codecs.register(KEY_CODEC, Utf8KeyCodec())


@dataclass(slots=True)
class _ChangelogMessage:
    key: bytes
    value: bytes
    partition: int
    offset: int
    tp: TP


@dataclass(slots=True)
class _ChangelogEvent:
    key: str
    value: Any
    message: _ChangelogMessage


class UserTable(faust.Table):
    """A table keyed by user id (or token) with msgpack values and batched changelog records.

    Faust sends one changelog record per key written: measured here, that was
    one record per event and about 90% of a worker's CPU. Our agents write
    each key once per batch, so the table buffers the writes and
    :meth:`flush_changelog` sends **one record per partition per batch**, a
    msgpack map ``{key: value}`` under the key ``batch:<partition>``; recovery
    expands it back into per-key writes. Such records cannot be compacted by
    key, so the changelog topic is created with ``cleanup.policy=delete`` and
    unlimited retention (on Apache Kafka: plan for snapshots if it grows too long).

    The serializers must be right before Faust builds the changelog topic and
    the store (both read them once), so they come from the class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("extra_topic_configs", {"cleanup.policy": "delete", "retention.ms": "-1"})
        super().__init__(*args, **kwargs)
        self._changelog_compacting = False
        self._changelog_deleting = False
        self.pending: dict[int, dict[str, Any]] = {}
        self.owners: dict[str, int] = {}

    def _serializer_from_type(self, typ: Any) -> str:
        return KEY_CODEC if typ is str else TABLE_CODEC

    def on_key_set(self, key: Any, value: Any) -> None:
        partition = self.owners.get(key)
        if partition is None:
            if len(self.owners) > 1_000_000:
                self.owners.clear()
            partition = self.owners[key] = partition_for(key, self.partitions)
        self.pending.setdefault(partition, {})[key] = value
        self._sensor_on_set(self, key, value)

    def on_key_del(self, key: Any) -> None:  # pragma: no cover - nothing deletes keys
        raise NotImplementedError("user tables never delete keys")

    def flush_changelog(self) -> int:
        """Send the buffered writes, one record per partition (split below MAX_RECORD_BYTES).

        Values are encoded once, here, into a msgpack map built by hand; the
        topic's codec reads it back as a plain map. Returns the records sent.
        """
        pending, self.pending = self.pending, {}
        packer = msgpack.Packer(use_bin_type=True)
        sent = 0
        for partition, values in pending.items():
            parts: list[bytes] = []
            size = 0
            for key, value in values.items():
                part = packer.pack(key) + packer.pack(value)
                if parts and size + len(part) > MAX_RECORD_BYTES:
                    self._send_map(partition, packer, parts)
                    sent += 1
                    parts, size = [], 0
                parts.append(part)
                size += len(part)
            self._send_map(partition, packer, parts)
            sent += 1
        return sent

    def _send_map(self, partition: int, packer: msgpack.Packer, parts: list[bytes]) -> None:
        data = packer.pack_map_header(len(parts)) + b"".join(parts)
        self.send_changelog(partition, f"batch:{partition}", data, value_serializer="raw")

    def apply_changelog_batch(self, batch: Any) -> None:
        """Recovery: expand each batched record into the per-key writes it stands for."""
        expanded = []
        for event in batch:
            msg = event.message
            values = event.value
            if not isinstance(values, dict):
                continue
            for key, value in values.items():
                raw = _ChangelogMessage(
                    key.encode(), msgpack.packb(value, use_bin_type=True),
                    msg.partition, msg.offset, msg.tp,
                )  # fmt: skip
                expanded.append(_ChangelogEvent(key, value, raw))
        self.data.apply_changelog_batch(expanded, to_key=self._to_key, to_value=self._to_value)


def bytes_topic(app: faust.App, name: str, partitions: int, internal: bool = False) -> Any:
    """A topic of raw bytes: our codecs (JSON or msgpack, event or batch) do the decoding."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=internal,
    )


@contextlib.contextmanager
def source_event(event: EventT | None) -> Iterator[None]:
    """Make ``event`` Faust's current event while a table is written.

    Agents write tables once per key per batch, after the batch's messages
    were taken; Faust's RocksDB store files each write under the current
    event's partition. The event given is a message of the key's own
    partition (the key arrived on it), so the write lands where it belongs.
    """
    if event is None:
        yield
        return
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def user_table(app: faust.App, name: str, partitions: int) -> UserTable:
    """A user-keyed table with a changelog, registered with the app."""
    # use_partitioner: writes are batched outside any one message's context, and
    # the changelog partition is murmur2 of the UTF-8 key, as for the source topic.
    table = UserTable(
        app,
        name=name,
        default=None,
        key_type=str,
        partitions=partitions,
        use_partitioner=True,
        beacon=app.tables.beacon,
    )
    app.tastestream_tables.append(table)
    return app.tables.add(table)


def flush_changelogs(app: faust.App) -> None:
    """Send every user table's buffered changelog records (end of an agent's batch)."""
    for table in app.tastestream_tables:
        table.flush_changelog()


class FetchedEndOffsetsConsumer(faust_aiokafka.Consumer):
    """Faust's consumer, with end offsets read from fetch responses.

    Table recovery reads each changelog up to these offsets; see
    :mod:`agents.offsets` for why ListOffsets cannot be trusted on Tansu.
    """

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        bootstrap = ",".join(
            f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker_consumer
        )
        ends = await asyncio.to_thread(
            true_end_offsets, bootstrap, [(tp.topic, tp.partition) for tp in partitions]
        )
        return {tp: ends[(tp.topic, tp.partition)] for tp in partitions}


class FetchedEndOffsetsTransport(faust_aiokafka.Transport):
    Consumer = FetchedEndOffsetsConsumer


class TastestreamApp(faust.App):
    """A Faust app whose consumer restores tables completely on any Kafka."""

    settings: Settings

    def _new_transport(self) -> FetchedEndOffsetsTransport:
        return FetchedEndOffsetsTransport(self.conf.broker_consumer, self)


def create_app(settings: Settings) -> TastestreamApp:
    """The configured app with every agent, table and view registered."""
    if not settings.kafka_url:
        raise ValueError("create_app needs settings.kafka_url (start the stack first)")
    worker_id = settings.worker_id or f"{socket.gethostname()}-{settings.web_port}"
    faust_dir = settings.data_path / "faust" / worker_id
    faust_dir.mkdir(parents=True, exist_ok=True)
    app = TastestreamApp(
        settings.topic_prefix,
        broker=settings.kafka_url,
        store=settings.table_store,
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_linger=settings.producer_linger_seconds,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=max(settings.session_timeout_seconds / 4, 0.5),
        web_bind=settings.web_bind or settings.web_host,
        web_port=settings.web_port,
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        datadir=str(faust_dir),
        table_standby_replicas=0,
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
    )
    app.settings = settings
    app.worker_id = worker_id
    app.metrics = Metrics()
    app.tastestream_tables = []

    # Domain modules register what they own; imported here, not at module
    # import, so building one app never drags in another's side effects.
    from agents import ingest, recommend, serving, state, ui, views

    ingest.register(app)
    state.register(app)
    serving.register(app)
    views.register(app)
    recommend.register(app)
    ui.register(app)

    @app.timer(interval=1.0)
    async def flush_table_changelogs() -> None:
        # Agents flush after each batch; this catches writes made elsewhere.
        flush_changelogs(app)

    return app
