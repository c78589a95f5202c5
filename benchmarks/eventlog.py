"""Append and read rates of the durable event log, per fsync policy.

Appends canonical events (validated once, outside the timing) in batches, then
reads them back with and without dedupe, and reads a union of logs.

Usage::

    python benchmarks/eventlog.py [--events 500000] [--batch 100] [--always-seconds 3]
"""

from __future__ import annotations

import argparse
import random
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.eventlog import EventLog, read_events, read_logs
from streams.events import EVENT_TYPES, validate_event


def make_events(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    start = 1_767_000_000.0
    events = []
    for i in range(count):
        events.append(
            validate_event(
                {
                    "user_id": f"user-{rng.randrange(50_000)}",
                    "item_id": f"item-{rng.randrange(200_000)}",
                    "type": rng.choice(EVENT_TYPES),
                    "ts": start + i * 0.01,
                    "event_id": f"ev-{i:012d}",
                    "session_id": f"s-{rng.randrange(100_000)}",
                    "context": {"surface": "home", "request_id": f"r-{i}", "position": i % 20},
                    "item": {"category": f"c{rng.randrange(300)}", "price": 9.99},
                }
            )
        )
    return events


def bench_append(
    directory: Path, events: list[dict], batch: int, policy: str, max_seconds: float
) -> tuple[int, float, int]:
    """(events appended, seconds, bytes on disk); stops early after ``max_seconds``."""
    batches = [events[i : i + batch] for i in range(0, len(events), batch)]
    appended = 0
    with EventLog(directory, fsync=policy, segment_bytes=16 << 20) as log:
        started = time.perf_counter()
        for chunk in batches:
            appended += log.append(chunk)
            if time.perf_counter() - started > max_seconds:
                break
        log.flush()
        elapsed = time.perf_counter() - started
        size = sum(s.bytes for s in log.segments())
    return appended, elapsed, size


def bench_read(directory: Path, **kwargs) -> tuple[int, float]:
    started = time.perf_counter()
    count = sum(1 for _ in read_events(directory, **kwargs))
    return count, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--always-seconds",
        type=float,
        default=3.0,
        help="stop the fsync=always run after this long",
    )
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))

    events = make_events(args.events)
    root = Path(tempfile.mkdtemp(prefix="eventlog-bench-", dir=args.dir))
    try:
        print(f"{args.events} events, batches of {args.batch}, under {root}")
        print(f"{'policy':<9} {'appended':>9} {'events/s':>11} {'MB/s':>7} {'bytes/event':>12}")
        for policy in ("never", "interval", "always"):
            limit = args.always_seconds if policy == "always" else float("inf")
            n, seconds, size = bench_append(root / policy, events, args.batch, policy, limit)
            print(
                f"{policy:<9} {n:>9} {n / seconds:>11,.0f} {size / seconds / 1e6:>7.1f}"
                f" {size / n:>12.1f}"
            )
        directory = root / "interval"
        for label, kwargs in (
            ("read, dedupe 100k", {}),
            ("read, no dedupe", {"dedupe_window": 0}),
            ("read, last 10% by ts", {"since_ts": events[-len(events) // 10]["ts"]}),
        ):
            n, seconds = bench_read(directory, **kwargs)
            print(f"{label:<22} {n:>9} events {n / seconds:>11,.0f} events/s")
        # The three logs hold the same event ids: dedupe keeps one copy of each.
        started = time.perf_counter()
        n = sum(1 for _ in read_logs(root))
        seconds = time.perf_counter() - started
        total = 2 * args.events + sum(1 for _ in read_events(root / "always", dedupe_window=0))
        print(
            f"{'read_logs, 3 logs':<22} {total:>9} events {total / seconds:>11,.0f} events/s"
            f" ({n} after dedupe)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
