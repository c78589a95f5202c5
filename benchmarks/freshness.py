"""Freshness: from producing an event to the user's recommendations reflecting it.

Starts the embedded stack (or uses ``--kafka-url`` / ``--redis-url``) and a
real ``python -m agents.cli worker`` process, then, for ``--duration`` seconds:

* **background traffic**: simulated clickstream
  (:meth:`models.simulator.ClickstreamSimulator.live_events`, stamped with the
  wall clock) sent at a steady ``--rate`` events/s through
  :class:`agents.producer.EventProducer` (msgpack batches per partition), from
  a thread;
* **probes**: every ``--probe-every`` seconds a never-seen user clicks one
  item. The probe is sent on its own producer (the shipped linger,
  ``producer_linger_seconds``, unless ``--probe-linger-ms``) and its clock
  starts just before ``produce()``. The probe is *visible*:

  ``history``  when ``GET /users/{u}/history`` answers 200 (ingest done);
  ``state``    when ``GET /users/{u}/state`` answers 200 (the user fold done);
  ``http``     when ``GET /users/{u}/recommendations`` ran the ``cooccurrence``
               source, which needs the user's trajectory (a user never seen
               gets popularity only);
  ``redis``    when ``<prefix>:recs:home:{u}`` exists and ran ``cooccurrence``
               (the refresh timer rewrote it after the state changed).

  One HTTP poller per probe walks history -> state -> http (each every
  ``--poll-ms``, one request in flight), since each stage implies the one
  before; Redis is polled independently at the same interval. A stage seen at
  once after the previous one therefore reads at most one poll later than
  it was. Polls back off to 2% of the time waited (bounded load when the
  worker falls behind; figures stay within 2% or one poll).

Reported: p50 / p99 / max per stage, probes that never became visible within
``--probe-timeout`` (counted as never in the percentiles), the rate actually
sent and the rate the worker accepted
(``tastestream_events_accepted_total`` from ``GET /metrics``), and CPU of the
worker, the broker, Redis and this process (psutil; 100% = one core). Targets:
p99 under 500 ms (issue 4), under 1 s (issue 6). The poller's own requests
load the worker too (a few hundred small GETs/s): the figures are an upper
bound for the worker's part.

Run::

    python benchmarks/freshness.py                      # ~1.5 minutes
    python benchmarks/freshness.py --rate 1000 --duration 60 --poll-ms 5
    python benchmarks/freshness.py --rate 10000 --batch-size 100

Examples
--------
>>> backoff(0.005, 0.1)
0.005
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import read_metrics, start_worker, stop_worker, worker_overrides

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("history", "state", "http", "redis")
RELATIVE_RESOLUTION = 0.02


# -- helpers ------------------------------------------------------------------


def percentiles(seconds: list[float], missing: int = 0) -> dict[str, float]:
    """Nearest-rank p50, p99 and max in ms; ``missing`` probes count as never (inf).

    Counting the probes that never became visible keeps a slow worker from
    looking fast (their absence would lower every percentile).

    >>> percentiles([0.1, 0.2, 0.3, 0.4])
    {'p50': 200.0, 'p99': 400.0, 'max': 400.0}
    >>> percentiles([0.1], missing=1)["max"]
    inf
    """
    ms = sorted(s * 1000 for s in seconds) + [math.inf] * missing
    if not ms:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan}

    def rank(q: float) -> float:
        return round(ms[max(0, math.ceil(q / 100 * len(ms)) - 1)], 1)

    return {
        "p50": rank(50),
        "p99": rank(99),
        "max": ms[-1] if ms[-1] == math.inf else round(ms[-1], 1),
    }


class CpuMeter:
    """CPU seconds of some processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: dict[str, int]) -> None:
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.began: dict[str, float] = {}
        self.t0 = 0.0
        self.share: dict[str, float] = {}

    def _cpu(self, name: str) -> float:
        times = self.procs[name].cpu_times()
        return times.user + times.system

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.began = {name: self._cpu(name) for name in self.procs}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        self.share = {
            name: round(100 * (self._cpu(name) - self.began[name]) / wall, 1) for name in self.procs
        }
        return self.share


# -- background traffic ---------------------------------------------------------


