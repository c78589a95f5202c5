"""The durable event log: rotating, append-only msgpack segments with a small index.

The embedded broker keeps nothing across restarts, so this log is what the
trainer reads and what operators replay. One :class:`EventLog` writer owns a
directory; several workers use several directories, and :func:`read_logs`
reads their union.

Layout of one log directory::

    .lock                                       flock held by the one writer (its pid inside)
    segment-00000000000000000000.log            records, append-only
    segment-00000000000000000000.idx.json       that segment's index, written when it closed
    segment-00000000000000041230.log            the live segment (no index yet)

A segment is named after the sequence number of its first event (events are
numbered 0, 1, 2, ... in append order, per directory). Each :meth:`EventLog.append`
writes one record, little-endian::

    [u32 payload length][u32 CRC-32 of payload][payload: msgpack array of event maps]

so a reader can tell a complete record from a torn one. A segment's index
(``first_seq``, ``count``, ``first_ts`` and ``last_ts`` = earliest and latest
``ts`` in it, ``bytes``, ``closed``) is written atomically (temp file, fsync,
``os.replace``, directory fsync) once the segment is full; readers use it to
skip segments outside a time range and to check closed segments.

Durability, the ``fsync`` policy
--------------------------------
Every append is one ``write(2)`` of the whole record straight to the kernel (no
user-space buffer), so when :meth:`~EventLog.append` returns the record
survives a crash or ``SIGKILL`` of the process under every policy. The policy
decides what survives a power loss or kernel crash:

``"always"``
    ``fdatasync`` before ``append`` returns: nothing acknowledged is lost.
``"interval"`` (default)
    a background thread ``fdatasync``-s the live segment at most every
    ``fsync_seconds`` while there is unsynced data: a power loss may lose the
    appends of the last ``fsync_seconds`` (plus one fsync's duration).
``"never"``
    no fsync per append: the OS writes back when it likes (seconds to a minute).

Under every policy a segment is fsynced before its index is written (the index
never describes data the disk may lack), and :meth:`~EventLog.flush` and
:meth:`~EventLog.close` fsync whatever is pending.

Recovery: a crash can leave a torn record at the end of the live segment.
Readers stop cleanly there; a new writer cuts it off (logging how many bytes)
and continues. A bad record in a *closed* segment is corruption, not a crash
artefact: reading it raises :class:`EventLogError` naming the segment and offset.

Delivery is at-least-once: a worker that dies after appending but before its
Kafka offset commit appends the same events again when they are redelivered.
:func:`read_events` and :func:`read_logs` therefore drop repeated ``event_id``-s
within a window of the last ``dedupe_window`` distinct ids (0 turns it off).

Events should be canonical (:func:`streams.events.validate_event`); the log
itself only needs a numeric ``ts`` and, for dedupe, an ``event_id``.

Examples
--------
>>> import tempfile
>>> directory = tempfile.mkdtemp()
>>> with EventLog(directory) as log:
...     log.append([{"event_id": "a", "ts": 10.0}, {"event_id": "b", "ts": 20.0}])
...     log.append([{"event_id": "a", "ts": 10.0}])  # a redelivery
2
1
>>> [e["event_id"] for e in read_events(directory)]
['a', 'b']
>>> [e["event_id"] for e in read_events(directory, since_ts=15.0)]
['b']
"""

from __future__ import annotations

import fcntl
import heapq
import json
import logging
import math
import os
import re
import struct
import threading
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import msgpack

logger = logging.getLogger(__name__)

FSYNC_POLICIES = ("always", "interval", "never")
LOCK_NAME = ".lock"
INDEX_FORMAT = 1

_HEADER = struct.Struct("<II")
_SEGMENT_NAME = re.compile(r"^segment-(\d{20})\.log$")
# fdatasync also flushes the file size, which is all the metadata an append changes.
_datasync = getattr(os, "fdatasync", os.fsync)


