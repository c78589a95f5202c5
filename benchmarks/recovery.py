"""Recovery time of a worker holding N users of state, with and without a snapshot.

Starts the embedded stack (or uses ``--kafka-url`` / ``--redis-url``); for each
store in ``--stores`` (``memory``, ``rocksdb``), on fresh topics:

1. **fill**: one real worker (``python -m agents.cli worker``) with
   ``snapshot_seconds = --snapshot-seconds``; ``--users`` users x
   ``--events-per-user`` click events (items drawn from ``--items``) are produced in
   ``--batch-size``-event batch messages (:class:`agents.producer.EventProducer`,
   round by round: every user's first event, then every user's second ...);
   the run waits until the worker accepted them all, then for a checkpoint
   and (memory store) a snapshot of every partition written after that;
   the worker's RSS is read;
2. **kill -9** the worker; one probe user's click is produced while it is down;
3. **with snapshot**: the worker is started again on the same data directory;
   timed from the spawn: ``/health`` ready (every partition recovered), and the
   probe's click visible in ``GET /users/{probe}/history``; a filled user's
   history is checked (it must hold its events: the state was recovered, not
   started empty);
4. **kill -9** again, a second probe, and the local state is removed (memory:
   the snapshot files; rocksdb: the RocksDB databases, which are that store's
   snapshot): **without snapshot** the restart reads each partition's whole
   changelog; timed the same way.

The recovered counts (``tastestream_recovered_from_snapshot_total``,
``tastestream_recovered_changelog_records_total``) say which path each restart
took. Issue 11: recovery time of a worker holding 1M users.

Run::

    python benchmarks/recovery.py                                  # 1M users, ~15 minutes
    python benchmarks/recovery.py --users 200000 --stores memory   # ~3 minutes
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from freshness import probe_event
from harness import (
    get_json,
    parse_overrides,
    read_metrics,
    start_worker,
    stop_worker,
    wait_for,
    worker_overrides,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BASE_TS = 1_767_225_600.0


def fill_events(users: int, per_user: int, items: int, seed: int) -> Any:
    """``per_user`` rounds of one click per user (``u<n>``), ts rising, seeded items.

    >>> [e["user_id"] + ":" + e["item_id"] for e in fill_events(2, 2, 10, 0)]
    ['u0:i6', 'u1:i6', 'u0:i0', 'u1:i4']
    """
    rng = random.Random(seed)
    for round_ in range(per_user):
        for n in range(users):
            yield {
                "user_id": f"u{n}",
                "item_id": f"i{rng.randrange(items)}",
                "type": "click",
                "ts": BASE_TS + round_ * 600.0 + n * 1e-4,
                "event_id": f"f{round_}-{n}",
            }


def produce(settings: Any, events: Any, batch_size: int) -> tuple[int, float]:
    """Send ``events`` in batch messages; (events acknowledged, seconds)."""
    from agents.producer import EventProducer

    started = time.monotonic()
    producer = EventProducer(settings, batch_size=batch_size)
    sent = producer.send_many(events)
    producer.flush()
    if producer.summary.rejected:
        raise RuntimeError(f"events rejected: {dict(producer.summary.rejected)}")
    return sent, time.monotonic() - started


def restart(overrides: dict[str, str], log: Path, probe: str, timeout: float) -> dict[str, Any]:
    """Start the worker; seconds from spawn to ready and to the probe's history, and counts."""
    spawned = time.monotonic()
    proc, url = start_worker(overrides, log, timeout=timeout)
    ready = time.monotonic() - spawned
    wait_for(
        lambda: get_json(f"{url}/users/{probe}/history", timeout=10)[0] == 200,
        timeout,
        f"the probe {probe} in its history",
        0.05,
    )
    visible = time.monotonic() - spawned
    metrics = read_metrics(url)
    return {
        "proc": proc,
        "url": url,
        "ready": ready,
        "visible": visible,
        "from_snapshot": metrics.get("tastestream_recovered_from_snapshot_total", 0),
        "from_changelog": metrics.get("tastestream_recovered_changelog_records_total", 0),
        "users": metrics.get("tastestream_state_users", 0),
    }