class Traffic(threading.Thread):
    """Simulated events at a steady rate, in per-partition msgpack batches, from a thread."""

    def __init__(
        self,
        settings: Any,
        rate: float,
        users: int,
        items: int,
        seed: int,
        batch_size: int = 0,
        keep: bool = False,
    ) -> None:
        super().__init__(name="traffic", daemon=True)
        self.settings, self.rate = settings, rate
        self.users, self.items, self.seed = users, items, seed
        self.batch_size = batch_size
        #: Every event sent, in order, when ``keep`` (to fold the same events elsewhere).
        self.kept: list[dict[str, Any]] | None = [] if keep else None
        self.stop_event = threading.Event()
        self.sent = 0
        self.rejected = 0
        self.window: tuple[float, int] | None = None  # (monotonic, sent) at mark()
        self.error: BaseException | None = None

    def mark(self) -> None:
        self.window = (time.monotonic(), self.sent)

    def rate_since_mark(self) -> float:
        t0, n0 = self.window or (time.monotonic(), self.sent)
        return (self.sent - n0) / max(1e-9, time.monotonic() - t0)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def _run(self) -> None:
        from agents.producer import EventProducer
        from models.simulator import ClickstreamSimulator, SimulatorConfig

        sim = ClickstreamSimulator(
            SimulatorConfig(users=self.users, items=self.items, seed=self.seed)
        )
        events = sim.live_events(time.time)
        tick = 0.02
        # by default batches fill about once a tick per partition: ~tick of batching delay
        per_batch = self.batch_size or max(1, int(self.rate * tick / self.settings.partitions))
        producer = EventProducer(self.settings, batch_size=per_batch)
        started = time.monotonic()
        while not self.stop_event.is_set():
            due = int((time.monotonic() - started) * self.rate)
            if due > self.sent:
                batch = [next(events) for _ in range(due - self.sent)]
                producer.send_many(batch)
                if self.kept is not None:
                    self.kept.extend(batch)
                self.sent = due
            producer.producer.poll(0)
            self.stop_event.wait(tick)
        producer.flush()
        self.rejected = sum(producer.summary.rejected.values())


# -- probes -----------------------------------------------------------------------


@dataclass
class Probe:
    user: str
    sent_mono: float
    sent_wall: float
    seen: dict[str, float] = field(default_factory=dict)  # stage -> seconds after sending


def probe_event(tag: str, n: int, items: int) -> dict[str, Any]:
    """Probe ``n``: a never-seen user ``probe-<tag>-<n>`` clicks one of ``items`` items, now.

    >>> {k: v for k, v in probe_event("t", 2, 100).items() if k != "ts"}
    {'user_id': 'probe-t-2', 'item_id': 'i38', 'type': 'click', 'event_id': 'probe-t-2'}
    """
    return {
        "user_id": f"probe-{tag}-{n}",
        "item_id": f"i{(n * 7919) % items}",
        "type": "click",
        "ts": round(time.time(), 3),
        "event_id": f"probe-{tag}-{n}",
    }


def backoff(poll: float, elapsed: float) -> float:
    """The next poll's delay: ``poll``, or 2% of the time waited when that is longer.

    Bounds the polling load when the worker falls behind (a slow probe would
    otherwise be asked 200 times a second for seconds) while keeping every
    figure within 2% (or one ``poll``) of when it became visible.

    >>> backoff(0.005, 0.1), backoff(0.005, 2.0)
    (0.005, 0.04)
    """
    return max(poll, RELATIVE_RESOLUTION * elapsed)


async def follow_http(session: Any, url: str, probe: Probe, poll: float, timeout: float) -> None:
    """Walk history -> state -> recommendations, one request in flight."""
    checks = (
        ("history", f"{url}/users/{probe.user}/history", None),
        ("state", f"{url}/users/{probe.user}/state", None),
        ("http", f"{url}/users/{probe.user}/recommendations?surface=home&k=20", "cooccurrence"),
    )
    for stage, stage_url, needs_source in checks:
        while True:
            async with session.get(stage_url) as resp:
                body = await resp.read()
                ok = resp.status == 200
            elapsed = time.monotonic() - probe.sent_mono
            if ok and needs_source:
                ok = needs_source in json.loads(body).get("sources_ran", [])
            if ok:
                probe.seen[stage] = elapsed
                break
            if elapsed > timeout:
                return
            await asyncio.sleep(backoff(poll, elapsed))


async def follow_redis(client: Any, key: str, probe: Probe, poll: float, timeout: float) -> None:
    while True:
        raw = await client.get(key)
        elapsed = time.monotonic() - probe.sent_mono
        if raw is not None and "cooccurrence" in json.loads(raw).get("sources_ran", []):
            probe.seen["redis"] = elapsed
            return
        if elapsed > timeout:
            return
        await asyncio.sleep(backoff(poll, elapsed))


