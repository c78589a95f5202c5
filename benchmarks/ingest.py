"""Whole-worker throughput per process, beside a bare Faust consumer in the same run.

Starts the embedded stack (or uses ``--kafka-url`` / ``--redis-url``), pre-produces
``--single-events`` single-event msgpack messages (keyed by user id, murmur2,
as Faust partitions) to one topic prefix and ``--batch-events`` events as
``--batch-size``-event batch messages (:class:`agents.producer.EventProducer`)
to another, then measures one consumer at a time (the machine has 2 cores):

0. ``pure-batch``: the worker's own per-event code without Faust or a broker,
   in this process: ``decode_message``, the per-user fold and the token fold
   (``StreamState.apply_message``, the functions the agents call), the packing
   of every changed user at each checkpoint, and the real event log: the ceiling;
1. a bare Faust app (same broker, producer linger, session timeout, stream and
   offset settings as ours) whose agent only counts, on the single-event topic:
   ``plain`` (``async for``) and ``take`` (``stream.take_events`` with our
   ingest batch size and window, the shape of our agents);
2. the same bare ``take`` app on the batch topic (messages counted, events =
   messages x mean batch size): the transport's ceiling for batches;
3. ``worker``: the real ``tastestream worker`` (``python -m agents.cli worker``)
   with everything it runs, single then batch: the user fold, the pair records
   through their topic, the token fold, checkpoints, the event log, list refresh.

Worker runs sample ``tastestream_events_accepted_total`` (events folded into
user states) and ``tastestream_pairs_applied_total`` from ``GET /metrics`` and
the process's CPU (psutil) every ``--sample-interval`` seconds. A run stops at
the expected count or ``--max-run-seconds`` after its first event. The rate is
the least-squares slope of count over time between 10% and 90% of the count
reached (steady state: start-up, group join and the tail are left out); CPU is
process CPU seconds per 100k events over the same window. The seconds the token
fold needed after the last user fold are printed ("tokens behind"). Issue 11's
targets: batches at least 50,000 events/s per worker; single events at least
60% of the bare plain consumer.

Run::

    python benchmarks/ingest.py                       # ~2-4 minutes
    python benchmarks/ingest.py --single-events 100000 --batch-events 1000000
    python benchmarks/ingest.py --only worker-batch --profile /tmp/ingest-prof

``--profile DIR`` attaches ``py-spy record`` (``pip install py-spy``) to every
run and prints where its samples went (profiled rates read lower).

Examples
--------
>>> samples = [(0.0, 0, 0.0), (1.0, 100, 1.0), (2.0, 200, 2.0), (3.0, 300, 3.0)]
>>> steady_rate(samples, expected=300)  # (events/s, CPU seconds per event)
(100.0, 0.01)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import parse_overrides, profile_samples

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: (monotonic seconds, events counted, process CPU seconds)
Sample = tuple[float, float, float]

RUNS = (
    "pure-batch",
    "bare-plain",
    "bare-take",
    "bare-batch",
    "worker-single",
    "worker-batch",
)


# -- the data -----------------------------------------------------------------


def make_events(count: int, users: int, seed: int, tag: str) -> list[dict[str, Any]]:
    """Contract events with unique ids, shaped like a shop clickstream (~200 bytes each)."""
    from streams.events import EVENT_TYPES

    rng = random.Random(seed)
    start = 1_767_000_000.0
    return [
        {
            "user_id": f"user-{rng.randrange(users)}",
            "item_id": f"item-{rng.randrange(200_000)}",
            "type": rng.choice(EVENT_TYPES),
            "ts": start + i * 0.01,
            "event_id": f"{tag}-{i:010d}",
            "session_id": f"s-{rng.randrange(100_000)}",
            "context": {"surface": "home", "request_id": f"r-{i}", "position": i % 20},
            "item": {"category": f"c{rng.randrange(300)}", "price": 9.99},
        }
        for i in range(count)
    ]


#: A message ready to send: (partition or None for the key's murmur2 partition, key, value).
Message = tuple[int | None, bytes, bytes]


def single_messages(events: list[dict[str, Any]]) -> list[Message]:
    """One msgpack event per message, keyed by user id."""
    from streams.codecs import encode_event

    return [(None, e["user_id"].encode(), encode_event(e)) for e in events]


class _Recorder:
    """Stands in for the confluent producer to capture EventProducer's messages."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def produce(
        self, topic: str, value: bytes, key: bytes, partition: int, on_delivery, headers=None
    ) -> None:
        self.messages.append((partition, key, value))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


