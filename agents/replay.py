"""``tastestream replay``: re-emit a window of events, or rebuild a prefix's state from it.

    tastestream replay --from DIR|FILE|kafka:TOPIC [--since T] [--until T]
                       (--to-topic [--speed 10x|max] [--rate N] [--resume] | --rebuild)
                       [--prefix P]

**Sources** (:func:`open_source`), each read in event-time order with the
window ``since <= ts < until`` (epoch seconds or ISO-8601):

* a durable event-log directory (``data_dir/eventlog`` or one worker's folder
  in it): every worker's segments merged by ``ts``, repeated event ids dropped
  (:func:`streams.eventlog.read_logs`);
* a contract file (JSON lines or msgpack), validated as ``produce`` does;
* a CSV log through the importer (``--columns``/``--types``/``--ts-unit`` as
  ``tastestream import`` takes them);
* ``kafka:TOPIC`` on a Kafka with long retention: every partition from
  ``--offset`` (default the beginning) to its end now, merged by ``ts``.

Files and CSV logs are sorted by ``ts`` (stable: events with equal stamps keep
their order in the file); the log and the topic are merged lazily.

**--to-topic** sends the events to ``<prefix>.events`` as ``produce`` does
(validated, batched per owning partition), each message marked with the Kafka
header ``tastestream-replay: 1`` (:mod:`streams.headers`): the workers fold it
like live traffic but count it apart and leave it out of ingest latency.
Pacing: ``--speed 10x`` keeps the events' own spacing ten times faster,
``--speed max`` none; and never faster than ``--rate`` events per second
(default :data:`DEFAULT_RATE`), so that a replay into a live prefix leaves the
workers room for live traffic. Progress (events acknowledged by the broker) is
saved under ``data_dir/replay/<prefix>/`` every :data:`PROGRESS_SECONDS`;
**--resume** skips what a stopped run (Ctrl-C, a crash) already delivered.
Re-running without ``--resume`` is also safe: the users' redelivery guards drop
events they applied (within the last ``dedupe_window`` ids per user), it only
costs the time of sending them again.

**--rebuild** refuses while workers of the prefix run (its consumer group is
not empty), folds the events with :class:`models.stream_state.StreamState`
(the workers' own fold), deletes the prefix's changelog topics and snapshots,
and writes the result where workers recover from: per changelog partition a
new incarnation marker and one checkpoint group of every value, and a snapshot
covering it (:mod:`agents.store`'s formats and helpers). A worker started
afterwards recovers exactly this state. An interrupted rebuild is simply run
again: it starts over from an empty prefix.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import itertools
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.cli_io import CliError, add_csv_options, positive_float
from agents.settings import Settings

#: Events per second a ``--to-topic`` replay sends at most unless ``--rate`` says otherwise:
#: a small share of what one worker folds (benchmarks/RESULTS.md), so live traffic keeps flowing.
DEFAULT_RATE = 1000.0
#: Seconds between two saves of a ``--to-topic`` replay's progress (and producer flushes).
PROGRESS_SECONDS = 0.5
#: Sending loop step: events due within it go out together.
TICK_SECONDS = 0.05
KAFKA_SOURCE = "kafka:"
#: Consumer-group states of a group with live members (Apache Kafka and Tansu name them so).
ACTIVE_GROUP_STATES = ("STABLE", "PREPARING_REBALANCE", "COMPLETING_REBALANCE")


class ReplayError(CliError):
    """A replay that cannot run as asked; printed as one line by the CLI."""


# -- time -----------------------------------------------------------------------------------


def parse_time(text: str, option: str) -> float:
    """Epoch seconds from ``--since``/``--until``: a number of seconds or ISO-8601 (UTC if naive).

    Examples
    --------
    >>> parse_time("1767225600", "--since"), parse_time("2026-01-01T00:00:00", "--since")
    (1767225600.0, 1767225600.0)
    >>> parse_time("yesterday", "--until")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    agents.replay.ReplayError: --until 'yesterday': expected epoch seconds or ISO-8601 (e.g. ...)
    """
    from streams.events import EventError, parse_ts

    try:
        value = float(text) if _is_number(text) else parse_ts(text)
        if not math.isfinite(value):
            raise ValueError(text)
        return value
    except (EventError, ValueError):
        raise ReplayError(
            f"{option} {text!r}: expected epoch seconds or ISO-8601 (e.g. 2026-01-01T00:00:00Z)"
        ) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_speed(text: str) -> float | None:
    """``--speed``: ``max`` (``None``: no event-time pacing) or a factor such as ``10x``.

    Examples
    --------
    >>> parse_speed("10x"), parse_speed("0.5"), parse_speed("max")
    (10.0, 0.5, None)
    """
    value = text.strip().lower()
    if value == "max":
        return None
    try:
        factor = float(value.removesuffix("x"))
    except ValueError:
        factor = 0.0
    if not 0 < factor < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a factor such as 10x, or max; got {text!r}")
    return factor


# -- sources --------------------------------------------------------------------------------


@dataclass
class CsvOptions:
    """How to read a CSV source (``tastestream import``'s flags)."""

    columns: str
    types: str
    ts_unit: str = "auto"


def csv_options(args: argparse.Namespace) -> CsvOptions | None:
    """The CSV mapping given on a command line (:func:`agents.cli_io.add_csv_options`), if any."""
    if not (args.columns or args.types):
        return None
    if not (args.columns and args.types):
        raise ReplayError("a CSV source needs both --columns and --types")
    return CsvOptions(args.columns, args.types, args.ts_unit)


@dataclass
class Source:
    """A replay source opened for one window: its events in time order, and what was skipped."""

    kind: str  # "eventlog", "file", "csv" or "kafka"
    name: str
    events: Iterator[dict[str, Any]]
    rejected: dict[str, int] = field(default_factory=dict)


def _in_window(since: float | None, until: float | None) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (since is None or e["ts"] >= since) and (until is None or e["ts"] < until)


def _event_ts(event: dict[str, Any]) -> float:
    return event["ts"]


def open_source(
    source: str,
    settings: Settings,
    since: float | None = None,
    until: float | None = None,
    csv: CsvOptions | None = None,
    offset: int = 0,
) -> Source:
    """The events of ``source`` with ``since <= ts < until``, in event-time order.

    Parameters
    ----------
    source
        An event-log directory, a JSONL/msgpack file, a CSV file (with ``csv``),
        or ``kafka:TOPIC``.
    settings
        The broker (for a topic source) and partitions.
    since, until
        The window, epoch seconds; ``None`` leaves that side open.
    csv
        Column and type mapping for a CSV file (required for one).
    offset
        For a topic source: the offset every partition is read from.

    Raises
    ------
    ReplayError
        A missing path, a CSV without ``--columns``/``--types``, a topic that
        does not exist.
    """
    keep = _in_window(since, until)
    if source.startswith(KAFKA_SOURCE):
        topic = source[len(KAFKA_SOURCE) :]
        return Source("kafka", topic, filter(keep, _topic_events(settings, topic, offset)))
    path = Path(source)
    if path.is_dir():
        from streams.eventlog import EventLogError, log_directories, read_logs

        try:
            if not log_directories(path):
                raise ReplayError(f"--from {source}: no event-log segments in this directory")
        except EventLogError as exc:
            raise ReplayError(f"--from {source}: {exc}") from None
        return Source("eventlog", str(path), read_logs(path, since_ts=since, until_ts=until))
    if not path.is_file():
        raise ReplayError(f"--from {source}: no such file or directory", "check the path")
    if path.suffix.lower() == ".csv" or csv is not None:
        return _csv_source(path, csv, keep)
    return _file_source(path, keep)


def _file_source(path: Path, keep: Callable[[dict[str, Any]], bool]) -> Source:
    from collections import Counter

    from agents.cli_io import open_input
    from agents.producer import read_event_file
    from streams.events import EventError, validate_event

    rejected: Counter[str] = Counter()
    events = []
    with open_input(str(path)) as stream:
        for raw in read_event_file(stream, rejected, name=str(path)):
            try:
                event = validate_event(raw)  # canonical: ISO stamps become seconds
            except EventError as exc:
                rejected[exc.field or "event"] += 1
                continue
            if keep(event):
                events.append(event)
    events.sort(key=_event_ts)  # stable: equal stamps keep the file's order
    return Source("file", str(path), iter(events), dict(rejected))


def _csv_source(
    path: Path, csv: CsvOptions | None, keep: Callable[[dict[str, Any]], bool]
) -> Source:
    from streams.importer import ImportSpec, ImportSpecError, ImportStats, import_csv, parse_mapping

    if csv is None:
        raise ReplayError(
            f"--from {path}: a CSV log needs --columns and --types",
            "as `tastestream import` takes them",
        )
    try:
        spec = ImportSpec(
            columns=parse_mapping(csv.columns), types=parse_mapping(csv.types), ts_unit=csv.ts_unit
        )
        stats = ImportStats()
        events = sorted(filter(keep, import_csv(path, spec, stats=stats)), key=_event_ts)
    except ImportSpecError as exc:
        raise ReplayError(f"--from {path}: {exc}") from None
    return Source("csv", str(path), iter(events), dict(stats.rejected))


def _topic_events(settings: Settings, topic: str, offset: int) -> Iterator[dict[str, Any]]:
    """Every event of ``topic`` from ``offset`` to its end now, partitions merged by ``ts``."""
    from confluent_kafka.admin import AdminClient

    from agents.offsets import read_partition, true_end_offsets
    from streams.codecs import decode_message

    admin = AdminClient({**settings.kafka_client_config(), "log_level": 0})
    # All topics, not this one: asking for one may create it (auto.create.topics.enable).
    metadata = admin.list_topics(timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise ReplayError(f"--from {KAFKA_SOURCE}{topic}: no such topic on {settings.kafka_url}")
    ends = true_end_offsets(
        settings.kafka_client_config(), [(topic, p) for p in metadata.partitions]
    )

    def partition_events(partition: int, end: int) -> Iterator[dict[str, Any]]:
        for value in read_partition(settings.kafka_client_config(), topic, partition, offset, end):
            yield from decode_message(value).events  # undecodable ones were dead-lettered

    streams = [partition_events(p, end) for (_, p), end in sorted(ends.items())]
    return heapq.merge(*streams, key=_event_ts)  # the checks above ran already: not a generator


# -- summary --------------------------------------------------------------------------------


@dataclass
class ReplaySummary:
    """What a replay did: the closing line of ``tastestream replay``."""

    mode: str
    prefix: str
    source: str
    events: int = 0
    users: int = 0
    seconds: float = 0.0
    skipped: int = 0
    complete: bool = True
    rejected: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        rate = self.events / self.seconds if self.seconds > 0 else 0.0
        out = {
            "mode": self.mode,
            "prefix": self.prefix,
            "source": self.source,
            "events": self.events,
            "users": self.users,
            "seconds": round(self.seconds, 2),
            "rate": round(rate, 1),
            "complete": self.complete,
        }
        if self.skipped:
            out["resumed_after"] = self.skipped
        if self.rejected:
            out["rejected"] = self.rejected
        return out


class _Counted:
    """Counts events and distinct users as they pass, for the summary and the progress bar."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.events = 0
        self.users: set[str] = set()

    def __call__(self, events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for event in events:
            self.events += 1
            self.users.add(event["user_id"])
            self.bar.update()
            yield event


# -- --to-topic -----------------------------------------------------------------------------


class Pacer:
    """When each event of a replay is due: event-time spacing / ``speed``, at most ``rate``/s.

    Examples
    --------
    >>> pacer = Pacer(speed=10.0, rate=100.0, start=0.0)
    >>> [round(pacer.due(i, ts), 3) for i, ts in enumerate([50.0, 50.0, 60.0, 61.0])]
    [0.0, 0.01, 1.0, 1.1]
    """

    def __init__(self, speed: float | None, rate: float, start: float) -> None:
        self.speed = speed
        self.rate = rate
        self.start = start
        self.first_ts: float | None = None

    def due(self, index: int, ts: float) -> float:
        """The monotonic time at which the ``index``-th event (0-based) may be sent."""
        at = self.start + index / self.rate
        if self.speed is not None:
            if self.first_ts is None:
                self.first_ts = ts
            at = max(at, self.start + (ts - self.first_ts) / self.speed)
        return at


def progress_path(settings: Settings, identity: dict[str, Any]) -> Path:
    """Where a ``--to-topic`` replay of this source, window and prefix saves its progress."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return settings.data_path / "replay" / settings.topic_prefix / f"{digest}.json"


def _save_progress(path: Path, identity: dict[str, Any], sent: int, complete: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**identity, "sent": sent, "complete": complete}))
    os.replace(tmp, path)