async def run_probes(args: argparse.Namespace, settings: Any, url: str, tag: str) -> list[Probe]:
    import aiohttp
    import redis.asyncio as aioredis

    from agents.producer import kafka_producer
    from streams.codecs import encode_events
    from streams.topics import partition_for

    linger = args.probe_linger_ms
    overrides = {} if linger is None else {"linger.ms": linger}
    producer = kafka_producer(settings, **overrides)
    topic = settings.topics.events.name
    redis_client = aioredis.from_url(settings.redis_url)
    poll, timeout = args.poll_ms / 1000, args.probe_timeout
    probes: list[Probe] = []
    tasks: list[asyncio.Task] = []
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < args.duration:
            event = probe_event(tag, n, args.items)
            user = event["user_id"]
            value = encode_events([event])
            partition = partition_for(user, settings.partitions)
            probe = Probe(user, time.monotonic(), time.time())
            producer.produce(topic, value=value, key=user.encode(), partition=partition)
            producer.poll(0)
            probes.append(probe)
            key = f"{settings.topic_prefix}:recs:home:{user}"
            tasks.append(asyncio.ensure_future(follow_http(session, url, probe, poll, timeout)))
            tasks.append(
                asyncio.ensure_future(follow_redis(redis_client, key, probe, poll, timeout))
            )
            n += 1
            next_at = started + n * args.probe_every
            while (delay := next_at - time.monotonic()) > 0:
                producer.poll(0)
                await asyncio.sleep(min(delay, 0.01))
        producer.flush(10)
        await asyncio.gather(*tasks, return_exceptions=True)
    await redis_client.aclose()
    return probes


# -- the run ------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    probes: list[Probe],
    sent_rate: float,
    accepted_rate: float,
    cpu: dict[str, float],
    lag: float,
) -> str:
    def show(ms: float) -> str:
        return f"> {args.probe_timeout * 1000:.0f}" if ms == math.inf else f"{ms:.1f}"

    rows = [
        "| stage (visible in) | probes seen | not seen | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "history": "`/history` (ingest)",
        "state": "`/state` (the user fold)",
        "http": "HTTP recommendations",
        "redis": "Redis `recs:home`",
    }
    for stage in STAGES:
        seen = [p.seen[stage] for p in probes if stage in p.seen]
        missing = len(probes) - len(seen)
        q = {k: show(v) for k, v in percentiles(seen, missing).items()}
        rows.append(
            f"| {names[stage]} | {len(seen)} | {missing} | {q['p50']} | {q['p99']} | {q['max']} |"
        )
    cpu_text = ", ".join(f"{name} {share:.0f}%" for name, share in cpu.items())
    rows += [
        "",
        f"- background events sent: {sent_rate:,.0f}/s; accepted by the worker: "
        f"{accepted_rate:,.0f}/s; consumer lag at the end: {lag:,.0f} messages",
        f"- background batch messages: {args.batch_size or 'what fills in 20 ms'} events",
        f"- probes: one every {args.probe_every * 1000:.0f} ms for {args.duration:.0f} s; "
        f"poll interval {args.poll_ms:g} ms",
        f"- CPU over the probe window (100% = one core): {cpu_text}",
        f"- machine: {os.cpu_count()} cores (shared)",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="background events/s")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="events per background batch message (default: what fills in 20 ms)",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of probing")
    parser.add_argument("--warmup", type=float, default=10.0, help="traffic before probing (s)")
    parser.add_argument("--probe-every", type=float, default=0.1, help="seconds between probes")
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--probe-timeout", type=float, default=10.0)
    parser.add_argument("--probe-linger-ms", type=int, default=None)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kafka-url", default="")
    parser.add_argument("--redis-url", default="")
    args = parser.parse_args(argv)
    command = "python benchmarks/freshness.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    from agents.stack import start_stack

    work = Path(tempfile.mkdtemp(prefix="tastestream-freshness-"))
    stack = start_stack(args.kafka_url, args.redis_url, work / "stack")
    proc = None
    traffic = None
    try:
        overrides, settings = worker_overrides(stack, work, "fresh")
        began = time.monotonic()
        proc, url = start_worker(overrides, work / "worker.log")
        print(f"worker ready in {time.monotonic() - began:.1f} s (log {work / 'worker.log'})")
        pids = {"worker": proc.pid, "bench (this)": os.getpid()}
        for service in stack.services:
            if service.proc is not None:
                pids[service.name] = service.proc.pid
        traffic = Traffic(settings, args.rate, args.users, args.items, args.seed, args.batch_size)
        traffic.start()
        time.sleep(args.warmup)
        if traffic.error:
            raise traffic.error
        meter = CpuMeter(pids)
        accepted0, t0 = read_metrics(url).get("tastestream_events_accepted_total", 0), time.time()
        meter.start()
        traffic.mark()
        probes = asyncio.run(run_probes(args, settings, url, settings.topic_prefix))
        cpu = meter.stop()
        sent_rate = traffic.rate_since_mark()
        metrics = read_metrics(url)
        accepted_rate = (metrics.get("tastestream_events_accepted_total", 0) - accepted0) / (
            time.time() - t0
        )
        if traffic.error:
            raise traffic.error
        print()
        print(f"command: {command}")
        print()
        print(
            report(
                args,
                probes,
                sent_rate,
                accepted_rate,
                cpu,
                metrics.get("tastestream_consumer_lag", 0),
            )
        )
    finally:
        if traffic is not None:
            traffic.stop_event.set()
            traffic.join(30)
        if proc is not None:
            stop_worker(proc)
        stack.stop()


if __name__ == "__main__":
    main()