class EventLogError(Exception):
    """The log cannot be written or read as asked: locked, corrupt, closed or bad input."""


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One segment file and its index entry.

    ``first_ts`` and ``last_ts`` are the earliest and latest ``ts`` in the
    segment (``None`` while it is empty); ``closed`` is true once the segment is
    full and its index is on disk.
    """

    path: Path
    first_seq: int
    count: int
    first_ts: float | None
    last_ts: float | None
    bytes: int
    closed: bool


class _BadRecord(Exception):
    """A record that does not check; ``offset`` is where it starts."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"{reason} at offset {offset}")
        self.offset = offset
        self.reason = reason


def _segment_path(directory: Path, first_seq: int) -> Path:
    return directory / f"segment-{first_seq:020d}.log"


def _index_path(segment: Path) -> Path:
    return segment.with_name(segment.name[: -len(".log")] + ".idx.json")


def _list_segments(directory: Path) -> list[tuple[int, Path]]:
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            match = _SEGMENT_NAME.match(entry.name)
            if match:
                found.append((int(match.group(1)), Path(entry.path)))
    found.sort()
    return found


def _fsync_directory(directory: Path) -> None:
    # A new or renamed file is durable only once its directory entry is.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_index(info: SegmentInfo) -> None:
    entry = {
        "format": INDEX_FORMAT,
        "segment": info.path.name,
        "first_seq": info.first_seq,
        "count": info.count,
        "first_ts": info.first_ts,
        "last_ts": info.last_ts,
        "bytes": info.bytes,
        "closed": info.closed,
    }
    target = _index_path(info.path)
    temporary = target.with_name("." + target.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(entry, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, target)
    _fsync_directory(target.parent)


def _load_index(segment: Path, first_seq: int) -> SegmentInfo | None:
    """The closed segment's index, or ``None`` if it has none (it is the live one)."""
    path = _index_path(segment)
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
        return SegmentInfo(
            path=segment,
            first_seq=first_seq,
            count=int(entry["count"]),
            first_ts=None if entry["first_ts"] is None else float(entry["first_ts"]),
            last_ts=None if entry["last_ts"] is None else float(entry["last_ts"]),
            bytes=int(entry["bytes"]),
            closed=bool(entry["closed"]),
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise EventLogError(f"{path}: unreadable segment index ({exc})") from None


def _records(path: Path, expected_bytes: int | None = None) -> Iterator[tuple[int, list[Any]]]:
    """Yield ``(end offset, events)`` per record; raise :class:`_BadRecord` at the first bad one.

    Reads up to the file's size when opened, so a reader of the live segment sees
    a snapshot and a record being written right then looks torn (it stops there).
    """
    with open(path, "rb", buffering=1 << 20) as f:
        size = os.fstat(f.fileno()).st_size
        if expected_bytes is not None and size != expected_bytes:
            raise _BadRecord(
                min(size, expected_bytes), f"file is {size} bytes, index says {expected_bytes}"
            )
        offset = 0
        while offset < size:
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                raise _BadRecord(offset, f"partial {len(header)}-byte header")
            length, crc = _HEADER.unpack(header)
            end = offset + _HEADER.size + length
            # Zero-filled tails (possible after a power loss) would pass the CRC of b"".
            if length == 0:
                raise _BadRecord(offset, "zero record length")
            if end > size:
                raise _BadRecord(offset, f"{length}-byte record runs past the end of the file")
            payload = f.read(length)
            if len(payload) != length or zlib.crc32(payload) != crc:
                raise _BadRecord(offset, "CRC mismatch")
            try:
                events = msgpack.unpackb(payload)
            except Exception as exc:  # msgpack raises several unrelated types
                raise _BadRecord(offset, f"undecodable payload ({exc})") from None
            if not isinstance(events, list):
                raise _BadRecord(offset, "payload is not an array of events")
            offset = end
            yield offset, events


def _acquire_lock(directory: Path) -> int:
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise EventLogError(
            f"{directory} is already open for writing (pid {holder}); "
            "use one log directory per writer"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class EventLog:
    """The one writer of a log directory (see the module docstring for format and policies).

    Parameters
    ----------
    directory
        The log directory; created if missing. A second writer on it raises
        :class:`EventLogError` (an ``flock`` on ``.lock``, freed when the holder dies).
    segment_bytes
        The live segment is closed and a new one started before it would
        exceed this size (a record larger than it gets a segment of its own).
    fsync
        ``"always"``, ``"interval"`` or ``"never"``: what survives a power loss.
    fsync_seconds
        For ``"interval"``: the longest time appended data stays unsynced.

    Attributes
    ----------
    truncated_bytes
        Bytes of torn or corrupt tail cut off when this writer opened the log.

    Examples
    --------
    >>> import tempfile
    >>> log = EventLog(tempfile.mkdtemp(), segment_bytes=100, fsync="never")
    >>> for i in range(3):
    ...     _ = log.append([{"event_id": f"e{i}", "ts": float(i), "pad": "x" * 60}])
    >>> [(s.first_seq, s.count, s.closed) for s in log.segments()]
    [(0, 1, True), (1, 1, True), (2, 1, False)]
    >>> log.close()
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        segment_bytes: int = 64 << 20,
        fsync: str = "interval",
        fsync_seconds: float = 1.0,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        if segment_bytes <= _HEADER.size:
            raise ValueError(f"segment_bytes must exceed {_HEADER.size}, got {segment_bytes}")
        if not fsync_seconds > 0:
            raise ValueError(f"fsync_seconds must be positive, got {fsync_seconds}")
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.fsync_seconds = fsync_seconds
        self.truncated_bytes = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._mutex = threading.Lock()
        self._closed_segments: list[SegmentInfo] = []
        self._fd: int | None = None  # the live segment, opened for append
        self._live_path: Path | None = None
        self._live_first_seq = 0
        self._live_count = 0
        self._live_bytes = 0
        self._live_min_ts = math.inf
        self._live_max_ts = -math.inf
        self._dirty = False  # written since the last fsync
        self._failure: str | None = None  # set when the on-disk state became unknown
        self._is_closed = False
        self._lock_fd = _acquire_lock(self.directory)
        try:
            self._recover()
        except BaseException:
            self._release()
            raise
        self._stop_syncing = threading.Event()
        self._syncer: threading.Thread | None = None
        if fsync == "interval":
            self._syncer = threading.Thread(
                target=self._sync_periodically, name=f"eventlog-fsync:{self.directory}", daemon=True
            )
            self._syncer.start()

    # -- opening -------------------------------------------------------------------------

    def _recover(self) -> None:
        """Load closed segments' indexes; repair and reopen the last segment if it is live."""
        segments = _list_segments(self.directory)
        next_seq = 0
        for position, (first_seq, path) in enumerate(segments):
            info = _load_index(path, first_seq)
            if info is None:
                info = self._scan_and_cut(path, first_seq)
                if position == len(segments) - 1:
                    self._reopen_live(info)
                    return
                # A live segment followed by another: its index was lost. Seal it again.
                info = self._seal(info)
            self._closed_segments.append(info)
            next_seq = info.first_seq + info.count
        self._live_first_seq = next_seq

    def _scan_and_cut(self, path: Path, first_seq: int) -> SegmentInfo:
        count, good_bytes = 0, 0
        low, high = math.inf, -math.inf
        try:
            for end, events in _records(path):
                good_bytes = end
                count += len(events)
                for event in events:
                    ts = float(event["ts"])
                    low = min(low, ts)
                    high = max(high, ts)
        except _BadRecord as bad:
            size = path.stat().st_size
            logger.warning(
                "event log %s: cutting %d bytes after offset %d (%s); %d events kept",
                path,
                size - bad.offset,
                bad.offset,
                bad.reason,
                count,
            )
            with open(path, "r+b") as f:
                f.truncate(bad.offset)
                os.fsync(f.fileno())
            self.truncated_bytes += size - bad.offset
            good_bytes = bad.offset
        return SegmentInfo(
            path=path,
            first_seq=first_seq,
            count=count,
            first_ts=low if count else None,
            last_ts=high if count else None,
            bytes=good_bytes,
            closed=False,
        )

    def _reopen_live(self, info: SegmentInfo) -> None:
        self._fd = os.open(info.path, os.O_WRONLY | os.O_APPEND)
        self._live_path = info.path
        self._live_first_seq = info.first_seq
        self._live_count = info.count
        self._live_bytes = info.bytes
        self._live_min_ts = math.inf if info.first_ts is None else info.first_ts
        self._live_max_ts = -math.inf if info.last_ts is None else info.last_ts

    # -- writing -------------------------------------------------------------------------

    def append(self, events: Sequence[dict[str, Any]]) -> int:
        """Append a batch as one record; return how many events were appended.

        When this returns the batch survives a crash of the process, and a power
        loss as the ``fsync`` policy says. The batch is checked (numeric ``ts``,
        encodable) before anything is written: it is appended whole or not at all.
        """
        if not events:
            return 0
        try:
            stamps = [event["ts"] for event in events]
            low, high = float(min(stamps)), float(max(stamps))
            payload = msgpack.packb(events if isinstance(events, list) else list(events))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise EventLogError(f"cannot log this batch: {type(exc).__name__}: {exc}") from None
        if not (math.isfinite(low) and math.isfinite(high)):
            raise EventLogError("cannot log this batch: ts must be finite")
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        with self._mutex:
            self._check_writable()
            if (
                self._fd is not None
                and self._live_bytes > 0
                and self._live_bytes + len(record) > self.segment_bytes
            ):
                self._roll()
            if self._fd is None:
                self._open_live()
            self._write_record(record)
            self._live_count += len(events)
            self._live_min_ts = min(self._live_min_ts, low)
            self._live_max_ts = max(self._live_max_ts, high)
            if self.fsync == "always":
                self._sync_live()
            else:
                self._dirty = True
        return len(events)

    def _write_record(self, record: bytes) -> None:
        assert self._fd is not None
        start = self._live_bytes
        view = memoryview(record)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            # Take back the partial record so the next append does not follow garbage.
            try:
                os.ftruncate(self._fd, start)
            except OSError as undo:
                self._failure = f"{self._live_path}: a failed write could not be undone ({undo})"
            raise EventLogError(f"{self._live_path}: write failed: {exc}") from exc
        self._live_bytes = start + len(record)

    def _sync_live(self) -> None:
        assert self._fd is not None
        try:
            _datasync(self._fd)
        except OSError as exc:
            # After a failed fsync the page cache may have dropped the data: stop here.
            self._failure = f"{self._live_path}: fsync failed ({exc})"
            raise EventLogError(self._failure) from exc
        self._dirty = False

    def _open_live(self) -> None:
        path = _segment_path(self.directory, self._live_first_seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if self.fsync != "never":
            _fsync_directory(self.directory)
        self._live_path = path
        self._live_count = 0
        self._live_bytes = 0
        self._live_min_ts, self._live_max_ts = math.inf, -math.inf

    def _live_info(self, closed: bool = False) -> SegmentInfo:
        assert self._live_path is not None
        return SegmentInfo(
            path=self._live_path,
            first_seq=self._live_first_seq,
            count=self._live_count,
            first_ts=self._live_min_ts if self._live_count else None,
            last_ts=self._live_max_ts if self._live_count else None,
            bytes=self._live_bytes,
            closed=closed,
        )

    def _roll(self) -> None:
        """Close the live segment: fsync it, then write its index."""
        self._sync_live()
        info = self._live_info()
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        self._closed_segments.append(self._seal(info))
        self._live_path = None
        self._live_first_seq = info.first_seq + info.count

    def _seal(self, info: SegmentInfo) -> SegmentInfo:
        sealed = SegmentInfo(
            path=info.path,
            first_seq=info.first_seq,
            count=info.count,
            first_ts=info.first_ts,
            last_ts=info.last_ts,
            bytes=info.bytes,
            closed=True,
        )
        with open(info.path, "rb") as f:  # a no-op after _sync_live, needed after recovery
            os.fsync(f.fileno())
        _write_index(sealed)
        return sealed

    def _check_writable(self) -> None:
        if self._is_closed:
            raise EventLogError(f"{self.directory}: the log is closed")
        if self._failure is not None:
            raise EventLogError(self._failure)

    def _sync_periodically(self) -> None:
        while not self._stop_syncing.wait(self.fsync_seconds):
            with self._mutex:
                if self._fd is None or not self._dirty or self._failure is not None:
                    continue
                # fsync a duplicate outside the mutex so appends go on meanwhile;
                # a roll closing the original fd cannot pull it from under us.
                fd = os.dup(self._fd)
                path = self._live_path
                self._dirty = False
            try:
                _datasync(fd)
            except OSError as exc:
                with self._mutex:
                    self._failure = f"{path}: background fsync failed ({exc})"
                logger.error("event log %s: background fsync failed: %s", path, exc)
            finally:
                os.close(fd)

    def flush(self) -> None:
        """Fsync everything appended so far, whatever the policy."""
        with self._mutex:
            self._check_writable()
            if self._fd is not None and self._dirty:
                self._sync_live()

    def segments(self) -> list[SegmentInfo]:
        """Every segment, oldest first; the last one is live (``closed`` false) once written."""
        with self._mutex:
            live = [self._live_info()] if self._live_path is not None else []
            return [*self._closed_segments, *live]

    def close(self) -> None:
        """Stop the fsync thread, fsync pending data and release the directory.

        The live segment stays open on disk (no index): the next writer continues it.
        """
        if self._is_closed:
            return
        if self._syncer is not None:
            self._stop_syncing.set()
            self._syncer.join()
        with self._mutex:
            try:
                if self._fd is not None and self._dirty and self._failure is None:
                    self._sync_live()
            finally:
                self._is_closed = True
                self._release()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        os.close(self._lock_fd)  # frees the flock

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventLog({str(self.directory)!r}, fsync={self.fsync!r})"


# -- reading -------------------------------------------------------------------------------


def _segment_events(
    path: Path, info: SegmentInfo | None, since_ts: float | None, until_ts: float | None
) -> Iterator[dict[str, Any]]:
    count = 0
    try:
        for _end, events in _records(path, None if info is None else info.bytes):
            count += len(events)
            if since_ts is None and until_ts is None:
                yield from events
                continue
            for event in events:
                ts = event["ts"]
                if (since_ts is None or ts >= since_ts) and (until_ts is None or ts < until_ts):
                    yield event
    except _BadRecord as bad:
        if info is not None:
            raise EventLogError(
                f"corrupt closed segment {path.name} in {path.parent}: {bad}"
            ) from None
        # The live segment's torn tail: its writer is mid-write or crashed there.
        logger.debug("event log %s: stopped at a torn tail (%s)", path, bad)
        return
    if info is not None and count != info.count:
        raise EventLogError(
            f"corrupt closed segment {path.name} in {path.parent}: "
            f"{count} events, index says {info.count}"
        )


def _directory_events(
    directory: Path, since_ts: float | None, until_ts: float | None
) -> Iterator[dict[str, Any]]:
    """Every event of one directory in append order, without dedupe."""
    for first_seq, path in _list_segments(directory):
        info = _load_index(path, first_seq)
        if info is not None and (
            info.count == 0
            or (since_ts is not None and info.last_ts is not None and info.last_ts < since_ts)
            or (until_ts is not None and info.first_ts is not None and info.first_ts >= until_ts)
        ):
            continue  # the index says nothing in range
        try:
            yield from _segment_events(path, info, since_ts, until_ts)
        except FileNotFoundError:
            # Deleted since the listing (retention): say so, never drop it silently.
            logger.warning("event log %s: segment removed while reading; skipped", path)


def _dedupe(events: Iterable[dict[str, Any]], window: int) -> Iterator[dict[str, Any]]:
    # A set for membership plus a FIFO of the same ids to forget the oldest: O(1) each.
    seen: set[Any] = set()
    order: deque[Any] = deque()
    remember, forget, push, pop_oldest = seen.add, seen.discard, order.append, order.popleft
    for event in events:
        event_id = event.get("event_id")
        if event_id is not None:
            if event_id in seen:
                continue
            remember(event_id)
            push(event_id)
            if len(order) > window:
                forget(pop_oldest())
        yield event


def _check_directory(directory: str | Path) -> Path:
    path = Path(directory)
    if not path.is_dir():
        raise EventLogError(f"{path}: no such log directory")
    return path


def read_events(
    directory: str | Path,
    *,
    since_ts: float | None = None,
    until_ts: float | None = None,
    dedupe_window: int = 100_000,
) -> Iterator[dict[str, Any]]:
    """Events of one log directory in append order, ``since_ts <= ts < until_ts``.

    Closed segments whose index shows no event in the range are not opened. A
    repeated ``event_id`` (an at-least-once redelivery) is dropped if its first
    copy is among the last ``dedupe_window`` distinct ids; 0 keeps every copy.
    Safe while a writer appends: the live segment is read up to where it was
    when reached, and a torn record at its end ends it quietly.

    Raises
    ------
    EventLogError
        If the directory is missing or a closed segment is corrupt (the message
        names the segment and the offset).
    """
    path = _check_directory(directory)
    events = _directory_events(path, since_ts, until_ts)
    return _dedupe(events, dedupe_window) if dedupe_window > 0 else events


def log_directories(root: str | Path) -> list[Path]:
    """Every directory under ``root`` (itself included) holding log segments, sorted."""
    found = []
    for current, subdirs, files in os.walk(_check_directory(root)):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        if any(_SEGMENT_NAME.match(name) for name in files):
            found.append(Path(current))
    return sorted(found)


def _event_ts(event: dict[str, Any]) -> float:
    return event["ts"]


def read_logs(
    root: str | Path,
    *,
    since_ts: float | None = None,
    until_ts: float | None = None,
    dedupe_window: int = 100_000,
) -> Iterator[dict[str, Any]]:
    """The union of every log directory under ``root``, merged by ``ts``.

    Each log is read as :func:`read_events` does; the logs are merged with
    :func:`heapq.merge` (lazily, one open segment per log), so the union is in
    ``ts`` order as far as each log is (a late event keeps its place in its own
    log). Dedupe applies to the union: a redelivery may land in another worker's log.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for worker, stamps in (("w0", [1.0, 4.0]), ("w1", [2.0, 3.0])):
    ...     with EventLog(root / worker, fsync="never") as log:
    ...         _ = log.append([{"event_id": f"{worker}-{t}", "ts": t} for t in stamps])
    >>> [e["ts"] for e in read_logs(root)]
    [1.0, 2.0, 3.0, 4.0]
    """
    streams = [_directory_events(d, since_ts, until_ts) for d in log_directories(root)]
    merged = heapq.merge(*streams, key=_event_ts)
    return _dedupe(merged, dedupe_window) if dedupe_window > 0 else merged


__all__ = [
    "FSYNC_POLICIES",
    "EventLog",
    "EventLogError",
    "SegmentInfo",
    "log_directories",
    "read_events",
    "read_logs",
]
