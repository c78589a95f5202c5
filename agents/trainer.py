"""The trainer: ``tastestream train`` and ``tastestream model list|rollback``.

    tastestream train --once             train on the whole event log, publish, announce
    tastestream train --every 30m        the same in a loop (90s, 30m, 2h, 1d)
    tastestream train --once --events FILE   train on a JSONL / msgpack file instead
    tastestream model list               versions, data range, metrics, which is CURRENT
    tastestream model rollback [--to V]  CURRENT back to the previous (or given) version

Training reads everything the workers accepted (:func:`streams.eventlog.read_logs`
over ``<data_dir>/eventlog``), trains a version with
:func:`models.training.train_version` in this process (never in a worker's event
loop), writes it atomically under ``<data_dir>/models`` (and copies it into
every ``model_publish_dirs`` root), points ``CURRENT`` at it and announces it
on ``<prefix>.model-updates`` as JSON
``{"action": "publish", "version", "path", "checksum", "created_at"}``.
Workers load it in the background and switch (see :mod:`agents.serving`).

Examples
--------
>>> parse_interval("30m"), parse_interval("2h"), parse_interval("90s"), parse_interval("45")
(1800.0, 7200.0, 90.0, 45.0)
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agents.cli_io import add_output_options, add_wait_timeout, positive_int
from agents.settings import Settings

if TYPE_CHECKING:  # imported where used: `tastestream --help` must not load numpy and scipy
    from models.model_version import VersionInfo
    from models.training import TrainingParams
    from streams.importer import ImportSpec

log = logging.getLogger("tastestream.trainer")

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
ANNOUNCE_KEY = b"models"


class TrainerError(Exception):
    """A failure the operator can act on; the CLI prints it and exits 2."""


def parse_interval(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``2h``, ``1d`` or a bare number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"interval {text!r}: use e.g. 90s, 30m, 2h or 1d")
    return float(match.group(1)) * _UNITS.get(match.group(2) or "s", 1.0)


def _out(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------- input
def read_input(
    settings: Settings, events_file: str | None, spec: ImportSpec | None = None
) -> Iterator[dict[str, Any]]:
    """The training events: the whole durable event log, or a file (a CSV log with ``spec``)."""
    if events_file:
        return _file_events(events_file, spec)
    from streams.eventlog import EventLogError, log_directories, read_logs

    root = settings.eventlog_path
    try:
        if not log_directories(root):
            raise EventLogError("empty")
    except EventLogError:
        raise TrainerError(
            f"no events yet in {root}: run the worker/demo first (or pass --events FILE)"
        ) from None
    return read_logs(root)


def _file_events(path: str, spec: ImportSpec | None) -> Iterator[dict[str, Any]]:
    from agents.event_input import InputError, read_events

    rejected: Counter = Counter()
    try:
        yield from read_events(path, rejected, spec)
    except InputError as exc:
        raise TrainerError(f"--events {exc}") from None
    if rejected:
        log.warning("--events %s: skipped %s", path, dict(rejected))


# ------------------------------------------------------------------ publish
def announce(settings: Settings, message: dict[str, Any], timeout: float = 15.0) -> bool:
    """Send one announcement to ``<prefix>.model-updates``; False when no broker is set."""
    if not settings.kafka_url:
        _out("no kafka_url set: not announced (workers pick CURRENT up when they poll or restart)")
        return False
    from confluent_kafka import KafkaException, Producer

    from agents.provision import ensure_topics

    try:
        ensure_topics(settings)
        errors: list[str] = []
        producer = Producer({**settings.kafka_client_config(), "log_level": 3})
        producer.produce(
            settings.topics.model_updates.name,
            key=ANNOUNCE_KEY,
            value=json.dumps(message).encode(),
            on_delivery=lambda err, msg: errors.append(str(err)) if err else None,
        )
        remaining = producer.flush(timeout)
    except KafkaException as exc:
        raise TrainerError(f"announcing on {settings.kafka_url} failed: {exc}") from None
    if remaining or errors:
        raise TrainerError(
            f"announcement not delivered to {settings.kafka_url}: {errors or 'timed out'}"
        )
    return True


def publish(settings: Settings, trained: Any, source: str, candidate: bool = False) -> VersionInfo:
    """Write the version in every models root, point CURRENT at it, announce it.

    A ``candidate`` is only written: ``tastestream model shadow`` scores it and
    ``model promote`` makes it CURRENT (:mod:`agents.shadow`).
    """
    from agents.serving import models_roots
    from models.model_version import copy_version, set_current, write_version

    roots = models_roots(settings)
    info = write_version(roots[0], trained, {"source": source})
    for root in roots[1:]:
        copy_version(info, root)
    if candidate:
        return info
    for root in roots:
        set_current(root, info.version)
    announce(settings, info.announcement("publish"))
    return info


def _progress(info: dict[str, Any]) -> None:
    stage = info["stage"]
    if "epoch" in info:
        # at most five lines per stage: a 50-epoch run would otherwise fill the log
        epoch, epochs = info["epoch"], info["epochs"]
        if epoch != epochs and epoch % max(1, epochs // 5):
            return
        text = (
            f"  {stage:13s} epoch {info['epoch']:>3}/{info['epochs']:<3} "
            f"loss {info['loss']:.4f}  {info['elapsed']:7.1f}s"
        )
    else:
        text = f"  {stage:13s} {info.get('tokens', '')} tokens  {info['elapsed']:7.1f}s"
    print(text, file=sys.stderr, flush=True)


#: Event passes an automatic choice of epochs may spend: 20 epochs of 50k events.
EPOCH_BUDGET = 1_000_000
#: Epochs at most (small logs) and at least (the embedding's default,
#: ``EmbeddingParams.epochs``: 20, measured on real logs, benchmarks/RESULTS.md).
MAX_EPOCHS, MIN_EPOCHS = 50, 20


def epochs_for(events: int) -> int:
    """Embedding epochs for a log of ``events``: more passes over a small log, within a budget.

    On a few thousand events few passes leave the embedding unconverged (no
    category structure; ``benchmarks/map_structure.py``), and a pass costs
    little there; from 50k events on it is the embedding's default, 20.

    Examples
    --------
    >>> epochs_for(5_000), epochs_for(24_000), epochs_for(100_000), epochs_for(2_000_000)
    (50, 42, 20, 20)
    """
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, round(EPOCH_BUDGET / max(events, 1)))))


def train_once(
    settings: Settings,
    events_file: str | None,
    params: TrainingParams,
    epochs_by_size: bool = False,
    candidate: bool = False,
    spec: ImportSpec | None = None,
) -> VersionInfo:
    """One training run: read, train, publish. Raises :class:`TrainerError`.

    With ``epochs_by_size``, the embedding's epochs are :func:`epochs_for` the
    number of events read (the CLI's default when ``--epochs`` is not given).
    A ``candidate`` is written but not made CURRENT nor announced. ``spec``
    reads ``events_file`` as a CSV log.
    """
    from models.training import NotEnoughData, train_version

    started = time.monotonic()
    events = list(read_input(settings, events_file, spec))
    source = events_file or str(settings.eventlog_path)
    if not events:
        raise TrainerError(f"no events yet in {source}: run the worker/demo first")
    if epochs_by_size:
        params.embedding.epochs = epochs_for(len(events))
    _out(
        f"training on {len(events):,} events from {source} "
        f"({params.embedding.epochs} embedding epochs)"
    )
    try:
        trained = train_version(events, params, progress=_progress)
    except NotEnoughData as exc:
        raise TrainerError(f"too few events to train: {exc}") from None
    info = publish(settings, trained, source, candidate)
    m = trained.metrics
    _out(
        f"{'wrote candidate' if candidate else 'published'} {info.version} "
        f"({m['vocab']:,} tokens, {m['users']:,} users, "
        f"{m['items']:,} items) in {time.monotonic() - started:.1f}s: {info.path}"
    )
    return info


def count_logged_events(settings: Settings) -> int:
    """Events in the durable event log (0 before the first worker wrote any)."""
    from streams.eventlog import EventLogError, log_directories, read_logs

    try:
        if not log_directories(settings.eventlog_path):
            return 0
    except EventLogError:
        return 0
    return sum(1 for _ in read_logs(settings.eventlog_path))


def _has_new_events(settings: Settings, events_file: str | None) -> bool:
    """Whether the log holds events the current version did not see (cheap check)."""
    if events_file:
        return True
    from agents.serving import models_roots
    from models.model_version import current_version, list_versions

    roots = models_roots(settings)
    current = current_version(roots[0])
    versions = {v.version: v for v in list_versions(roots[0])}
    if current not in versions:
        return True
    seen = versions[current].data
    return count_logged_events(settings) != seen.get("events")


def wait_for_logged_events(settings: Settings, wanted: int, poll_seconds: float = 2.0) -> int:
    """Block until the event log holds ``wanted`` events; return the count then."""
    _out(f"the first model trains once {settings.eventlog_path} holds {wanted:,} events")
    while True:
        count = count_logged_events(settings)
        if count >= wanted:
            return count
        time.sleep(poll_seconds)


def wait_for_ingest(settings: Settings, timeout: float) -> None:
    """Block until the workers applied everything on the events topic now (or raise).

    The targets are the topic's end offsets at the call; the workers' consumer
    group must commit up to them (see :mod:`agents.applied`).
    """
    if not settings.kafka_url:
        raise TrainerError("--wait-for-ingest needs the broker: set TASTESTREAM_KAFKA_URL")
    from agents.applied import events_end_offsets, reached, wait_until_applied
    from agents.progress import Progress

    ends = events_end_offsets(settings)
    total = sum(ends.values())

    def done(committed: dict[int, int]) -> int:
        return sum(min(committed.get(p, 0), end) for p, end in ends.items())

    with Progress("ingested by the workers", total=total, unit="messages") as bar:
        committed = wait_until_applied(
            settings, ends, timeout, on_poll=lambda c: bar.update_to(done(c))
        )
    if not reached(committed, ends):
        raise TrainerError(
            f"the workers applied {done(committed):,} of {total:,} messages of "
            f"{settings.topics.events.name} within {timeout:g} s (is a worker running on this "
            "broker and prefix? raise --wait-timeout for a long backlog)"
        )


# ---------------------------------------------------------------- commands
def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.load()
    data_dir = getattr(args, "data_dir", None)
    return settings.replace(data_dir=data_dir) if data_dir else settings


def _params(args: argparse.Namespace) -> TrainingParams:
    from models.training import TrainingParams

    params = TrainingParams(seed=args.seed)
    if args.epochs is not None:
        params.embedding.epochs = args.epochs
    if args.dim is not None:
        params.embedding.dim = args.dim
    return params


def cmd_train(args: argparse.Namespace) -> int:
    from agents.event_input import InputError, import_spec

    settings = _settings(args)
    params = _params(args)
    try:
        spec = import_spec(args)
    except InputError as exc:
        print(f"tastestream train: {exc}", file=sys.stderr)
        return 2
    try:
        if args.every is None:
            if args.wait_for_ingest:
                wait_for_ingest(settings, args.wait_timeout)
            train_once(settings, args.events, params, args.epochs is None, args.candidate, spec)
            return 0
        _out(f"training every {args.every:g}s; Ctrl-C to stop")
        if args.first_after_events and not args.events:
            wait_for_logged_events(settings, args.first_after_events)
        while True:
            try:
                if args.wait_for_ingest:
                    wait_for_ingest(settings, args.wait_timeout)
                if _has_new_events(settings, args.events):
                    train_once(
                        settings, args.events, params, args.epochs is None, args.candidate, spec
                    )
                else:
                    _out("no new events since the current version; not training")
            except TrainerError as exc:  # the loop lives on: the log fills up later
                _out(f"tastestream train: {exc}")
            time.sleep(args.every)
    except TrainerError as exc:
        print(f"tastestream train: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _ts(value: Any) -> str:
    if value is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(float(value)))


def _loss(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def cmd_model_list(args: argparse.Namespace) -> int:
    from agents.serving import models_roots
    from models.model_version import current_version, list_versions

    settings = _settings(args)
    root = models_roots(settings)[0]
    versions = list_versions(root)
    if not versions:
        _out(f"no model versions in {root}: run `tastestream train --once`")
        return 0
    current = current_version(root)
    _out(
        f"  {'version':26s} {'created (UTC)':20s} {'data from':16s}  {'data to':16s} "
        f"{'events':>9s} {'tokens':>7s} {'emb loss':>8s} {'mf loss':>8s}"
    )
    for v in versions:
        m, d = v.metrics, v.data
        emb, mf = (_loss(m.get(key)) for key in ("embedding_loss", "factorization_loss"))
        _out(
            f"{'*' if v.version == current else ' '} {v.version:26s} {v.created_at:20s} "
            f"{_ts(d.get('first_ts')):16s}  {_ts(d.get('last_ts')):16s} "
            f"{d.get('events', 0):>9,} {m.get('vocab', 0):>7,} "
            f"{emb:>8s} {mf:>8s}"
        )
    _out(f"* = CURRENT ({root})")
    return 0


def rollback(settings: Settings, to: str | None = None) -> VersionInfo:
    """Point CURRENT at ``to`` (default: the version before CURRENT) and announce it."""
    from agents.serving import models_roots
    from models.model_version import current_version, list_versions, set_current

    roots = models_roots(settings)
    versions = [v.version for v in list_versions(roots[0])]
    current = current_version(roots[0])
    if to is None:
        if current not in versions:
            raise TrainerError("no CURRENT version to roll back from")
        position = versions.index(current)
        if position == 0:
            raise TrainerError(f"{current} is the oldest version; nothing to roll back to")
        to = versions[position - 1]
    elif to not in versions:
        raise TrainerError(f"no version {to!r} in {roots[0]} (see `tastestream model list`)")
    info = set_current(roots[0], to)
    for root in roots[1:]:
        set_current(root, to)
    announce(settings, info.announcement("rollback"))
    return info


def cmd_model_rollback(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        info = rollback(settings, args.to)
    except TrainerError as exc:
        print(f"tastestream model rollback: {exc}", file=sys.stderr)
        return 2
    _out(f"CURRENT is now {info.version}")
    return 0


def add_parsers(subparsers: Any, verb: Any = None) -> None:
    """Add ``train`` and ``model`` to the ``tastestream`` command line.

    ``verb(name, help)`` makes a verb's parser (the CLI's, with its output
    options); default: ``subparsers.add_parser``.
    """
    verb = verb or (lambda name, text: subparsers.add_parser(name, help=text, description=text))

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", dest="data_dir", help="event log and models directory")

    p = verb("train", "train a model version, publish and announce it")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--once", action="store_true", help="train once and exit")
    when.add_argument("--every", type=parse_interval, help="train in a loop, e.g. 90s, 30m, 2h, 1d")
    p.add_argument(
        "--events",
        default=None,
        help="JSONL/msgpack events (or a CSV log with --columns) instead of the log",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the training (default 0)")
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="embedding epochs (default: by log size, at least 20)",
    )
    p.add_argument(
        "--dim", type=positive_int, default=None, help="embedding dimension (default 64)"
    )
    p.add_argument(
        "--first-after-events",
        dest="first_after_events",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --every: train the first version as soon as the log holds N events, "
        "then on the schedule",
    )
    p.add_argument(
        "--wait-for-ingest",
        dest="wait_for_ingest",
        action="store_true",
        help="first wait until the workers have applied everything on the events topic",
    )
    add_wait_timeout(p, "--wait-for-ingest")
    p.add_argument(
        "--candidate",
        action="store_true",
        help="write the version without making it CURRENT nor announcing it; "
        "`model shadow` scores it, `model promote` makes it live",
    )
    data_dir(p)
    from agents.event_input import add_import_options

    add_import_options(p, required=False)
    p.set_defaults(func=cmd_train)

    p = verb("model", "list model versions or roll back")
    model_sub = p.add_subparsers(dest="model_command", required=True, parser_class=type(p))
    q = model_sub.add_parser("list", help="versions, data range, metrics, CURRENT")
    q.set_defaults(func=cmd_model_list, verb_parser=q)
    add_output_options(q, argparse.SUPPRESS)
    data_dir(q)
    q = model_sub.add_parser("rollback", help="CURRENT back to the previous version")
    q.add_argument("--to", default=None, help="this version instead of the previous one")
    q.set_defaults(func=cmd_model_rollback, verb_parser=q)
    add_output_options(q, argparse.SUPPRESS)
    data_dir(q)
    from agents.shadow import add_model_parsers

    add_model_parsers(model_sub, data_dir)


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.trainer ...``: the same commands without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="tastestream")
    add_output_options(parser)
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
