"""Two workers on one broker: a rebalance in the middle of a steady stream.

Starts the embedded stack (or uses ``--kafka-url`` / ``--redis-url``) and one
real ``python -m agents.cli worker`` (A); then, for ``--duration`` seconds:

* **traffic**: simulated events at a steady ``--rate`` events/s in
  ``--batch-size``-event batch messages (:class:`freshness.Traffic`), every
  event kept;
* **probes**: every ``--probe-every`` seconds a never-seen user clicks one item
  (its own producer, the shipped linger); the probe is *fresh* when
  ``GET /users/{u}/history`` on worker A answers 200 (A routes the request to
  the owner, itself or B), polled every ``--poll-ms``;
* **join**: at ``--join-at`` seconds a second worker (B, same topics, its own
  data directory and port) starts: the group rebalances from 4 + 0 to 2 + 2
  partitions; with ``--leave-at`` B stops (SIGTERM) later and A takes all back.

Every second each worker's ``tastestream_events_accepted_total`` is read from
``GET /metrics`` (a stopped worker keeps its last reading): the aggregate
events/s over time, and how long after B's start its first event was applied.
Freshness p50 / p99 / max per phase (probes by the time they were sent):
before the join, the ``--window`` seconds after it (the rebalance), after it,
and the same around the leave. Probes never seen within ``--probe-timeout``
count as never.

Exactness at the end: once the traffic stopped and the workers' counters went
quiet, the live checksums of both workers (``GET /internal/state/checksum``,
each its own partitions) are compared with the checksums of the same fold run
in this process over every event sent (:func:`agents.checksums.replica_checksums`):
user states must match exactly (every event applied once), token stores must
hold the same keys (their sketches depend on the cross-user order of pairs:
see :func:`compare`), and the accepted counters must sum to the distinct
events sent (B's is read just before it leaves).

Run::

    python benchmarks/rebalance.py                    # ~1.5 minutes
    python benchmarks/rebalance.py --rate 2000 --duration 60 --join-at 20 --leave-at 40
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freshness import Traffic, backoff, percentiles, probe_event
from harness import (
    parse_overrides,
    read_metrics,
    start_worker,
    stop_worker,
    wait_for,
    worker_overrides,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ACCEPTED = "tastestream_events_accepted_total"
DUPLICATE = "tastestream_events_duplicate_total"


@dataclass
class Worker:
    """One worker process and what was read from it."""

    name: str
    overrides: dict[str, str]
    proc: Any = None
    url: str = ""
    spawned: float = 0.0  # monotonic, when the process was started
    ready: float = 0.0  # monotonic, when /health said ready
    first_applied: float = 0.0  # monotonic, first reading with an accepted event
    stopped: float = 0.0
    last: dict[str, float] = field(default_factory=dict)  # last /metrics reading


@dataclass
class Probe:
    user: str
    sent: float  # monotonic
    fresh: float | None = None  # seconds after sending


def start(worker: Worker, work: Path) -> None:
    worker.spawned = time.monotonic()
    worker.proc, worker.url = start_worker(worker.overrides, work / f"worker-{worker.name}.log")
    worker.ready = time.monotonic()


class Sampler(threading.Thread):
    """Reads every running worker's counters once a second: ``(t, {worker: accepted})``."""

    def __init__(self, workers: list[Worker], origin: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.workers, self.origin = workers, origin
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.stop_event = threading.Event()

    def read(self) -> None:
        for worker in self.workers:
            if worker.url and not worker.stopped:
                metrics = read_metrics(worker.url, timeout=2.0)
                if metrics:
                    worker.last = metrics
                    if metrics.get(ACCEPTED, 0) > 0 and not worker.first_applied:
                        worker.first_applied = time.monotonic()
        now = time.monotonic() - self.origin
        self.samples.append((now, {w.name: w.last.get(ACCEPTED, 0.0) for w in self.workers}))

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            self.read()


async def run_probes(args: argparse.Namespace, settings: Any, url: str) -> list[Probe]:
    import aiohttp

    from agents.producer import kafka_producer
    from streams.codecs import encode_events
    from streams.topics import partition_for

    producer = kafka_producer(settings)
    topic = settings.topics.events.name
    poll, timeout = args.poll_ms / 1000, args.probe_timeout
    probes: list[Probe] = []

    async def follow(session: Any, probe: Probe) -> None:
        while True:
            try:
                async with session.get(f"{url}/users/{probe.user}/history") as resp:
                    await resp.read()
                    ok = resp.status == 200
            except aiohttp.ClientError:
                ok = False
            elapsed = time.monotonic() - probe.sent
            if ok:
                probe.fresh = elapsed
                return
            if elapsed > timeout:
                return
            await asyncio.sleep(backoff(poll, elapsed))

    tasks = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < args.duration:
            event = probe_event(settings.topic_prefix, n, args.items)
            user = event["user_id"]
            probe = Probe(user, time.monotonic())
            producer.produce(
                topic,
                value=encode_events([event]),
                key=user.encode(),
                partition=partition_for(user, settings.partitions),
            )
            producer.poll(0)
            probes.append(probe)
            probe.event = event  # type: ignore[attr-defined]
            tasks.append(asyncio.ensure_future(follow(session, probe)))
            n += 1
            next_at = started + n * args.probe_every
            while (delay := next_at - time.monotonic()) > 0:
                producer.poll(0)
                await asyncio.sleep(min(delay, 0.01))
        if producer.flush(10):
            raise RuntimeError("probe events not acknowledged by the broker")
        await asyncio.gather(*tasks, return_exceptions=True)
    return probes


def phases(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """``(name, from, to)`` in seconds after the probes started.

    >>> ns = argparse.Namespace(duration=60, join_at=20, leave_at=40, window=10)
    >>> [(name, a, b) for name, a, b in phases(ns)]  # doctest: +NORMALIZE_WHITESPACE
    [('one worker (before the join)', 0, 20), ('rebalance: B joins (10 s)', 20, 30),
     ('two workers', 30, 40), ('rebalance: B leaves (10 s)', 40, 50),
     ('one worker (after the leave)', 50, 60)]
    """
    join, window, end = args.join_at, args.window, args.duration
    out = [
        ("one worker (before the join)", 0, join),
        (f"rebalance: B joins ({window:g} s)", join, join + window),
    ]
    if args.leave_at:
        leave = args.leave_at
        out += [
            ("two workers", join + window, leave),
            (f"rebalance: B leaves ({window:g} s)", leave, leave + window),
            ("one worker (after the leave)", leave + window, end),
        ]
    else:
        out.append(("two workers", join + window, end))
    return out


def rate_table(samples: list[tuple[float, dict[str, float]]], bucket: float) -> list[str]:
    """Aggregate applied events/s per ``bucket`` seconds, and each worker's share."""
    rows = ["| seconds | events/s applied (A + B) | A | B |", "|---|---:|---:|---:|"]
    if len(samples) < 2:
        return rows
    edges = [samples[0]]
    for sample in samples[1:]:
        if sample[0] - edges[-1][0] >= bucket - 1e-6:
            edges.append(sample)
    for (t0, a), (t1, b) in itertools.pairwise(edges):
        span = t1 - t0
        per = {name: (b[name] - a.get(name, 0)) / span for name in b}
        rows.append(
            f"| {t0:.0f}-{t1:.0f} | {sum(per.values()):,.0f} | "
            f"{per.get('A', 0):,.0f} | {per.get('B', 0):,.0f} |"
        )
    return rows


def longest_stall(samples: list[tuple[float, dict[str, float]]], after: float) -> float:
    """Longest run of seconds (from ``after``) in which no worker applied an event."""
    longest, since = 0.0, None
    for (t0, a), (t1, b) in itertools.pairwise(samples):
        if t1 < after:
            continue
        if sum(b.values()) <= sum(a.values()):
            since = t0 if since is None else since
            longest = max(longest, t1 - since)
        else:
            since = None
    return longest


def expected_checksums(settings: Any, events: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """Checksums of the workers' fold run here over ``events`` (per user in sent order).

    Also how many distinct events they hold (an event id sent twice counts once).
    """
    from agents.checksums import replica_checksums
    from agents.state import state_config
    from models.stream_state import StreamState
    from streams.events import validate_event

    by_user: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_user.setdefault(event["user_id"], []).append(validate_event(event))
    replica = StreamState(state_config(settings))
    for user_events in by_user.values():
        replica.apply(user_events)
    distinct = sum(len({e["event_id"] for e in user_events}) for user_events in by_user.values())
    return replica_checksums(replica, settings.partitions), distinct


def compare(expected: dict[str, Any], live: dict[str, Any]) -> dict[str, str]:
    """Per store: whether the workers' live state is the replica's.

    Users: the checksums must be equal (every event applied once, in order per
    user). Tokens: the co-occurrence sketches are bounded and decayed, so their
    values depend on the order in which different users' pairs arrived, which
    differs between the workers' partitions and this process: only the token
    keys per partition are compared.
    """
    out = {}
    for store, partitions in expected.items():
        field = "sha256" if store == "users" else "keys"
        wrong = [
            p
            for p, entry in partitions.items()
            if live.get(store, {}).get(p, {}).get(field) != entry[field]
        ]
        what = "state" if store == "users" else "keys"
        out[store] = (
            f"{what} exact" if not wrong else f"{what} differ in p" + ",".join(sorted(wrong))
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="background events/s")
    parser.add_argument("--batch-size", type=int, default=100, help="events per batch message")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic")
    parser.add_argument("--join-at", type=float, default=20.0, help="B starts (s)")
    parser.add_argument("--leave-at", type=float, default=40.0, help="B stops (s; 0: stays)")
    parser.add_argument("--window", type=float, default=10.0, help="rebalance phase length (s)")
    parser.add_argument("--warmup", type=float, default=5.0, help="traffic before probing (s)")
    parser.add_argument("--probe-every", type=float, default=0.1)
    parser.add_argument("--poll-ms", type=float, default=10.0)
    parser.add_argument("--probe-timeout", type=float, default=15.0)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a worker setting for both workers (repeatable)")  # fmt: skip
    parser.add_argument("--kafka-url", default="")
    parser.add_argument("--redis-url", default="")
    args = parser.parse_args(argv)
    if args.leave_at and not args.join_at + args.window <= args.leave_at <= args.duration:
        parser.error("--leave-at must come at least --window after --join-at, within --duration")
    command = "python benchmarks/rebalance.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    from agents.checksums import worker_checksums
    from agents.stack import free_port, start_stack

    work = Path(tempfile.mkdtemp(prefix="tastestream-rebalance-"))
    stack = start_stack(args.kafka_url, args.redis_url, work / "stack")
    overrides, settings = worker_overrides(stack, work, "rebal")
    overrides.update(parse_overrides(args.set))
    a = Worker("A", dict(overrides, data_dir=str(work / "data-a")))
    b = Worker("B", dict(overrides, data_dir=str(work / "data-b"), web_port=str(free_port())))
    traffic = sampler = None
    try:
        start(a, work)
        print(f"worker A ready in {a.ready - a.spawned:.1f} s; work dir {work}")
        traffic = Traffic(
            settings, args.rate, args.users, args.items, args.seed, args.batch_size, keep=True
        )
        traffic.start()
        time.sleep(args.warmup)
        origin = time.monotonic()
        sampler = Sampler([a, b], origin)
        sampler.start()
        timers = [threading.Timer(args.join_at, start, (b, work))]
        if args.leave_at:

            def leave() -> None:
                wait_for(lambda: b.ready, args.duration, "B to be ready")
                b.last = read_metrics(b.url, timeout=5.0) or b.last
                b.stopped = time.monotonic()
                stop_worker(b.proc)

            timers.append(threading.Timer(args.leave_at, leave))
        for timer in timers:
            timer.start()
        probes = asyncio.run(run_probes(args, settings, a.url))
        for timer in timers:
            timer.join()
        traffic.stop_event.set()
        traffic.join(60)
        if traffic.error:
            raise traffic.error
        sent_rate = traffic.sent / (time.monotonic() - origin + args.warmup)
        # Quiet: the summed counters stop moving for 3 s.
        quiet: list[float] = []

        def settled() -> bool:
            sampler.read()
            quiet.append(sum(sampler.samples[-1][1].values()))
            return len(quiet) > 3 and quiet[-1] == quiet[-4]

        wait_for(settled, 120, "the workers to apply everything", 1.0)
        sampler.stop_event.set()
        events = list(traffic.kept or []) + [p.event for p in probes]  # type: ignore[attr-defined]
        urls = [w.url for w in (a, b) if w.url and not w.stopped]
        live = worker_checksums(urls)
        expected, distinct = expected_checksums(settings, events)
        exact = compare(expected, live)
        report(args, command, (a, b), origin, sampler, probes, distinct, sent_rate, exact, traffic)
    finally:
        if sampler is not None:
            sampler.stop_event.set()
        if traffic is not None:
            traffic.stop_event.set()
            traffic.join(30)
        for worker in (a, b):
            if worker.proc is not None:
                stop_worker(worker.proc)
        stack.stop()


def report(
    args: argparse.Namespace,
    command: str,
    workers: tuple[Worker, Worker],
    origin: float,
    sampler: Sampler,
    probes: list[Probe],
    distinct: int,
    sent_rate: float,
    exact: dict[str, str],
    traffic: Traffic,
) -> None:
    a, b = workers
    load = os.getloadavg()
    print()
    print(f"command: {command}")
    print(
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores (shared)"
    )
    print()
    print(
        f"traffic: {traffic.sent:,} events at {sent_rate:,.0f}/s in {args.batch_size}-event "
        f"batches ({traffic.rejected} rejected by the producer), {len(probes)} probes"
    )
    print(
        f"B: spawned at {b.spawned - origin:.1f} s, ready {b.ready - b.spawned:.1f} s later, "
        f"first event applied {b.first_applied - b.spawned:.1f} s after spawn"
        if b.first_applied
        else "B: never applied an event"
    )
    print(
        f"longest stall (no worker applied an event) after the join: "
        f"{longest_stall(sampler.samples, args.join_at):.0f} s (1 s samples)"
    )
    print()
    print("\n".join(rate_table(sampler.samples, 5.0)))
    print()
    print("| phase (probe sent) | probes | not seen | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, lo, hi in phases(args):
        chosen = [p for p in probes if lo <= p.sent - origin < hi]
        seen = [p.fresh for p in chosen if p.fresh is not None]
        q = percentiles(seen, len(chosen) - len(seen))
        show = {k: ("never" if v == float("inf") else f"{v:,.0f}") for k, v in q.items()}
        print(
            f"| {name} | {len(chosen)} | {len(chosen) - len(seen)} | "
            f"{show['p50']} | {show['p99']} | {show['max']} |"
        )
    accepted = a.last.get(ACCEPTED, 0) + b.last.get(ACCEPTED, 0)
    duplicate = a.last.get(DUPLICATE, 0) + b.last.get(DUPLICATE, 0)
    print()
    print(
        f"exactness: {distinct:,} distinct events sent; "
        f"accepted A {a.last.get(ACCEPTED, 0):,.0f} + "
        f"B {b.last.get(ACCEPTED, 0):,.0f} = {accepted:,.0f} (duplicates recognised "
        f"{duplicate:,.0f}); live state checksums vs the same fold in this process: "
        + ", ".join(f"{store} {verdict}" for store, verdict in exact.items())
    )


if __name__ == "__main__":
    main()
