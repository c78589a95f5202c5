"""Keyed state per partition with a write-behind changelog and snapshots.

A :class:`ChangelogStore` holds one kind of state (user states, token states)
for the partitions this worker owns:

* **values** are kept packed (``bytes``, one msgpack value per key: compact,
  and ready to write), with a bounded cache of live objects in front for the
  keys being updated and read;
* **write-behind**: an update only marks its key dirty; :meth:`take_changes`
  (called by the :class:`~agents.checkpoint.Checkpointer` once per commit
  interval, before any source offset is committed) packs the dirty keys and
  returns them as changelog records, so a key changed a thousand times in a
  second costs one changelog write;
* **checkpoint groups**: the records of one flush of one partition form a
  group ``[checkpoint id, part, parts, {key: value}]``; recovery applies a
  group only when all its parts are there, so a worker killed halfway through
  a flush leaves no half-applied state (its source offsets were not committed,
  so the input is folded again);
* **snapshots** per partition (``snapshot.msgpack``: every value, plus the
  changelog offset it covers and the changelog's incarnation), written
  atomically off the event loop; recovery loads the latest snapshot and reads
  only the changelog after it;
* **incarnations**: the first record of every changelog partition is a marker
  ``["incarnation", uuid]``. A snapshot whose incarnation is not the
  changelog's (the memory-only broker restarted and lost the topic) is not
  replayed onto it: recovery reports the partition ``lost`` and the caller
  rebuilds it from the durable event log.

Only the worker that owns a partition writes its changelog and snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgpack

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Largest changelog record: well under Kafka's default 1 MB message limit.
MAX_RECORD_BYTES = 512 * 1024
INCARNATION = "incarnation"
SNAPSHOT_NAME = "snapshot.msgpack"


class StoreError(RuntimeError):
    """State that cannot be read back as written (a bug or a corrupted file)."""


@dataclass
class Recovered:
    """What recovering one partition found."""

    partition: int
    values: MutableMapping[str, bytes]
    #: The changelog offset the next record will get (its true end).
    end_offset: int
    incarnation: str | None
    #: True when a snapshot or the event log holds state that the changelog lost.
    lost: bool = False
    from_snapshot: int = 0
    from_changelog: int = 0
    seconds: float = 0.0


@dataclass
class Snapshot:
    offset: int
    incarnation: str
    created: float
    values: dict[str, bytes] = field(repr=False)


def changelog_record(checkpoint: int, part: int, parts: int, entries: list[bytes]) -> bytes:
    """A changelog record: ``[checkpoint, part, parts, {key: value}]`` from packed entries."""
    packer = msgpack.Packer(use_bin_type=True)
    head = packer.pack_array_header(4) + packer.pack(checkpoint) + packer.pack(part)
    head += packer.pack(parts) + packer.pack_map_header(len(entries))
    return head + b"".join(entries)


class RocksValues(MutableMapping[str, bytes]):
    """One partition's packed values in RocksDB (rocksdict): on disk, off the Python heap.

    The database is its own snapshot: ``meta`` (the changelog offset its values
    cover and the changelog's incarnation) is written after each flush's
    changelog records are acknowledged, so recovery replays only what came
    after it. Values may run ahead of ``meta`` (written before the records
    were acknowledged): replaying the changelog from ``meta`` on top is
    harmless, since records hold whole values.

    >>> import tempfile
    >>> values = RocksValues(Path(tempfile.mkdtemp()) / "db")
    >>> values["u1"] = b"state"
    >>> values.get("u1"), "u2" in values, list(values)
    (b'state', False, ['u1'])
    >>> values.set_meta(41, "abc"); values.meta()
    (41, 'abc')
    >>> values.close()
    """

    META = b"\x00meta"

    def __init__(self, path: Path, cache_bytes: int = 32 * 1024 * 1024) -> None:
        from rocksdict import BlockBasedOptions, Cache, Options, Rdict

        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        table = BlockBasedOptions()
        table.set_block_cache(Cache(cache_bytes))
        options.set_block_based_table_factory(table)
        options.set_write_buffer_size(16 * 1024 * 1024)
        self.path = path
        self.db = Rdict(str(path), options=options)

    def __getitem__(self, key: str) -> bytes:
        value = self.db.get(key.encode())
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        value = self.db.get(key.encode())
        return default if value is None else value

    def __setitem__(self, key: str, value: bytes) -> None:
        self.db[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self.db[key.encode()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.db.get(key.encode()) is not None

    def __iter__(self) -> Iterator[str]:
        for key in self.db.keys():  # noqa: SIM118 - an Rdict, not a dict
            if key != self.META:
                yield key.decode()

    def __len__(self) -> int:
        """RocksDB's estimate (exact after a flush; counting would read every key)."""
        return max(self.db.property_int_value("rocksdb.estimate-num-keys") - 1, 0)

    def update_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, value in items:
            batch.put(key.encode(), value)
        self.db.write(batch)

    def meta(self) -> tuple[int, str | None]:
        raw = self.db.get(self.META)
        if raw is None:
            return 0, None
        offset, incarnation = msgpack.unpackb(raw, raw=False)
        return offset, incarnation

    def set_meta(self, offset: int, incarnation: str | None) -> None:
        self.db[self.META] = msgpack.packb([offset, incarnation])

    def clear_all(self) -> None:
        for key in list(self.db.keys()):
            del self.db[key]

    def close(self) -> None:
        self.db.close()


def checkpoint_group(checkpoint: int, values: Iterable[tuple[str, bytes]]) -> list[bytes]:
    """One checkpoint group: ``values`` as changelog records of at most MAX_RECORD_BYTES each.

    Recovery applies the group only when all its parts arrived (:func:`apply_records`).

    >>> records = checkpoint_group(7, [("u1", b"a"), ("u2", b"b")])
    >>> values = {}; _ = apply_records(values, records); values
    {'u1': b'a', 'u2': b'b'}
    """
    packer = msgpack.Packer(use_bin_type=True)
    groups: list[list[bytes]] = []
    entries: list[bytes] = []
    size = 0
    for key, packed in values:
        entry = packer.pack(key) + packer.pack(packed)
        if entries and size + len(entry) > MAX_RECORD_BYTES:
            groups.append(entries)
            entries, size = [], 0
        entries.append(entry)
        size += len(entry)
    if entries:
        groups.append(entries)
    return [changelog_record(checkpoint, i, len(groups), group) for i, group in enumerate(groups)]


def incarnation_record(incarnation: str) -> bytes:
    return msgpack.packb([INCARNATION, incarnation], use_bin_type=True)


def apply_records(
    values: MutableMapping[str, bytes], records: Iterable[bytes], incarnation: str | None = None
) -> str | None:
    """Apply changelog records in order: complete checkpoint groups only.

    Returns the incarnation marker seen (or ``incarnation`` if none was).
    """
    pending: dict[int, dict[int, dict[str, bytes]]] = {}
    for raw in records:
        try:
            record = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except Exception as exc:  # corrupted bytes are not ours to guess at
            raise StoreError(f"undecodable changelog record: {exc}") from None
        if record and record[0] == INCARNATION:
            incarnation = record[1]
            continue
        checkpoint, part, parts, entries = record
        if parts == 1:
            values.update(entries)
            continue
        group = pending.setdefault(checkpoint, {})
        group[part] = entries
        if len(group) == parts:
            for i in range(parts):
                values.update(group[i])
            del pending[checkpoint]
    return incarnation


def write_snapshot(path: Path, snapshot: Snapshot) -> int:
    """Write a snapshot atomically (temp file, fsync, rename); return its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    packer = msgpack.Packer(use_bin_type=True)
    with open(tmp, "wb") as fh:
        fh.write(
            packer.pack(
                {
                    "offset": snapshot.offset,
                    "incarnation": snapshot.incarnation,
                    "created": snapshot.created,
                    "count": len(snapshot.values),
                }
            )
        )
        fh.write(packer.pack_map_header(len(snapshot.values)))
        chunk: list[bytes] = []
        size = 0
        for key, value in snapshot.values.items():
            part = packer.pack(key) + packer.pack(value)
            chunk.append(part)
            size += len(part)
            if size > 1 << 20:
                fh.write(b"".join(chunk))
                chunk, size = [], 0
        fh.write(b"".join(chunk))
        fh.flush()
        os.fsync(fh.fileno())
        written = fh.tell()
    os.replace(tmp, path)
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return written


def read_snapshot(path: Path) -> Snapshot | None:
    """The snapshot at ``path``, or ``None`` if there is none."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with fh:
        unpacker = msgpack.Unpacker(fh, raw=False, strict_map_key=False, max_buffer_size=0)
        try:
            meta = next(unpacker)
            values = next(unpacker)
        except (StopIteration, ValueError) as exc:
            raise StoreError(f"snapshot {path} is unreadable: {exc!r}") from None
    if len(values) != meta.get("count"):
        raise StoreError(f"snapshot {path} holds {len(values)} values, its header says {meta}")
    return Snapshot(meta["offset"], meta["incarnation"], meta["created"], values)


@dataclass
class ChangePlan:
    """One partition's part of a checkpoint: ``(key, live object or packed bytes)``."""

    partition: int
    stored: MutableMapping[str, bytes]
    items: list[tuple[str, Any]]


@dataclass
class PackedChanges:
    """One partition's part of a checkpoint, packed: the new stored values and the records."""

    partition: int
    stored: MutableMapping[str, bytes]
    values: dict[str, bytes]
    records: list[bytes]


def pack_plan(checkpoint: int, plan: list[ChangePlan]) -> list[PackedChanges]:
    """Pack a checkpoint's objects and group them into changelog records (pure CPU work).

    Safe in a worker thread while the state lock is held: packing only reads
    the objects, and nothing folds into them until the lock is released.
    """
    out: list[PackedChanges] = []
    for part in plan:
        packed = [
            (key, value if isinstance(value, bytes) else value.pack()) for key, value in part.items
        ]
        changed = {
            key: data
            for (key, value), (_, data) in zip(part.items, packed, strict=True)
            if not isinstance(value, bytes)
        }
        out.append(
            PackedChanges(
                part.partition, part.stored, changed, checkpoint_group(checkpoint, packed)
            )
        )
    return out


class ChangelogStore(Generic[T]):
    """One kind of keyed state for the owned partitions; see the module docstring.

    Parameters
    ----------
    name
        Names the snapshot directory and log lines (``users``, ``tokens``).
    changelog
        The changelog topic's name.
    new, unpack
        Make a fresh object; rebuild one from its packed bytes. Objects have ``pack()``.
    snapshot_dir
        Snapshots go to ``snapshot_dir/p<partition>/snapshot.msgpack``.
    live_capacity
        Live objects cached (clean ones beyond it are dropped, least recently used first).
    """

    def __init__(
        self,
        name: str,
        changelog: str,
        new: Callable[[], T],
        unpack: Callable[[bytes], T],
        snapshot_dir: Path,
        live_capacity: int = 100_000,
        backend: str = "memory",
    ) -> None:
        if backend not in ("memory", "rocksdb"):
            raise ValueError(f"state store backend must be memory or rocksdb, got {backend!r}")
        self.backend = backend
        self.name = name
        self.changelog = changelog
        self.new = new
        self.unpack = unpack
        self.snapshot_dir = snapshot_dir
        self.live_capacity = live_capacity
        self.values: dict[int, MutableMapping[str, bytes]] = {}
        self.live: OrderedDict[str, T] = OrderedDict()
        self.dirty: dict[int, set[str]] = {}
        #: Keys packed by a checkpoint whose values are not stored yet (see plan_changes).
        self.in_flight: set[str] = set()
        #: Partition -> set once its state is recovered (agents wait on it).
        self.ready: dict[int, asyncio.Event] = {}
        #: Partition -> the changelog offset our next record gets, as far as we know.
        self.end_offsets: dict[int, int] = {}
        self.incarnations: dict[int, str] = {}
        self.checkpoint = int(time.time() * 1000)
        self.snapshot_taken: dict[int, float] = {}
        self.records_since_snapshot: dict[int, int] = {}
        #: Partitions whose every value goes to the changelog at the next flush
        #: (a rebuilt partition starting a new incarnation).
        self.rewrite: set[int] = set()

    def __repr__(self) -> str:
        sizes = {p: len(v) for p, v in sorted(self.values.items())}
        return f"ChangelogStore({self.name!r}, partitions={sizes}, live={len(self.live)})"

    # -- ownership -------------------------------------------------------------
    @property
    def partitions(self) -> set[int]:
        return set(self.values)

    def event(self, partition: int) -> asyncio.Event:
        found = self.ready.get(partition)
        if found is None:
            found = self.ready[partition] = asyncio.Event()
        return found

    def is_ready(self, partition: int) -> bool:
        found = self.ready.get(partition)
        return found is not None and found.is_set()

    async def wait_ready(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            event = self.event(partition)
            if not event.is_set():
                await event.wait()

    def install(self, recovered: Recovered) -> None:
        """Own a partition with the recovered values; readers may use it from now on."""
        p = recovered.partition
        self._evict_partition(p)
        values = recovered.values
        if self.backend == "rocksdb" and not isinstance(values, RocksValues):
            # Rebuilt values (a dict) replace whatever the local database held.
            rocks = self.rocks(p)
            rocks.clear_all()
            rocks.update_many(values.items())
            values = rocks
        old = self.values.get(p)
        if isinstance(old, RocksValues) and old is not values:
            old.close()
        self.values[p] = values
        self.dirty.pop(p, None)
        self.end_offsets[p] = recovered.end_offset
        if recovered.incarnation is not None:
            self.incarnations[p] = recovered.incarnation
        self.event(p).set()

    def drop(self, partition: int) -> None:
        """Forget a partition (revoked): its unflushed changes are redone by the next owner."""
        self.event(partition).clear()
        self._evict_partition(partition)
        values = self.values.pop(partition, None)
        if isinstance(values, RocksValues):
            values.close()  # the database stays on disk: a later assignment reuses it
        self.dirty.pop(partition, None)

    def unready(self, partition: int) -> None:
        self.event(partition).clear()

    def _evict_partition(self, partition: int) -> None:
        keys = self.values.get(partition)
        if keys and self.live:
            for key in [k for k in self.live if k in keys]:
                del self.live[key]
        dirty = self.dirty.get(partition)
        if dirty:
            for key in dirty:
                self.live.pop(key, None)

    # -- reads and writes --------------------------------------------------------
    def get(self, key: str, partition: int) -> T | None:
        """The key's object, or ``None``; never creates one."""
        obj = self.live.get(key)
        if obj is not None:
            self.live.move_to_end(key)
            return obj
        packed = self.values.get(partition, {}).get(key)
        if packed is None:
            return None
        obj = self.unpack(packed)
        self._cache(key, obj)
        return obj

    def get_for_update(self, key: str, partition: int, new: Callable[[], T] | None = None) -> T:
        """The key's object (created by ``new``, default the store's, when new), marked dirty.

        The caller changes it now.
        """
        # Dirty first: a trim while the object is cached must not drop the one about to
        # change (its change would be lost: the checkpoint packs live objects only).
        self.dirty.setdefault(partition, set()).add(key)
        obj = self.get(key, partition)
        if obj is None:
            obj = (new or self.new)()
            self._cache(key, obj)
        return obj

    def _cache(self, key: str, obj: T) -> None:
        live = self.live
        live[key] = obj
        if len(live) > 2 * self.live_capacity:
            # Trim only when there are clean objects to drop: with more keys dirty in one
            # checkpoint than the cache holds, a trim per new key would scan them all.
            kept = sum(len(keys) for keys in self.dirty.values()) + len(self.in_flight)
            if len(live) - kept > self.live_capacity:
                self.trim(keep=key)

    def trim(self, keep: str | None = None) -> None:
        """Drop the least recently used clean objects beyond ``live_capacity`` (never ``keep``)."""
        live = self.live
        excess = len(live) - self.live_capacity
        if excess <= 0:
            return
        kept = set().union(*self.dirty.values()) if self.dirty else set()
        kept |= self.in_flight
        for key in [k for k in live if k not in kept and k != keep][:excess]:
            del live[key]

    def __contains__(self, key_partition: tuple[str, int]) -> bool:
        key, partition = key_partition
        return key in self.live or key in self.values.get(partition, {})

    def keys(self, partition: int) -> Iterator[str]:
        yield from self.values.get(partition, {})
        for key in self.dirty.get(partition, ()):
            if key not in self.values.get(partition, {}):
                yield key

    def current_values(self, partition: int) -> dict[str, bytes]:
        """Every key of ``partition`` packed as it is now (changes not yet flushed included)."""
        out = dict(self.values.get(partition, {}))
        for key in self.dirty.get(partition, ()):
            obj = self.live.get(key)
            if obj is not None:
                out[key] = obj.pack()  # type: ignore[attr-defined]
        return out

    def count(self) -> int:
        return sum(len(v) for v in self.values.values())

    # -- write-behind --------------------------------------------------------------
    def take_changes(self) -> dict[int, list[bytes]]:
        """Pack every dirty key; return the changelog records to send, per partition.

        The packed values become the stored values now (the live objects stay
        cached). Called under the checkpoint lock, so nothing changes meanwhile.
        The three steps (:meth:`plan_changes`, :func:`pack_plan`,
        :meth:`apply_packed`) are apart so that a checkpoint can pack in a
        worker thread while the event loop answers requests.
        """
        plan = self.plan_changes()
        return self.apply_packed(pack_plan(self.checkpoint, plan))

    def plan_changes(self) -> list[ChangePlan]:
        """What the next checkpoint writes, per partition: ``(key, live object or packed bytes)``.

        Starts the checkpoint: the dirty keys are taken (changes from now on go to the next).
        """
        self.checkpoint += 1
        plan: list[ChangePlan] = []
        for partition in set(self.dirty) | self.rewrite:
            stored = self.values.get(partition)
            if stored is None:
                continue
            keys = (
                list(stored) if partition in self.rewrite else list(self.dirty.get(partition, ()))
            )
            items: list[tuple[str, Any]] = []
            for key in keys:
                obj = self.live.get(key)
                # A clean key of a partition being rewritten goes as it is stored.
                items.append((key, obj if obj is not None else stored[key]))
            plan.append(ChangePlan(partition, stored, items))
        self.rewrite = set()
        self.dirty = {}
        # Until apply_packed stores their packed values, these live objects are the only
        # current copies: a trim must keep them.
        self.in_flight = {
            key for part in plan for key, value in part.items if not isinstance(value, bytes)
        }
        return plan

    def apply_packed(self, packed: list[PackedChanges]) -> dict[int, list[bytes]]:
        """Make the packed values the stored ones; the records to send, per partition."""
        out: dict[int, list[bytes]] = {}
        for changes in packed:
            stored = self.values.get(changes.partition)
            if stored is not changes.stored:
                # Reinstalled meanwhile (rebuilt): its new values supersede these.
                continue
            if isinstance(stored, RocksValues):
                stored.update_many(changes.values.items())
            else:
                stored.update(changes.values)
            if changes.records:
                out[changes.partition] = changes.records
        self.in_flight = set()
        self.trim()
        return out

    def sent(self, partition: int, last_offset: int) -> None:
        """The broker acknowledged our records up to ``last_offset`` on ``partition``."""
        self.end_offsets[partition] = max(self.end_offsets.get(partition, 0), last_offset + 1)
        self.records_since_snapshot[partition] = self.records_since_snapshot.get(partition, 0) + 1
        values = self.values.get(partition)
        if isinstance(values, RocksValues):
            values.set_meta(self.end_offsets[partition], self.incarnations.get(partition))

    # -- snapshots -------------------------------------------------------------------
    def snapshot_path(self, partition: int) -> Path:
        return self.snapshot_dir / f"p{partition}" / SNAPSHOT_NAME

    def snapshot_due(self, partition: int, interval: float) -> bool:
        if not self.records_since_snapshot.get(partition):
            return False
        return time.monotonic() - self.snapshot_taken.get(partition, 0.0) >= interval

    def prepare_snapshot(self, partition: int) -> Snapshot | None:
        """A consistent copy (values after the last flush, and the offset it covers)."""
        values = self.values.get(partition)
        incarnation = self.incarnations.get(partition)
        if values is None or incarnation is None or isinstance(values, RocksValues):
            return None  # a RocksDB store is its own snapshot
        self.snapshot_taken[partition] = time.monotonic()
        self.records_since_snapshot[partition] = 0
        return Snapshot(self.end_offsets.get(partition, 0), incarnation, time.time(), dict(values))

    def rocks(self, partition: int) -> RocksValues:
        """The partition's RocksDB values (opened here, kept on disk across runs)."""
        return RocksValues(self.snapshot_dir / f"p{partition}" / "rocks")

    # -- recovery --------------------------------------------------------------------
    def recover(
        self,
        partition: int,
        end_offset: int,
        read_changelog: Callable[[int, int], Iterator[bytes]],
    ) -> Recovered:
        """Load the snapshot and read the changelog after it (blocking: run in a thread).

        ``end_offset`` is the changelog partition's true end; ``read_changelog(start,
        end)`` yields the record values in ``[start, end)``.
        """
        started = time.monotonic()
        incarnation: str | None = None
        if end_offset > 0:
            first = next(iter(read_changelog(0, 1)), None)
            incarnation = apply_records({}, [first]) if first is not None else None
        if self.backend == "rocksdb":
            return self._recover_rocks(partition, end_offset, incarnation, read_changelog, started)
        snapshot = read_snapshot(self.snapshot_path(partition))
        values: dict[str, bytes] = {}
        result = Recovered(partition, values, end_offset, incarnation)
        if snapshot is not None:
            if snapshot.incarnation != incarnation or snapshot.offset > end_offset:
                self._warn_lost(partition, snapshot.offset, snapshot.incarnation, result)
                return result
            values.update(snapshot.values)
            result.from_snapshot = len(snapshot.values)
            start = snapshot.offset
        else:
            start = 0
        if start < end_offset:
            result.from_changelog = end_offset - start
            apply_records(values, read_changelog(start, end_offset), incarnation)
        result.seconds = time.monotonic() - started
        return result

    def _recover_rocks(
        self,
        partition: int,
        end_offset: int,
        incarnation: str | None,
        read_changelog: Callable[[int, int], Iterator[bytes]],
        started: float,
    ) -> Recovered:
        values = self.rocks(partition)
        offset, local = values.meta()
        result = Recovered(partition, values, end_offset, incarnation)
        if local is not None and (local != incarnation or offset > end_offset):
            self._warn_lost(partition, offset, local, result)
            values.close()
            return result
        if local is None:  # a new database: everything comes from the changelog
            values.clear_all()
            offset = 0
        result.from_snapshot = len(values) if offset else 0
        if offset < end_offset:
            result.from_changelog = end_offset - offset
            apply_records(values, read_changelog(offset, end_offset), incarnation)
            values.set_meta(end_offset, incarnation)
        result.seconds = time.monotonic() - started
        return result

    def _warn_lost(
        self, partition: int, offset: int, incarnation: str | None, result: Recovered
    ) -> None:
        log.warning(
            "%s p%d: the saved state (offset %d, %s) is not of this changelog (end %d, %s): "
            "the broker lost it; rebuild from the event log",
            self.name, partition, offset, incarnation, result.end_offset, result.incarnation,
        )  # fmt: skip
        result.lost = True

    @staticmethod
    def new_incarnation() -> str:
        return uuid.uuid4().hex