def load_progress(path: Path) -> int:
    """Events a stopped replay had delivered (0 when it never saved progress)."""
    try:
        return int(json.loads(path.read_text())["sent"])
    except FileNotFoundError:
        return 0
    except (ValueError, KeyError, TypeError) as exc:
        raise ReplayError(f"{path}: unreadable replay progress ({exc})", "delete it") from None


def replay_to_topic(
    settings: Settings,
    source: Source,
    identity: dict[str, Any],
    speed: float | None = None,
    rate: float = DEFAULT_RATE,
    resume: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> ReplaySummary:
    """Send the source's events to ``<prefix>.events``, paced, marked as replayed.

    Parameters
    ----------
    settings
        The broker and the prefix to send to.
    source
        From :func:`open_source`.
    identity
        What names this replay (source, window, prefix): its progress file.
    speed, rate
        Pacing (see :class:`Pacer`).
    resume
        Skip the events a stopped run of the same replay delivered.
    should_stop
        Polled between sends (Ctrl-C): the replay stops, flushes and saves progress.
    """
    from agents.producer import EventProducer
    from agents.progress import Progress
    from streams.headers import REPLAY_HEADERS

    path = progress_path(settings, identity)
    skip = load_progress(path) if resume else 0
    summary = ReplaySummary("to-topic", settings.topic_prefix, source.name, skipped=skip)
    summary.rejected = dict(source.rejected)
    producer = EventProducer(settings, headers=REPLAY_HEADERS)
    started = time.monotonic()
    pacer = Pacer(speed, rate, started)
    saved_at = started
    sent = skip
    with Progress("replaying") as bar:
        counted = _Counted(bar)
        # The source's order is deterministic: the first ``skip`` are what was delivered.
        events = counted(itertools.islice(source.events, skip, None))
        for index, event in enumerate(events, start=skip):
            due = pacer.due(index - skip, event["ts"])
            while time.monotonic() < due - TICK_SECONDS and not should_stop():
                producer.producer.poll(0)
                time.sleep(min(TICK_SECONDS, due - time.monotonic()))
            if should_stop():
                summary.complete = False
                break
            producer.send(event)
            sent = index + 1
            if time.monotonic() - saved_at >= PROGRESS_SECONDS:
                _flush(producer)
                _save_progress(path, identity, sent, complete=False)
                saved_at = time.monotonic()
        _flush(producer)
        _save_progress(path, identity, sent, complete=summary.complete)
    summary.events = sent - skip
    summary.users = len(counted.users)
    summary.seconds = time.monotonic() - started
    summary.rejected.update({k: v for k, v in producer.summary.rejected.items()})
    return summary


def _flush(producer: Any) -> None:
    summary = producer.flush()
    if summary.failed:
        raise ReplayError(
            f"the broker refused {summary.failed} events of the replay",
            "check the broker; --resume continues after what it took",
        )


# -- --rebuild ------------------------------------------------------------------------------


def running_workers(settings: Settings, timeout: float = 10.0) -> str | None:
    """The state of the prefix's consumer group when workers are in it, else ``None``.

    The workers' group id is the topic prefix (the Faust app id).
    """
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**settings.kafka_client_config(), "log_level": 0})
    group = settings.topic_prefix
    described = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
    try:
        answer = described.result(timeout)
    except Exception:  # an unknown group: nobody is in it
        return None
    state = getattr(answer.state, "name", str(answer.state))
    if answer.members or state in ACTIVE_GROUP_STATES:
        return state
    return None