def batch_messages(settings: Any, events: list[dict[str, Any]], size: int) -> list[Message]:
    """The batch messages :class:`agents.producer.EventProducer` sends for ``events``."""
    from agents.producer import EventProducer

    recorder = _Recorder()
    sender = EventProducer(settings, batch_size=size, producer=recorder)  # type: ignore[arg-type]
    sender.send_many(events)
    sender.flush()
    if sender.summary.rejected:
        raise RuntimeError(f"events rejected: {dict(sender.summary.rejected)}")
    return recorder.messages


def produce(settings: Any, messages: list[Message]) -> float:
    """Send ``messages`` to the events topic of ``settings`` (murmur2, linger 20 ms)."""
    from agents.producer import kafka_producer

    producer = kafka_producer(
        settings, **{"queue.buffering.max.messages": 2_000_000, "linger.ms": 20}
    )
    topic = settings.topics.events.name
    started = time.perf_counter()
    for partition, key, value in messages:
        extra = {} if partition is None else {"partition": partition}
        while True:
            try:
                producer.produce(topic, value=value, key=key, **extra)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60):
        raise RuntimeError("messages not delivered within 60 s")
    return time.perf_counter() - started


# -- measuring ----------------------------------------------------------------


def run_pure(settings: Any, messages: list[Message], take: int, work: Path) -> list[Sample]:
    """The worker's per-event code without Faust, in this process: the ceiling.

    Per message ``decode_message`` and ``StreamState.apply_message`` (the user
    fold and the token fold, as the agents call them); per ``take`` messages
    the event log append and, as a checkpoint does, every changed user packed.
    """
    from agents.state import state_config
    from models.stream_state import StreamState
    from streams.codecs import decode_message
    from streams.eventlog import EventLog

    replica = StreamState(state_config(settings))
    samples: list[Sample] = [(time.monotonic(), 0, time.process_time())]
    done = 0
    with EventLog(work / "pure-eventlog", fsync=settings.log_fsync) as log:
        for start in range(0, len(messages), take):
            accepted = []
            for partition, _, value in messages[start : start + take]:
                events = decode_message(value).events
                before = replica.messages
                done += replica.apply_message(events, partition or 0)
                assert replica.messages == before + 1
                accepted.extend(events)
            log.append(accepted)
            for user in {e["user_id"] for e in accepted}:
                replica.users[user].pack()
            samples.append((time.monotonic(), done, time.process_time()))
    return samples


def steady_rate(samples: list[Sample], expected: float) -> tuple[float, float]:
    """(events/s, CPU seconds per event) between 10% and 90% of ``expected``.

    Least-squares slope of count over time on the samples inside the window;
    with fewer than three there, the two samples that bracket it.
    """
    lo, hi = 0.1 * expected, 0.9 * expected
    inside = [s for s in samples if lo <= s[1] <= hi]
    if len(inside) < 3:
        before = [s for s in samples if s[1] <= lo] or samples[:1]
        after = [s for s in samples if s[1] >= hi] or samples[-1:]
        inside = [before[-1], after[0]]
    ts = [s[0] for s in inside]
    ns = [s[1] for s in inside]
    mean_t, mean_n = sum(ts) / len(ts), sum(ns) / len(ns)
    var = sum((t - mean_t) ** 2 for t in ts)
    rate = sum((t - mean_t) * (n - mean_n) for t, n in zip(ts, ns, strict=True)) / var if var else 0
    counted = inside[-1][1] - inside[0][1]
    cpu = (inside[-1][2] - inside[0][2]) / counted if counted else float("nan")
    return rate, cpu


@dataclass
class Result:
    run: str
    what: str
    messages: int
    events: int
    rate: float = 0.0
    cpu_per_event: float = float("nan")
    wall: float = 0.0
    notes: list[str] = field(default_factory=list)