def kill9(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(30)


def remove_local_state(state_root: Path, store: str) -> int:
    """Delete the snapshot files (memory) or RocksDB databases (rocksdb); how many."""
    pattern = "*/p*/snapshot.msgpack" if store == "memory" else "*/p*/rocks"
    found = list(state_root.glob(pattern))
    for path in found:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return len(found)


def run_store(args: argparse.Namespace, stack: Any, work: Path, store: str) -> dict[str, Any]:
    import psutil

    from agents.producer import EventProducer

    overrides, settings = worker_overrides(stack, work, f"rec{store[:3]}")
    overrides.update(
        state_store=store,
        snapshot_seconds=str(args.snapshot_seconds),
        data_dir=str(work / f"data-{store}"),
    )
    overrides.update(parse_overrides(args.set))
    log = work / f"worker-{store}.log"
    state_root = Path(overrides["data_dir"]) / "state" / overrides["topic_prefix"]
    out: dict[str, Any] = {"store": store}
    spawned = time.monotonic()
    proc, url = start_worker(overrides, log)
    out["cold_start"] = time.monotonic() - spawned  # empty state: start-up and group join
    try:
        expected = args.users * args.events_per_user
        events = fill_events(args.users, args.events_per_user, args.items, args.seed)
        fill_started = time.monotonic()
        sent, produce_seconds = produce(settings, events, args.batch_size)
        print(f"[{store}] produced {sent:,} events in {produce_seconds:.0f} s", flush=True)

        def accepted() -> bool:
            metrics = read_metrics(url)
            return metrics.get("tastestream_events_accepted_total", 0) >= expected

        wait_for(accepted, args.fill_timeout, f"{expected:,} events accepted", 2.0)
        out["fill_seconds"] = time.monotonic() - fill_started
        snapshots = read_metrics(url).get("tastestream_snapshots_total", 0)
        if store == "memory" and args.snapshot_seconds > 0:
            wanted = snapshots + 2 * settings.partitions  # users and tokens, every partition

            def snapshotted() -> bool:
                return read_metrics(url).get("tastestream_snapshots_total", 0) >= wanted

            wait_for(snapshotted, 4 * args.snapshot_seconds + 60, "a snapshot of everything", 1)
        time.sleep(3 * float(settings.commit_interval_seconds))  # checkpointed
        out["rss_gib"] = psutil.Process(proc.pid).memory_info().rss / 2**30
        out["state_bytes"] = sum(f.stat().st_size for f in state_root.rglob("*") if f.is_file())
        print(f"[{store}] filled in {out['fill_seconds']:.0f} s; killing", flush=True)
        kill9(proc)

        restarts = []
        for mode in ("with snapshot", "without snapshot"):
            if mode == "without snapshot":
                out["removed"] = remove_local_state(state_root, store)
            probe = probe_event(store, len(restarts), args.items)
            sender = EventProducer(settings, batch_size=1)
            sender.send(probe)
            sender.flush()
            got = restart(overrides, log, probe["user_id"], args.restart_timeout)
            proc = got.pop("proc")
            status, body = get_json(f"{got['url']}/users/u1/history", timeout=30)
            held = len(body["events"]) if status == 200 else 0
            got["filled_user_ok"] = held == args.events_per_user
            got["mode"] = mode
            restarts.append(got)
            print(
                f"[{store}] {mode}: ready {got['ready']:.1f} s, probe visible "
                f"{got['visible']:.1f} s; from snapshot {got['from_snapshot']:,.0f} keys, "
                f"changelog records {got['from_changelog']:,.0f}; u1 holds {held} events",
                flush=True,
            )
            kill9(proc)
        out["restarts"] = restarts
    finally:
        stop_worker(proc)
    return out


def report(args: argparse.Namespace, command: str, results: list[dict[str, Any]]) -> None:
    load = os.getloadavg()
    print()
    print(f"command: {command}")
    print(
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores (shared)"
    )
    print(
        f"{args.users:,} users x {args.events_per_user} events in {args.batch_size}-event "
        f"batches; snapshot_seconds {args.snapshot_seconds:g}"
    )
    print()
    print(
        "| store | restart | ready s | probe visible s | keys from snapshot | "
        "changelog records read | filled user intact | worker RSS before kill | local state |"
    )
    print("|---|---|---:|---:|---:|---:|---|---:|---:|")
    for result in results:
        for got in result["restarts"]:
            print(
                f"| {result['store']} | {got['mode']} | {got['ready']:.1f} | "
                f"{got['visible']:.1f} | {got['from_snapshot']:,.0f} | "
                f"{got['from_changelog']:,.0f} | {'yes' if got['filled_user_ok'] else 'NO'} | "
                f"{result['rss_gib']:.2f} GiB | {result['state_bytes'] / 2**20:,.0f} MiB |"
            )
    for result in results:
        print(
            f"- {result['store']}: first start with empty state ready in "
            f"{result['cold_start']:.1f} s; fill (produce + fold) {result['fill_seconds']:.0f} s; "
            f"removed {result.get('removed', 0)} snapshot files / databases before the "
            "second restart"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--events-per-user", type=int, default=2)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=100, help="events per batch message")
    parser.add_argument("--stores", default="memory,rocksdb", help="comma list: memory,rocksdb")
    parser.add_argument("--snapshot-seconds", type=float, default=10.0)
    parser.add_argument("--fill-timeout", type=float, default=1800.0)
    parser.add_argument("--restart-timeout", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a worker setting (repeatable)")  # fmt: skip
    parser.add_argument("--kafka-url", default="")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args(argv)
    stores = [s for s in args.stores.split(",") if s]
    if not stores or set(stores) - {"memory", "rocksdb"}:
        parser.error("--stores: a comma list of memory, rocksdb")
    command = "python benchmarks/recovery.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    from agents.stack import start_stack

    work = Path(tempfile.mkdtemp(prefix="tastestream-recovery-"))
    print(f"work dir {work}", flush=True)
    stack = start_stack(args.kafka_url, args.redis_url, work / "stack")
    try:
        results = [run_store(args, stack, work, store) for store in stores]
        report(args, command, results)
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
