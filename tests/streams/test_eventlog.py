"""Tests for streams/eventlog.py: format, rotation, index, recovery, locking and a real crash."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from streams.eventlog import EventLog, EventLogError, read_events, read_logs
from streams.events import EVENT_TYPES, validate_event

REPO = Path(__file__).resolve().parents[2]


def make_events(count: int, start: int = 0, t0: float = 1_767_000_000.0) -> list[dict]:
    return [
        validate_event(
            {
                "user_id": f"u{i % 7}",
                "item_id": f"i{i % 13}",
                "type": EVENT_TYPES[i % len(EVENT_TYPES)],
                "ts": t0 + i,
                "event_id": f"e{i}",
                "context": {"surface": "home", "position": i % 5},
                "item": {"category": "shoes", "price": 10.0 + i},
            }
        )
        for i in range(start, start + count)
    ]


def append_in_batches(log: EventLog, events: list[dict], batch: int) -> None:
    for i in range(0, len(events), batch):
        assert log.append(events[i : i + batch]) == len(events[i : i + batch])


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("segment-*.log"))


def record_offsets(path: Path) -> list[int]:
    """Where each record starts, from the documented framing [u32 length][u32 crc][payload]."""
    data, offsets, offset = path.read_bytes(), [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += 8 + struct.unpack_from("<I", data, offset)[0]
    assert offset == len(data)
    return offsets


def test_round_trip_keeps_order_and_content(tmp_path):
    events = make_events(250)
    with EventLog(tmp_path, fsync="always") as log:
        append_in_batches(log, events, 40)
    assert list(read_events(tmp_path)) == events


def test_empty_batch_appends_nothing(tmp_path):
    with EventLog(tmp_path) as log:
        assert log.append([]) == 0
        assert log.segments() == []
    assert list(read_events(tmp_path)) == []


def test_rotation_writes_an_index_per_closed_segment(tmp_path):
    events = make_events(300)
    with EventLog(tmp_path, segment_bytes=4_000, fsync="never") as log:
        append_in_batches(log, events, 10)
        infos = log.segments()
    assert len(infos) >= 4
    assert [s.closed for s in infos] == [True] * (len(infos) - 1) + [False]
    assert [s.path for s in infos] == segment_files(tmp_path)
    seq = 0
    for info in infos:
        part = events[info.first_seq : info.first_seq + info.count]
        assert info.first_seq == seq and info.count > 0
        assert info.first_ts == min(e["ts"] for e in part)
        assert info.last_ts == max(e["ts"] for e in part)
        assert info.bytes == info.path.stat().st_size
        # A record larger than the budget would be alone; these are small, so none overflows.
        assert info.bytes <= 4_000
        seq += info.count
        index = info.path.with_name(info.path.name.replace(".log", ".idx.json"))
        assert index.exists() == info.closed
        if info.closed:
            entry = json.loads(index.read_text())
            assert (entry["count"], entry["first_ts"], entry["last_ts"], entry["bytes"]) == (
                info.count,
                info.first_ts,
                info.last_ts,
                info.bytes,
            )
    assert seq == len(events)
    # A new writer rebuilds the same picture from the indexes and the live segment.
    with EventLog(tmp_path, segment_bytes=4_000) as reopened:
        assert reopened.segments() == infos
        assert reopened.truncated_bytes == 0
    assert list(read_events(tmp_path)) == events


def test_time_range_reads_filter_and_skip_segments_by_index(tmp_path):
    events = make_events(300)
    with EventLog(tmp_path, segment_bytes=4_000, fsync="never") as log:
        append_in_batches(log, events, 10)
        first = log.segments()[0]
    since, until = events[200]["ts"], events[260]["ts"]
    expected = [e for e in events if since <= e["ts"] < until]
    assert list(read_events(tmp_path, since_ts=since, until_ts=until)) == expected
    assert list(read_events(tmp_path, until_ts=events[5]["ts"])) == events[:5]
    # Corrupt the first (closed) segment: a range outside it must not even open it...
    data = bytearray(first.path.read_bytes())
    data[20] ^= 0xFF
    first.path.write_bytes(bytes(data))
    assert list(read_events(tmp_path, since_ts=since, until_ts=until)) == expected
    # ...while a read that covers it reports the corruption.
    with pytest.raises(EventLogError, match=first.path.name):
        list(read_events(tmp_path))


def test_torn_tail_is_cut_on_reopen_and_complete_records_survive(tmp_path):
    events = make_events(100)
    with EventLog(tmp_path, fsync="never") as log:
        append_in_batches(log, events, 10)
    live = segment_files(tmp_path)[-1]
    size = live.stat().st_size
    last_record = record_offsets(live)[-1]
    with open(live, "r+b") as f:  # cut the last record mid-payload, then add junk
        f.truncate(size - 25)
        f.seek(0, os.SEEK_END)
        f.write(b"\x13garbage\x00\xff" * 3)
    torn_size = live.stat().st_size
    # Readers stop quietly at the torn tail with every complete record.
    assert list(read_events(tmp_path)) == events[:90]
    with EventLog(tmp_path) as log:
        cut = log.truncated_bytes
        assert log.segments()[-1].count == 90
        log.append(events[90:])
    assert cut == torn_size - last_record
    assert list(read_events(tmp_path)) == events


def test_zero_filled_tail_is_treated_as_torn(tmp_path):
    events = make_events(20)
    with EventLog(tmp_path, fsync="never") as log:
        append_in_batches(log, events, 5)
    live = segment_files(tmp_path)[-1]
    with open(live, "ab") as f:  # what a power loss can leave on some filesystems
        f.write(b"\x00" * 4096)
    assert list(read_events(tmp_path)) == events
    with EventLog(tmp_path) as log:
        assert log.truncated_bytes == 4096
        assert log.segments()[-1].bytes == live.stat().st_size


def test_crc_corruption_in_closed_segment_names_segment_and_offset(tmp_path):
    events = make_events(200)
    with EventLog(tmp_path, segment_bytes=8_000, fsync="never") as log:
        append_in_batches(log, events, 10)
        second = log.segments()[1]
    assert second.closed
    data = bytearray(second.path.read_bytes())
    offset = record_offsets(second.path)[2]  # the third record of the segment
    data[offset + 8 + 5] ^= 0x01  # a bit in its payload
    second.path.write_bytes(bytes(data))
    reader = read_events(tmp_path)
    with pytest.raises(EventLogError, match=rf"{second.path.name}.*CRC.*offset {offset}"):
        list(reader)


def test_truncated_closed_segment_is_an_error_not_a_tail(tmp_path):
    with EventLog(tmp_path, segment_bytes=2_000, fsync="never") as log:
        append_in_batches(log, make_events(100), 10)
        first = log.segments()[0]
    with open(first.path, "r+b") as f:
        f.truncate(first.bytes - 3)
    with pytest.raises(EventLogError, match=first.path.name):
        list(read_events(tmp_path))


def test_bad_batch_is_refused_whole(tmp_path):
    good = make_events(3)
    with EventLog(tmp_path) as log:
        log.append(good)
        with pytest.raises(EventLogError, match="ts"):
            log.append([make_events(1, start=3)[0], {"event_id": "x"}])
        with pytest.raises(EventLogError):
            log.append([{"event_id": "y", "ts": 1.0, "blob": object()}])
        assert log.segments()[-1].count == 3
    assert list(read_events(tmp_path)) == good


def test_second_writer_is_refused_until_the_first_closes(tmp_path):
    first = EventLog(tmp_path)
    with pytest.raises(EventLogError, match="already open for writing"):
        EventLog(tmp_path)
    first.append(make_events(2))
    first.close()
    with pytest.raises(EventLogError, match="closed"):
        first.append(make_events(1))
    with EventLog(tmp_path) as second:
        second.append(make_events(1, start=2))
    assert [e["event_id"] for e in read_events(tmp_path)] == ["e0", "e1", "e2"]


def test_read_dedupes_redeliveries_within_the_window(tmp_path):
    events = make_events(50)
    with EventLog(tmp_path) as log:
        log.append(events[:30])
        log.append(events[20:50])  # a worker crash redelivered 20..29
        log.append(events[:1])  # an old duplicate, 50 distinct ids later
    assert list(read_events(tmp_path)) == events
    assert [e["event_id"] for e in read_events(tmp_path, dedupe_window=0)].count("e25") == 2
    small_window = [e["event_id"] for e in read_events(tmp_path, dedupe_window=40)]
    assert small_window.count("e25") == 1 and small_window.count("e0") == 2


def test_read_logs_merges_directories_by_ts_and_dedupes_across_them(tmp_path):
    events = make_events(120)
    with (
        EventLog(tmp_path / "w0", segment_bytes=2_500, fsync="never") as w0,
        EventLog(tmp_path / "nested" / "w1", fsync="never") as w1,
    ):
        append_in_batches(w0, [e for e in events if e["ts"] % 3 != 0], 8)
        append_in_batches(w1, [e for e in events if e["ts"] % 3 == 0], 8)
        w1.append(events[10:12])  # a redelivery after a rebalance, now in the other log
    assert list(read_logs(tmp_path)) == events
    since = events[100]["ts"]
    assert list(read_logs(tmp_path, since_ts=since)) == events[100:]
    assert len(list(read_logs(tmp_path, dedupe_window=0))) == len(events) + 2


def test_a_lost_segment_index_is_rebuilt_by_the_next_writer(tmp_path):
    events = make_events(150)
    with EventLog(tmp_path, segment_bytes=4_000, fsync="never") as log:
        append_in_batches(log, events, 10)
        before = log.segments()
    lost = before[1].path.with_name(before[1].path.name.replace(".log", ".idx.json"))
    lost.unlink()
    with EventLog(tmp_path, segment_bytes=4_000) as log:
        assert log.segments() == before
    assert lost.exists()
    assert list(read_events(tmp_path)) == events


def test_writer_starts_a_new_segment_after_a_closed_last_one(tmp_path):
    events = make_events(100)
    with EventLog(tmp_path, segment_bytes=4_000, fsync="never") as log:
        append_in_batches(log, events, 10)
        live = log.segments()[-1]
    # As if the worker died right after closing a segment, before its next append.
    live.path.unlink()
    with EventLog(tmp_path, segment_bytes=4_000) as log:
        log.append(events[live.first_seq :])
        assert log.segments()[-1].path == live.path
    assert list(read_events(tmp_path)) == events


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(EventLogError, match="no such log directory"):
        read_events(tmp_path / "nope")


CHILD = textwrap.dedent(
    """
    import sys
    from streams.eventlog import EventLog

    log = EventLog(sys.argv[1], segment_bytes=30_000, fsync=sys.argv[2], fsync_seconds=0.05)
    batch = 0
    while True:
        events = [
            {"event_id": f"b{batch}-{i}", "ts": 1000.0 + batch + i / 100, "user_id": "u",
             "item_id": f"i{i}", "type": "view", "pad": "x" * (batch % 97)}
            for i in range(40)
        ]
        log.append(events)
        sys.stdout.write(f"b{batch}-39\\n")
        sys.stdout.flush()
        batch += 1
    """
)


@pytest.mark.parametrize("policy", ["interval", "always", "never"])
def test_sigkill_mid_write_loses_no_acknowledged_event(tmp_path, policy):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), policy],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env=env,
        text=True,
    )
    acknowledged = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acknowledged.append(line.strip())
            if len(acknowledged) == 150:
                break
        assert len(acknowledged) == 150, "the writer died before 150 batches"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    # Read through the same buffered stream (communicate() would skip its read-ahead).
    remaining = child.stdout.read()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    acknowledged += remaining.split()
    last_batch = int(acknowledged[-1][1:].split("-")[0])
    assert acknowledged[-1] == f"b{last_batch}-39"

    read = list(read_events(tmp_path, dedupe_window=0))
    ids = [e["event_id"] for e in read]
    assert len(ids) == len(set(ids))
    # Every acknowledged batch is there whole; at most the one in flight follows it.
    assert ids[: (last_batch + 1) * 40] == [
        f"b{b}-{i}" for b in range(last_batch + 1) for i in range(40)
    ]
    assert len(ids) in ((last_batch + 1) * 40, (last_batch + 2) * 40)
    assert len(segment_files(tmp_path)) > 3  # the kill came after several rolls

    with EventLog(tmp_path, segment_bytes=30_000) as reopened:
        assert reopened.truncated_bytes == 0  # one write(2) per record: a kill cannot tear it
        reopened.append([{"event_id": "after", "ts": 5000.0}])
        assert sum(s.count for s in reopened.segments()) == len(ids) + 1
    assert [e["event_id"] for e in read_events(tmp_path)] == [*ids, "after"]