def bare_child_main(config_path: str) -> None:
    """Entry of the bare Faust subprocess: count messages, write samples, exit."""
    import faust

    cfg = json.loads(Path(config_path).read_text())
    app = faust.App(
        f"bare-{uuid.uuid4().hex[:10]}",
        broker=cfg["kafka_url"],
        autodiscover=False,
        topic_partitions=cfg["partitions"],
        producer_linger=cfg["producer_linger"],
        broker_session_timeout=cfg["session_timeout"],
        broker_heartbeat_interval=max(cfg["session_timeout"] / 4, 0.5),
        datadir=cfg["data_dir"],
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    topic = app.topic(
        cfg["topic"],
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=cfg["partitions"],
    )
    expected = cfg["expect"]
    per_message = cfg["events_per_message"]
    samples: list[Sample] = [(time.monotonic(), 0, time.process_time())]
    stop_at = [float("inf")]  # set at the first message: max_seconds later

    def finish() -> None:
        Path(cfg["out"]).write_text(json.dumps(samples))
        os._exit(0)  # the group is throwaway; a clean leave only adds seconds

    @app.agent(topic)
    async def count(stream):
        n = 0
        if cfg["mode"] == "plain":
            async for _ in stream:
                n += 1
                if n == 1:
                    stop_at[0] = time.monotonic() + cfg["max_seconds"]
                if n % 500 == 0 or n >= expected:
                    samples.append((time.monotonic(), n * per_message, time.process_time()))
                    if n >= expected or samples[-1][0] > stop_at[0]:
                        finish()
        else:
            async for batch in stream.take_events(cfg["batch_size"], within=cfg["batch_seconds"]):
                if n == 0:
                    stop_at[0] = time.monotonic() + cfg["max_seconds"]
                n += len(batch)
                samples.append((time.monotonic(), n * per_message, time.process_time()))
                if n >= expected or samples[-1][0] > stop_at[0]:
                    finish()

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


def run_bare(
    settings: Any,
    args: argparse.Namespace,
    mode: str,
    messages: int,
    per_message: float,
    work: Path,
) -> tuple[list[Sample], float, str]:
    out = work / f"bare-{mode}-{uuid.uuid4().hex[:6]}.json"
    config = {
        "kafka_url": settings.kafka_url,
        "topic": settings.topics.events.name,
        "partitions": settings.partitions,
        "producer_linger": settings.producer_linger_seconds,
        "session_timeout": settings.session_timeout_seconds,
        "batch_size": settings.ingest_batch_size,
        "batch_seconds": settings.ingest_batch_seconds,
        "mode": mode,
        "expect": messages,
        "max_seconds": args.max_run_seconds,
        "events_per_message": per_message,
        "data_dir": str(work / "bare-faust"),
        "out": str(out),
    }
    config_path = work / f"bare-{mode}.config.json"
    config_path.write_text(json.dumps(config))
    log = open(work / f"bare-{mode}.log", "ab")  # noqa: SIM115 - closed below
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--bare-child", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(REPO),
    )
    log.close()
    profiler = (
        start_profiler(proc.pid, Path(args.profile) / f"{out.stem}.txt") if args.profile else None
    )
    try:
        proc.wait(args.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"bare {mode} consumer did not finish within {args.timeout} s") from None
    finally:
        profile = stop_profiler(*profiler) if profiler else ""
    if not out.exists():
        tail = (work / f"bare-{mode}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"bare {mode} consumer exited {proc.returncode}:\n{tail}")
    samples = [tuple(s) for s in json.loads(out.read_text())]
    return samples, time.monotonic() - started, profile


def worker_env(settings: Any) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in vars(settings).items():
        env["TASTESTREAM_" + name.upper()] = str(value)
    env["TASTESTREAM_LOG_LEVEL"] = "warning"
    env["PYTHONPATH"] = str(REPO)
    return env


def read_metrics(url: str) -> dict[str, float] | None:
    """Counter totals (labels summed) from GET /metrics; None while it does not answer."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    totals: Counter = Counter()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            totals[name] += float(line.rsplit(" ", 1)[1])
    return dict(totals)


def run_worker(
    settings: Any, args: argparse.Namespace, expected: int, label: str, work: Path
) -> tuple[list[Sample], float, dict[str, float], str]:
    """Start a worker, sample folded events and CPU until ``expected`` or the time cap.

    Then wait (up to 60 s) for the token fold to stop moving and note how long it took.
    """
    import psutil

    url = f"http://{settings.web_host}:{settings.web_port}"
    log_path = work / f"worker-{label}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed below
    started = time.monotonic()
    argv = [sys.executable, "-m", "agents.cli", "worker"]
    env = worker_env(settings)
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(REPO),
    )
    log.close()
    ps = psutil.Process(proc.pid)
    profiler = None
    profile_text = ""
    samples: list[Sample] = []
    last: dict[str, float] = {}
    try:
        deadline = started + args.timeout
        first_event = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker exited {proc.returncode}:\n{tail}")
            metrics = read_metrics(url)
            if metrics is not None:
                cpu = ps.cpu_times()
                last = metrics
                accepted = metrics.get("tastestream_events_accepted_total", 0.0)
                now = time.monotonic()
                samples.append((now, accepted, cpu.user + cpu.system))
                if accepted and first_event is None:
                    first_event = now
                    if args.profile:  # from the first event: start-up is not the question
                        profiler = start_profiler(proc.pid, Path(args.profile) / f"{label}.txt")
                if accepted >= expected or (
                    first_event is not None and now - first_event > args.max_run_seconds
                ):
                    break
            time.sleep(args.sample_interval)
        else:
            raise RuntimeError(
                f"worker {label}: {last.get('tastestream_events_accepted_total', 0):.0f} of "
                f"{expected} events accepted within {args.timeout} s"
            )
        # The token fold runs behind (pair records cross a topic): when did it settle?
        folded_at = time.monotonic()
        pairs, settled_at = last.get("tastestream_pairs_applied_total", 0.0), folded_at
        while time.monotonic() - settled_at < 2.0 and time.monotonic() - folded_at < 60:
            time.sleep(0.25)
            now_pairs = (read_metrics(url) or {}).get("tastestream_pairs_applied_total", pairs)
            if now_pairs != pairs:
                pairs, settled_at = now_pairs, time.monotonic()
        last["bench_tokens_behind_seconds"] = settled_at - folded_at
        last["tastestream_pairs_applied_total"] = pairs
    finally:
        if profiler is not None:
            profile_text = stop_profiler(*profiler)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return samples, time.monotonic() - started, last, profile_text


def topic_volumes(
    bootstrap: str, prefix: str, reasons: Counter | None = None
) -> dict[str, tuple[int, int]]:
    """(records, value bytes) of every topic whose name starts with ``prefix``.

    Dead-letter reasons (first 100 characters) are counted into ``reasons``.

    Read from the beginning to the partition EOF (librdkafka takes the end from
    fetch responses, which is right on Tansu too).
    """
    from confluent_kafka import Consumer

    config = {
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-volume-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "enable.auto.commit": False,
        "queued.min.messages": 1_000_000,
        "log_level": 3,
    }
    consumer = Consumer(config)
    try:
        names = sorted(t for t in consumer.list_topics(timeout=10).topics if t.startswith(prefix))
        out = {}
        for name in names:
            from confluent_kafka import TopicPartition

            parts = consumer.list_topics(name, timeout=10).topics[name].partitions
            consumer.assign([TopicPartition(name, p, 0) for p in parts])
            pending, records, size = set(parts), 0, 0
            deadline = time.monotonic() + 60
            while pending and time.monotonic() < deadline:
                for msg in consumer.consume(10_000, timeout=0.5):
                    if msg.error():
                        pending.discard(msg.partition())
                        continue
                    records += 1
                    size += len(msg.value() or b"")
                    if reasons is not None and name.endswith(".dead-letter"):
                        try:
                            reasons[str(json.loads(msg.value())["reason"])[:100]] += 1
                        except (ValueError, KeyError, TypeError):
                            reasons["(unreadable dead-letter record)"] += 1
            consumer.unassign()
            out[name] = (records, size)
        return out
    finally:
        consumer.close()


# -- profiling ----------------------------------------------------------------


def start_profiler(pid: int, out: Path) -> tuple[subprocess.Popen, Path]:
    """py-spy record in raw (collapsed stacks) format, non-blocking, until stopped."""
    exe = shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    flags = ["--format", "raw", "--function", "--nonblocking", "--rate", "200"]
    proc = subprocess.Popen(
        [exe, "record", "--pid", str(pid), *flags, "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, out


def stop_profiler(proc: subprocess.Popen, out: Path) -> str:
    proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return summarise_profile(out) if out.exists() else f"(no profile written to {out})"


#: Buckets for profile samples: the first (frame substring, label) found walking
#: from the innermost frame outwards names the sample.
PROFILE_BUCKETS = (
    ("(models/trajectory.py", "user fold: trajectory"),
    ("(models/bandit.py", "user fold: bandit"),
    ("push (models/cooccurrence.py", "user fold: session window"),
    ("(models/user_state.py", "user fold: history, guard, records"),
    ("(models/token_state.py", "token fold"),
    ("(models/cooccurrence.py", "token fold: sketches"),
    ("(agents/store.py", "state store (pack, changelog groups)"),
    ("(streams/events.py", "validate_event"),
    ("(streams/codecs.py", "decode_message"),
    ("(streams/eventlog.py", "event log append"),
    ("observe (agents/metrics.py", "metrics (latency histogram)"),
    ("(agents/metrics.py", "metrics"),
    ("partition_for (streams/topics.py", "partition_for (murmur2)"),
    ("(agents/recommend.py", "list refresh"),
    ("(models/candidates/", "list refresh: candidates"),
    ("aiokafka/producer", "aiokafka producer (pairs, changelog, forwards)"),
    ("aiokafka/consumer", "aiokafka consumer (fetch, decode records)"),
    ("aiokafka/", "aiokafka other"),
    ("faust/transport/", "Faust transport (consumer/conductor)"),
    ("faust/streams", "Faust stream per-message path"),
    ("faust/channels", "Faust channel/queue per message"),
    ("faust/", "Faust other"),
    ("mode/", "mode (Faust's service library)"),
    ("asyncio/", "asyncio event loop"),
)


def summarise_profile(path: Path, top: int = 12) -> str:
    """Share of samples per bucket and the hottest leaf functions, from py-spy raw output."""
    buckets: Counter = Counter()
    leaves: Counter = Counter()
    ours: Counter = Counter()
    total = 0
    for frames, count in profile_samples(path):
        total += count
        leaves[frames[-1]] += count
        label = "idle/other"
        for frame in reversed(frames):
            hit = next((name for key, name in PROFILE_BUCKETS if key in frame), None)
            if hit:
                label = hit
                break
        buckets[label] += count
        # Inclusive time of our own functions (the agent's batch is ingest.process).
        for name in {f.split(" (")[0] for f in frames if " (agents/" in f or " (streams/" in f}:
            ours[name] += count
    if not total:
        return "(empty profile)"
    lines = [f"py-spy: {total} samples"]
    lines.append("  by component (innermost match):")
    lines += [f"    {n / total:6.1%}  {name}" for name, n in buckets.most_common()]
    lines.append("  our functions, inclusive:")
    lines += [f"    {n / total:6.1%}  {name}" for name, n in ours.most_common(top)]
    lines.append("  hottest leaf frames:")
    lines += [f"    {n / total:6.1%}  {name}" for name, n in leaves.most_common(top)]
    return "\n".join(lines)


# -- the run ------------------------------------------------------------------


def table(results: list[Result], reference: float | None) -> str:
    rows = [
        "| run | messages | events | events/s (10-90% steady) | CPU s / 100k events"
        " | vs bare plain |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r.rate / reference:.0%}" if reference else "-"
        cpu = r.cpu_per_event * 100_000
        rows.append(
            f"| {r.what} | {r.messages:,} | {r.events:,} | {r.rate:,.0f} | {cpu:.2f} | {ratio} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single-events", type=int, default=60_000)
    parser.add_argument("--batch-events", type=int, default=500_000)
    parser.add_argument("--batch-size", type=int, default=100, help="events per batch message")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--session-timeout", type=float, default=4.0, help="seconds (both apps)")
    parser.add_argument("--sample-interval", type=float, default=0.2, help="seconds")
    parser.add_argument(
        "--max-run-seconds", type=float, default=30.0, help="cap per run after its first event"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per run, at most")
    parser.add_argument("--only", default=",".join(RUNS), help="comma list of " + ",".join(RUNS))
    parser.add_argument(
        "--profile", metavar="DIR", help="py-spy every run into DIR (keeps the work dir)"
    )
    parser.add_argument("--kafka-url", default="", help="else an embedded broker is started")
    parser.add_argument("--redis-url", default="", help="else an embedded Redis is started")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for every run, e.g. ingest_batch_seconds=0.5 (repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument("--bare-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_child:
        bare_child_main(args.bare_child)
        return
    runs = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = set(runs) - set(RUNS)
    if unknown:
        parser.error(f"unknown runs: {', '.join(sorted(unknown))}")

    import psutil

    from agents.provision import ensure_topics
    from agents.settings import Settings
    from agents.stack import free_port, start_stack

    command = "python " + shlex.join(["benchmarks/ingest.py", *sys.argv[1:]])
    print(f"command: {command}")
    print(
        f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} "
        f"python={sys.version.split()[0]} pid={os.getpid()}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="tastestream-bench-ingest-"))
    stack = start_stack(args.kafka_url, args.redis_url, work / "stack")
    results: list[Result] = []
    profiles: dict[str, str] = {}
    try:
        tag = uuid.uuid4().hex[:8]
        overrides = {"TASTESTREAM_" + k.upper(): v for k, v in parse_overrides(args.set).items()}
        base = Settings.load(env=overrides, config_path=None).replace(
            kafka_url=stack.kafka_url,
            redis_url=stack.redis_url,
            partitions=args.partitions,
            session_timeout_seconds=args.session_timeout,
        )
        print(f"stack: kafka {stack.kafka_url} redis {stack.redis_url}; work dir {work}")
        print(
            f"settings: partitions={base.partitions} ingest_batch_size={base.ingest_batch_size} "
            f"ingest_batch_seconds={base.ingest_batch_seconds} "
            f"producer_linger={base.producer_linger_seconds} "
            f"log_fsync={base.log_fsync} history_length={base.history_length} "
            f"dedupe_window={base.dedupe_window} session_timeout={base.session_timeout_seconds} "
            f"users={args.users}" + (f" overrides={parse_overrides(args.set)}" if args.set else "")
        )
        single: list[Message] = []
        batched: list[Message] = []
        if any(r.endswith(("plain", "take", "single")) for r in runs):
            single = single_messages(make_events(args.single_events, args.users, args.seed, "s"))
        if any(r.endswith("batch") for r in runs):
            events = make_events(args.batch_events, args.users, args.seed + 1, "b")
            batched = batch_messages(base, events, args.batch_size)
            del events
        print(
            f"encoded {len(single):,} single-event messages; {args.batch_events:,} events as "
            f"{len(batched):,} batch messages",
            flush=True,
        )
        for index, run in enumerate(r for r in RUNS if r in runs):
            # A fresh prefix per run: its own events topic, consumer group and tables.
            is_batch = run.endswith("batch")
            messages = batched if is_batch else single
            expected = args.batch_events if is_batch else args.single_events
            per_message = expected / max(len(messages), 1)
            settings = base.replace(
                topic_prefix=f"bench{tag}r{index}",
                data_dir=str(work / run),
                web_port=free_port(),
            )
            if run != "pure-batch":
                ensure_topics(settings)
                seconds = produce(settings, messages)
                print(f"{run}: produced {len(messages):,} messages in {seconds:.1f} s", flush=True)
            load = os.getloadavg()[0]
            kind = (
                f"{args.batch_size}-event batch messages" if is_batch else "single-event messages"
            )
            if run == "pure-batch":
                samples = run_pure(settings, messages, base.ingest_batch_size, work)
                wall, profile = samples[-1][0] - samples[0][0], ""
                result = Result(
                    run,
                    f"the worker's fold without Faust (ceiling), {kind}, "
                    f"{base.ingest_batch_size} messages per batch",
                    0,
                    round(samples[-1][1]),
                )
            elif run.startswith("bare"):
                mode = "plain" if run == "bare-plain" else "take"
                samples, wall, profile = run_bare(
                    settings, args, mode, len(messages), per_message, work
                )
                how = (
                    "`async for`"
                    if mode == "plain"
                    else f"`take_events({base.ingest_batch_size}, {base.ingest_batch_seconds})`"
                )
                reached = round(samples[-1][1])
                result = Result(run, f"bare Faust agent, {how}, {kind}", 0, reached)
            else:
                samples, wall, metrics, profile = run_worker(settings, args, expected, run, work)
                who = "tastestream worker (everything)"
                reached = int(samples[-1][1]) if samples else 0
                result = Result(run, f"{who}, {kind}", 0, reached)
                if reached < expected:
                    result.notes.append(
                        f"{run}: stopped by --max-run-seconds at {reached:,} of {expected:,} events"
                        f" (worker log: {work / f'worker-{run}.log'}, kept with --keep)"
                    )
                odd = {
                    k: metrics.get(f"tastestream_events_{k}_total", 0)
                    for k in ("forwarded", "duplicate", "rejected")
                }
                if any(odd.values()):
                    result.notes.append(f"{run}: {odd}")
                behind = metrics.get("bench_tokens_behind_seconds", 0)
                pairs = metrics.get("tastestream_pairs_applied_total", 0)
                result.notes.append(
                    f"{run}: tokens behind {behind:.1f} s after the last user fold "
                    f"({pairs:,.0f} pair records applied)"
                )
                accepted = metrics.get("tastestream_events_accepted_total", 0) or 1
                reasons: Counter = Counter()
                written = topic_volumes(base.kafka_bootstrap, settings.topic_prefix, reasons)
                for reason, count in reasons.most_common(3):
                    result.notes.append(f"{run}: {count:,} dead letters: {reason}")
                written.pop(settings.topics.events.name, None)
                for name, (records, size) in written.items():
                    if records:
                        result.notes.append(
                            f"{run} wrote {name}: {records / accepted:.3f} records and "
                            f"{size / accepted / 1024:.2f} KiB per accepted event "
                            f"({records:,} records, {size / 2**20:.1f} MiB, "
                            f"{accepted:,.0f} events accepted)"
                        )
            result.messages = round(result.events / per_message)
            if profile:
                profiles[run] = profile
            result.rate, result.cpu_per_event = steady_rate(samples, result.events)
            result.wall = wall
            if args.profile:
                result.what += " (profiled)"
            results.append(result)
            print(
                f"{run:<14} {result.rate:>9,.0f} events/s  "
                f"{result.cpu_per_event * 100_000:6.2f} CPU s/100k events  "
                f"{len(samples)} samples, {wall:.1f} s wall incl. start-up, load {load:.2f}",
                flush=True,
            )
    finally:
        stack.stop()
        if not (args.profile or args.keep):
            shutil.rmtree(work, ignore_errors=True)

    by_run = {r.run: r for r in results}
    reference = by_run["bare-plain"].rate if "bare-plain" in by_run else None
    print()
    print(f"Command: `{command}` ({os.cpu_count()} CPUs, psutil {psutil.__version__})")
    print()
    print(table(results, reference))
    print()
    if "worker-batch" in by_run:
        rate = by_run["worker-batch"].rate
        verdict = "met" if rate >= 50_000 else "NOT met"
        print(f"- worker: target batches >= 50,000 events/s: {rate:,.0f} ({verdict})")
    if "worker-single" in by_run and reference:
        ratio = by_run["worker-single"].rate / reference
        verdict = "met" if ratio >= 0.6 else "NOT met"
        print(f"- worker: target single events >= 60% of bare Faust: {ratio:.0%} ({verdict})")
    for r in results:
        for note in r.notes:
            print(f"- note: {note}")
    for run, text in profiles.items():
        print(f"\n{run} profile:\n{text}")


if __name__ == "__main__":
    main()