def refuse_if_workers_run(settings: Settings) -> None:
    """A :class:`ReplayError` when workers of the prefix run (their state would fight ours)."""
    state = running_workers(settings)
    if state is not None:
        raise ReplayError(
            f"workers of prefix {settings.topic_prefix!r} are running (consumer group "
            f"{settings.topic_prefix!r} is {state})",
            "stop them first; a worker killed without stopping leaves the group after "
            f"session_timeout_seconds ({settings.session_timeout_seconds:g} s)",
        )


def _recreate_changelogs(settings: Settings, timeout: float = 30.0) -> None:
    """Delete the prefix's changelog topics and create them again, empty."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    from agents.provision import broker_topics, ensure_topics

    topics = settings.topics
    names = [topics.user_changelog.name, topics.token_changelog.name]
    existing = [name for name in names if name in broker_topics(settings)]
    admin = AdminClient({**settings.kafka_client_config(), "log_level": 0})
    if existing:
        for future in admin.delete_topics(existing, operation_timeout=timeout).values():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
    deadline = time.monotonic() + timeout
    while True:  # Apache Kafka deletes in the background: create once it is gone
        try:
            if not set(names) & broker_topics(settings):
                ensure_topics(settings)
                return
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        if time.monotonic() > deadline:
            raise ReplayError(f"the changelog topics of {settings.topic_prefix!r} were not deleted")
        time.sleep(0.2)


def write_rebuilt_state(settings: Settings, replica: Any) -> dict[str, int]:
    """Write a folded :class:`~models.stream_state.StreamState` where workers recover from.

    The prefix's changelog topics are recreated and its snapshots removed;
    then per store and partition: a new incarnation marker, one checkpoint
    group of every value, and a snapshot covering both. Returns keys written per store.
    """
    from agents.producer import kafka_producer
    from agents.state import partition_values, state_stores
    from agents.store import Snapshot, checkpoint_group, incarnation_record, write_snapshot

    _recreate_changelogs(settings)
    shutil.rmtree(settings.data_path / "state" / settings.topic_prefix, ignore_errors=True)
    producer = kafka_producer(settings)
    checkpoint = int(time.time() * 1000)
    written: dict[str, int] = {}
    for store in state_stores(settings, replica.config):
        written[store.name] = 0
        for partition in range(settings.partitions):
            values = partition_values(replica, store.name, partition, settings.partitions)
            incarnation = store.new_incarnation()
            records = [incarnation_record(incarnation)]
            records += checkpoint_group(checkpoint, sorted(values.items()))
            last = _send_all(producer, store.changelog, partition, records)
            snapshot = Snapshot(last + 1, incarnation, time.time(), values)
            write_snapshot(store.snapshot_path(partition), snapshot)
            written[store.name] += len(values)
    return written


def _send_all(producer: Any, topic: str, partition: int, records: list[bytes]) -> int:
    """Send records to one partition, in order; return the offset of the last one."""
    offsets: list[int] = []
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            offsets.append(msg.offset())

    for record in records:
        producer.produce(topic, value=record, key=b"", partition=partition, on_delivery=delivered)
        producer.poll(0)
    remaining = producer.flush(30)
    if remaining or errors:
        raise ReplayError(f"writing {topic}[{partition}] failed: {errors[:1] or 'timed out'}")
    return max(offsets)


def rebuild(settings: Settings, source: Source) -> ReplaySummary:
    """Fold the source into an empty state and write it as the prefix's state (workers stopped).

    Raises
    ------
    ReplayError
        When workers of the prefix run.
    """
    from agents.progress import Progress
    from agents.state import state_config
    from models.stream_state import StreamState

    refuse_if_workers_run(settings)
    started = time.monotonic()
    summary = ReplaySummary("rebuild", settings.topic_prefix, source.name)
    summary.rejected = dict(source.rejected)
    replica = StreamState(state_config(settings))
    with Progress("folding") as bar:
        counted = _Counted(bar)
        replica.apply(counted(source.events))
    if not counted.events:
        raise ReplayError(
            f"no events in {source.name} within the window: the state was left as it was",
            "check --from, --since and --until",
        )
    refuse_if_workers_run(settings)  # one may have started while we folded
    write_rebuilt_state(settings, replica)
    summary.events = counted.events
    summary.users = len(counted.users)
    summary.seconds = time.monotonic() - started
    return summary


# -- the verb -------------------------------------------------------------------------------


def add_parser(subparsers: Any, verb: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Register ``replay`` on the ``tastestream`` command line (``verb`` makes the parser)."""
    p = verb("replay", "re-emit a window of events to a topic, or rebuild a prefix's state from it")
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="DIR|FILE|kafka:TOPIC",
        help="an event-log directory (e.g. tastestream-data/eventlog), a JSONL/msgpack or CSV "
        "file, or kafka:TOPIC (a topic with long retention)",
    )
    p.add_argument("--since", default=None, help="only events at or after T (epoch s or ISO)")
    p.add_argument("--until", default=None, help="only events before T (epoch s or ISO)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--to-topic",
        dest="to_topic",
        action="store_true",
        help="send them to <prefix>.events, marked as replayed",
    )
    mode.add_argument(
        "--rebuild",
        action="store_true",
        help="replace the prefix's state with these events folded (its workers stopped)",
    )
    p.add_argument("--prefix", default=None, help="topic prefix (default: the configured one)")
    p.add_argument(
        "--speed",
        type=parse_speed,
        default=None,
        help="--to-topic: keep the events' spacing this much faster (10x), or max (default)",
    )
    p.add_argument(
        "--rate",
        type=positive_float,
        default=DEFAULT_RATE,
        help=f"--to-topic: events per second at most (default {DEFAULT_RATE:g}: live traffic "
        "keeps most of the workers)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="--to-topic: continue a stopped replay of the same source, window and prefix",
    )
    add_csv_options(p)
    p.add_argument(
        "--offset",
        type=int,
        default=0,
        help="kafka:TOPIC: read every partition from this offset (default 0)",
    )
    p.add_argument("--data-dir", dest="data_dir", help="replay progress and state snapshots")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from agents.cli import STOPPING, _print, _settings, handle_stop_signals, require_broker

    settings = _settings(args)
    if args.prefix:
        settings = settings.replace(topic_prefix=args.prefix)
    require_broker(settings, "replay")
    since = parse_time(args.since, "--since") if args.since is not None else None
    until = parse_time(args.until, "--until") if args.until is not None else None
    if since is not None and until is not None and until <= since:
        raise ReplayError(f"--until {args.until} is not after --since {args.since}")
    if not args.to_topic and (args.resume or args.speed is not None):
        raise ReplayError("--resume and --speed go with --to-topic", "a rebuild is just re-run")
    from agents.provision import ensure_topics

    ensure_topics(settings)
    source = open_source(args.source, settings, since, until, csv_options(args), args.offset)
    if args.rebuild:
        summary = rebuild(settings, source)
    else:
        identity = {
            "source": str(Path(args.source).resolve()) if source.kind != "kafka" else args.source,
            "since": since,
            "until": until,
            "prefix": settings.topic_prefix,
            "offset": args.offset,
        }
        handle_stop_signals()
        summary = replay_to_topic(
            settings, source, identity, args.speed, args.rate, args.resume, STOPPING.is_set
        )
    out = summary.as_dict()
    if not summary.complete:
        out["hint"] = "stopped: run again with --resume to continue"
    _print(json.dumps(out))
    return 0 if summary.complete else 130
