"""The ``tastestream`` command line: one console script for every role.

Verbs (``tastestream VERB --help`` lists each one's options)::

    demo       broker + Redis + worker + trainer + simulated clickstream, until Ctrl-C
    worker     the Faust worker (ingest, state, HTTP API)
    broker     only the embedded Kafka-compatible broker
    produce    send JSONL / msgpack events from a file or stdin (--wait: until applied)
    simulate   a synthetic clickstream, to the topic or to a JSONL file
    import     convert a CSV log into contract events
    kcat       Debian's kcat with a librdkafka that speaks to the embedded broker
    train      train a model version (--once | --every 30m), publish and announce it
    model      list model versions, or roll CURRENT back
    evaluate   offline hit rate / AUC of the candidate generators on an event file
    replay     re-emit a window of events to a topic, or rebuild a prefix's state from it
    state      a checksum per store and partition of a prefix's state
    experiment start, ramp, stop or list A/B experiments (every worker follows)

Settings come from deploy/tastestream.toml and ``TASTESTREAM_*`` variables.
Errors are one line with the cause and a hint, exit code 2; ``--debug`` shows
the traceback. Output files are written under a temporary name and renamed
when complete.

The parser is the standard library's argparse: no install weight, the fastest
start-up (``tastestream --help`` imports no numpy), and the verbs of
:mod:`agents.trainer` and :mod:`agents.evaluate_command` register themselves on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from agents.cli_io import (
    CliError,
    add_output_options,
    add_wait_timeout,
    atomic_output,
    describe_error,
    open_input,
    positive_float,
    positive_int,
)
from agents.settings import Settings
from agents.stack import StackError, start_stack

log = logging.getLogger("tastestream")


class Stop(Exception):
    """Raised on a second SIGTERM/SIGINT: stop now, cleanup still runs."""


#: Set by the first SIGTERM/SIGINT: loops finish their step and return.
STOPPING = threading.Event()


def _request_stop(signum: int, frame: Any) -> None:
    # A flag, not an exception: an exception raised while librdkafka runs a
    # delivery callback can be swallowed there, and the stop would be lost.
    if STOPPING.is_set():
        raise Stop(signal.Signals(signum).name)
    STOPPING.set()


def handle_stop_signals() -> None:
    STOPPING.clear()
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.load()
    overrides = {}
    for name in ("web_port", "partitions", "data_dir"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return settings.replace(**overrides) if overrides else settings


def _print(msg: str) -> None:
    print(msg, flush=True)


# -- broker -------------------------------------------------------------------


def cmd_broker(args: argparse.Namespace) -> int:
    from agents.provision import ensure_topics
    from agents.stack import embedded_broker

    settings = _settings(args)
    broker = embedded_broker(port=args.port, host=args.host)
    handle_stop_signals()
    broker.start()
    try:
        url = f"kafka://{broker.host}:{broker.port}"
        ensure_topics(settings.replace(kafka_url=url))
        _print(f"broker ready: {url}  (bootstrap.servers={broker.host}:{broker.port})")
        _print(f"  export TASTESTREAM_KAFKA_URL={url}")
        _print("memory only: topics and messages are gone when it stops. Ctrl-C to stop.")
        while broker.running and not STOPPING.is_set():
            time.sleep(0.2)
        return 0 if STOPPING.is_set() else 1
    except (KeyboardInterrupt, Stop):
        return 0
    finally:
        broker.stop()


# -- worker -------------------------------------------------------------------


def run_worker(settings: Settings) -> int:
    """Run the Faust worker in this process until it is stopped."""
    import faust

    from agents.app import create_app
    from agents.provision import ensure_topics

    ensure_topics(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    # Faust's terminal spinner turns the root logger to DEBUG, so every debug()
    # call in aiokafka and Faust builds a LogRecord: ~10% of a worker's CPU.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    # One BLAS thread per worker: requests run concurrently on the event loop and
    # a worker per core scales out; BLAS threads would only fight over the cores.
    # (Set before numpy is first imported, which happens in create_app.)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    settings = _settings(args)
    stack = start_stack(settings.kafka_url, settings.redis_url, settings.data_path / "stack")
    try:
        if stack.services:
            _print(f"embedded stack: kafka {stack.kafka_url}  redis {stack.redis_url}")
        settings = settings.replace(kafka_url=stack.kafka_url, redis_url=stack.redis_url)
        return run_worker(settings)
    finally:
        stack.stop()


# -- produce ------------------------------------------------------------------


def require_broker(settings: Settings, verb: str) -> None:
    """A :class:`CliError` when no broker is configured for a verb that sends to Kafka."""
    if not settings.kafka_url:
        raise CliError(
            f"{verb} needs a broker: set TASTESTREAM_KAFKA_URL",
            "`tastestream broker` or `tastestream demo` prints the export line",
        )


def wait_for_workers(settings: Settings, producer: Any, timeout: float) -> int:
    """Wait until the workers applied everything ``producer`` sent; return the events applied.

    Progress is drawn as the workers' committed offsets move; a
    :class:`CliError` says how far they got when ``timeout`` passes first.
    """
    from agents.applied import applied_events, reached, wait_until_applied
    from agents.progress import Progress

    total = producer.summary.sent
    ends = producer.delivered_ends()
    with Progress("applied by the workers", total=total) as bar:
        committed = wait_until_applied(
            settings,
            ends,
            timeout,
            on_poll=lambda c: bar.update_to(applied_events(c, producer.delivered)),
        )
    applied = applied_events(committed, producer.delivered)
    if not reached(committed, ends):
        raise CliError(
            f"the workers applied {applied:,} of {total:,} events within {timeout:g} s "
            f"(consumer group {settings.topic_prefix!r} on {producer.topic})",
            "is a worker running on this broker and prefix? start one with `tastestream worker`, "
            "or raise --wait-timeout",
        )
    return applied


def cmd_produce(args: argparse.Namespace) -> int:
    from agents.producer import EventProducer, read_event_file
    from agents.progress import Progress
    from agents.provision import ensure_topics

    settings = _settings(args)
    require_broker(settings, "produce")
    stream = open_input(args.file)  # a missing, empty or directory path fails before Kafka
    with stream:
        ensure_topics(settings)
        producer = EventProducer(settings, batch_size=args.batch_size)
        undecodable: Counter = Counter()
        with Progress("sending") as bar:
            for raw in read_event_file(stream, undecodable, name=args.file):
                producer.send(raw)
                bar.update()
    summary = producer.flush()
    summary.rejected.update(undecodable)
    result: dict[str, Any] = {"topic": producer.topic, **summary.as_dict()}
    try:
        if args.wait and summary.sent:
            result["applied"] = wait_for_workers(settings, producer, args.wait_timeout)
    finally:
        _print(json.dumps(result))
    return 0 if not summary.failed else 1


# -- simulate -----------------------------------------------------------------

#: Users of the first simulated events that the demo remembers (one is named in its banner).
FIRST_USERS = 50


def _simulator(args: argparse.Namespace):
    from models.simulator import ClickstreamSimulator, SimulatorConfig

    try:
        config = SimulatorConfig(users=args.users, items=args.items, seed=args.seed)
        return ClickstreamSimulator(config)
    except ValueError as exc:  # sizes the simulator cannot build a catalogue from
        raise CliError(
            f"the simulator cannot run with --users {args.users} --items {args.items}: {exc}",
            f"use --items {SimulatorConfig.categories} or more: one item per category at least",
        ) from None


def produce_live(
    settings: Settings,
    simulator: Any,
    rate: float,
    duration: float | None,
    first_users: list[str] | None = None,
) -> int:
    """Send simulated events at ``rate`` per second (wall-clock ts) until ``duration`` ends.

    The user ids of the first events sent are appended to ``first_users`` (at
    most :data:`FIRST_USERS`): the demo names one of them in its banner.
    """
    from agents.producer import EventProducer

    producer = EventProducer(settings, batch_size=max(1, min(100, int(rate / 20) or 1)))
    started = time.monotonic()
    sent = 0
    tick = 0.05
    events = simulator.live_events(time.time)
    try:
        while (duration is None or time.monotonic() - started < duration) and not (
            STOPPING.is_set()
        ):
            due = int((time.monotonic() - started) * rate) - sent
            for _ in range(max(due, 0)):
                event = next(events)
                producer.send(event)
                sent += 1
                if first_users is not None and len(first_users) < FIRST_USERS:
                    first_users.append(event["user_id"])
            producer.flush() if due > 0 else None
            time.sleep(tick)
    finally:
        producer.flush()
    return sent


def cmd_simulate(args: argparse.Namespace) -> int:
    from agents.progress import Progress
    from agents.provision import ensure_topics
    from models.simulator import write_jsonl

    simulator = _simulator(args)
    if args.out:
        if args.events is None:
            raise CliError("--out needs --events N", "how many events to write")
        with atomic_output(args.out) as tmp, Progress("simulating", total=args.events) as bar:

            def counted():
                for event in simulator.events(args.events):
                    bar.update()
                    yield event

            n = write_jsonl(counted(), tmp)
        _print(json.dumps({"events": n, "out": args.out}))
        return 0
    settings = _settings(args)
    require_broker(settings, "simulate without --out")
    ensure_topics(settings)
    if args.events is not None:
        from agents.producer import EventProducer

        producer = EventProducer(settings)
        with Progress("sending", total=args.events) as bar:
            for event in simulator.events(args.events):
                producer.send(event)
                bar.update()
        summary = producer.flush()
        _print(json.dumps(summary.as_dict()))
        return 0
    handle_stop_signals()
    sent = produce_live(settings, simulator, args.rate, args.duration)
    _print(json.dumps({"sent": sent}))
    return 0


# -- demo ---------------------------------------------------------------------


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if STOPPING.is_set():
            raise Stop("stopped while waiting for the worker")
        if proc is not None and proc.poll() is not None:
            raise StackError(f"worker exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:
            last = exc
        time.sleep(0.2)
    raise StackError(f"{url} did not answer within {timeout:.0f} s ({last})")


def spawn_role(
    settings: Settings, argv: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """``tastestream ARGV`` as a child that dies with us (PR_SET_PDEATHSIG), logging to a file."""
    from agents.stack import die_with_parent

    child_env = dict(os.environ)
    child_env.update(
        {
            "TASTESTREAM_KAFKA_URL": settings.kafka_url,
            "TASTESTREAM_REDIS_URL": settings.redis_url,
            "TASTESTREAM_WEB_PORT": str(settings.web_port),
            "TASTESTREAM_DATA_DIR": str(settings.data_path),
            "TASTESTREAM_PARTITIONS": str(settings.partitions),
        }
    )
    child_env.update(env or {})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "agents.cli", *argv],
            env=child_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )


def stop_processes(procs: list[subprocess.Popen | None], timeout: float = 20.0) -> None:
    """SIGTERM all at once, wait up to ``timeout`` in total, SIGKILL what is left."""
    running = [p for p in procs if p is not None and p.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


#: Events before the demo's first model, in seconds of simulated traffic at its rate.
FIRST_MODEL_SECONDS = 25.0


def user_with_events(base: str, candidates: list[str]) -> str | None:
    """The first of ``candidates`` whose history the worker at ``base`` answers (200)."""
    for user in list(dict.fromkeys(candidates)):
        try:
            with urllib.request.urlopen(f"{base}/users/{user}/history?limit=1", timeout=2) as r:
                if r.status == 200:
                    return user
        except OSError:  # 404 until the user's events are applied; refused while starting
            continue
    return None


def wait_for_user(
    base: str, candidates: list[str], timeout: float, proc: subprocess.Popen | None = None
) -> str | None:
    """Poll until one of ``candidates`` (filled by the producer) has events; None at timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not STOPPING.is_set():
        if proc is not None and proc.poll() is not None:
            raise StackError(f"the worker exited with code {proc.returncode}")
        user = user_with_events(base, candidates)
        if user is not None:
            return user
        time.sleep(0.3)
    return None


def demo_banner(
    settings: Settings, base: str, user: str | None, logs: Path, train: str, first: int, rate: float
) -> str:
    """What the demo prints once a user has events: where to look, how to connect your own."""
    prefix = settings.topic_prefix
    lines = ["", "tastestream demo is running."]
    if user is not None:
        lines += [
            f"  page:  {base}/ui/users/{user}   (a user with events; {base}/ goes there too)",
            f"  API:   {base}/users/{user}/recommendations?surface=home",
        ]
    else:
        lines += [f"  page:  {base}/   (no user's events were applied yet; it fills in shortly)"]
    lines += [
        f"  more:  {base}/users/{{user_id}}/history, {base}/models, {base}/metrics",
        f"Your own producers and consumers: bootstrap.servers={settings.kafka_bootstrap}, "
        f"topic {settings.topics.events.name} (key: user_id)",
        f"  export TASTESTREAM_KAFKA_URL={settings.kafka_url}",
        f"  export TASTESTREAM_REDIS_URL={settings.redis_url}",
        f"  export TASTESTREAM_TOPIC_PREFIX={prefix}",
        "  then: tastestream produce events.jsonl --wait   or   tastestream kcat -- -L",
    ]
    if train:
        lines.append(
            f"Models: the first trains after {first:,} events (about {first / rate:.0f} s "
            f"at {rate:g} events/s), then every {train}."
        )
    lines += [f"Logs: {logs}/ (worker.log, trainer.log). Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    from agents.provision import ensure_topics

    settings = _settings(args)
    # the children (worker, trainer) log warnings only, unless --log-level says otherwise
    os.environ.setdefault("TASTESTREAM_LOG_LEVEL", "warning")
    handle_stop_signals()
    stack = start_stack(settings.kafka_url, settings.redis_url, settings.data_path / "stack")
    worker = trainer = None
    traffic: threading.Thread | None = None
    try:
        settings = settings.replace(kafka_url=stack.kafka_url, redis_url=stack.redis_url)
        ensure_topics(settings)
        logs = settings.data_path / "logs"
        worker_log = logs / "worker.log"
        worker = spawn_role(settings, ["worker"], worker_log)
        base = f"http://{settings.web_host}:{settings.web_port}"
        try:
            wait_http(base + "/health", timeout=90, proc=worker)
        except StackError:
            tail = worker_log.read_text(errors="replace")[-3000:] if worker_log.exists() else ""
            raise StackError(
                f"the worker did not come up; its log ({worker_log}):\n{tail}"
            ) from None
        first_model = args.first_model_after or max(1000, int(args.rate * FIRST_MODEL_SECONDS))
        if args.train_every:
            trainer = spawn_role(
                settings,
                ["train", "--every", args.train_every, "--first-after-events", str(first_model)],
                logs / "trainer.log",
            )
        _print(
            f"simulated clickstream: {args.users} users, {args.items} items, "
            f"{args.rate:g} events/s; waiting for the worker to apply the first events ..."
        )
        first_users: list[str] = []
        outcome: dict[str, Any] = {}

        def run_traffic() -> None:
            try:
                outcome["sent"] = produce_live(
                    settings, _simulator(args), args.rate, args.duration, first_users
                )
            except BaseException as exc:  # re-raised in the main thread
                outcome["error"] = exc
                STOPPING.set()

        traffic = threading.Thread(target=run_traffic, name="demo-traffic", daemon=True)
        traffic.start()
        user = wait_for_user(base, first_users, timeout=60, proc=worker)
        if not STOPPING.is_set():
            _print(
                demo_banner(settings, base, user, logs, args.train_every, first_model, args.rate)
            )
        while traffic.is_alive():
            traffic.join(0.2)  # a timed join: signals still reach the main thread
        if "error" in outcome:
            raise outcome["error"]
        if STOPPING.is_set():
            _print("stopping ...")
        _print(json.dumps({"sent": outcome.get("sent", 0)}))
        return 0
    except (KeyboardInterrupt, Stop):
        _print("stopping now ...")
        STOPPING.set()
        return 0
    finally:
        STOPPING.set()
        if traffic is not None:
            traffic.join(10)
        stop_processes([trainer, worker])
        stack.stop()


# -- import -------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    from agents.event_input import import_spec, read_events
    from agents.progress import Progress

    spec = import_spec(args)  # InputError (a CliError): one line, exit 2
    rejected: Counter = Counter()
    rows = [0]
    with Progress("importing", unit="rows") as bar:

        def counted(read: int) -> None:
            bar.update(read - rows[0])
            rows[0] = read

        importer = read_events(args.file, rejected, spec, progress=counted)
        if args.out:
            from agents.producer import write_jsonl

            with atomic_output(args.out) as tmp, open(tmp, "w") as out:
                written = write_jsonl(importer, out)
            result: dict[str, Any] = {"written": written, "out": args.out}
        else:
            from agents.producer import EventProducer

            settings = _settings(args)
            require_broker(settings, "import without --out")
            producer = EventProducer(settings)
            producer.send_many(importer)
            result = producer.flush().as_dict()
    accepted = rows[0] - sum(rejected.values())
    result.update(rows=rows[0], accepted=accepted, rejected=dict(rejected))
    _print(json.dumps(result))
    return 0


# -- kcat ---------------------------------------------------------------------


def cmd_kcat(args: argparse.Namespace) -> int:
    from agents.kcat import names_broker, run_kcat

    kcat_args = list(args.kcat_args)
    if kcat_args[:1] == ["--"]:
        kcat_args = kcat_args[1:]
    if not kcat_args:
        raise CliError("no kcat arguments", "e.g. tastestream kcat -- -L (see kcat -h)")
    settings = Settings.load()
    if not settings.kafka_url and not names_broker(kcat_args):
        raise CliError(
            "which broker? set TASTESTREAM_KAFKA_URL or pass -b host:port",
            "`tastestream demo` and `tastestream broker` print the export line",
        )
    return run_kcat(kcat_args, settings.kafka_bootstrap, print_only=args.print_only)


# -- parser -------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at the verb's ``--help``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("tastestream")
    except PackageNotFoundError:  # run from a source tree that was never installed
        number = "unknown"
    return f"tastestream {number} (Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    """The ``tastestream`` parser: every verb with only the options that mean something to it."""
    parser = Parser(
        prog="tastestream",
        description="A streaming personalization engine: Kafka clickstream in, "
        "fresh recommendations out. Settings: deploy/tastestream.toml and TASTESTREAM_* "
        "variables.",
        epilog="tastestream VERB --help shows a verb's options.",
    )
    parser.add_argument("--version", action="version", version=_version())
    add_output_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="VERB", parser_class=Parser)
    parser.verbs = sub.choices  # type: ignore[attr-defined]  # named when no verb is given

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:])
        add_output_options(p, argparse.SUPPRESS)
        p.set_defaults(verb_parser=p)
        return p

    def web_port(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--web-port", dest="web_port", type=positive_int, help="HTTP port (default 6066)"
        )

    def partitions(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--partitions",
            type=positive_int,
            help="partitions of the per-user topics when they are created (default 4)",
        )

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            dest="data_dir",
            help="event log, state, models and logs (default tastestream-data)",
        )

    def simulation(p: argparse.ArgumentParser, rate: float) -> None:
        p.add_argument("--users", type=positive_int, default=1000, help="simulated users")
        p.add_argument("--items", type=positive_int, default=5000, help="simulated items")
        p.add_argument("--seed", type=int, default=0, help="simulator seed: same seed, same stream")
        p.add_argument(
            "--rate", type=positive_float, default=rate, help=f"events/s (default {rate:g})"
        )
        p.add_argument(
            "--duration",
            type=positive_float,
            default=None,
            help="seconds of traffic; default: until Ctrl-C",
        )

    p = verb("demo", "the whole stack with a simulated clickstream, until Ctrl-C")
    simulation(p, rate=200.0)
    p.add_argument(
        "--train-every",
        dest="train_every",
        default="2m",
        help="retrain and publish a model this often (e.g. 90s, 2m; '' to turn off)",
    )
    p.add_argument(
        "--first-model-after",
        dest="first_model_after",
        type=positive_int,
        default=None,
        metavar="EVENTS",
        help=f"train the first model once this many events are logged "
        f"(default: {FIRST_MODEL_SECONDS:g} s of traffic at --rate)",
    )
    web_port(p)
    partitions(p)
    data_dir(p)
    p.set_defaults(func=cmd_demo)

    p = verb("worker", "run the Faust worker (ingest, state, HTTP API)")
    web_port(p)
    partitions(p)
    data_dir(p)
    p.set_defaults(func=cmd_worker)

    p = verb("broker", "run only the embedded broker, for your own producers")
    p.add_argument("--port", type=positive_int, default=9092, help="port to listen on")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    partitions(p)
    p.set_defaults(func=cmd_broker)

    p = verb("produce", "send JSONL or msgpack events from a file or stdin to the events topic")
    p.add_argument("file", help="JSONL or msgpack events (single or batches); - for stdin")
    p.add_argument(
        "--batch-size", type=positive_int, default=100, help="events per message (default 100)"
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="then wait until the workers have applied every event sent (a progress bar)",
    )
    add_wait_timeout(p, "--wait")
    p.set_defaults(func=cmd_produce)

    p = verb("simulate", "synthetic clickstream to the events topic or a JSONL file")
    simulation(p, rate=500.0)
    p.add_argument(
        "--events", type=positive_int, default=None, help="produce exactly this many, fast"
    )
    p.add_argument("--out", default=None, help="write JSONL here (needs --events) instead")
    p.set_defaults(func=cmd_simulate)

    from agents.event_input import add_import_options

    p = verb("import", "convert a CSV log (gzip or not) into contract events")
    p.add_argument("file", help="the CSV file (.gz read as is)")
    add_import_options(p, required=True)
    p.add_argument("--out", default=None, help="JSONL file; default: send to the events topic")
    p.set_defaults(func=cmd_import)

    p = verb("kcat", "Debian's kcat against the configured broker, embedded one included")
    p.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="print the command line (with LD_LIBRARY_PATH) instead of running it",
    )
    p.add_argument(
        "kcat_args",
        nargs=argparse.REMAINDER,
        metavar="-- ARGS",
        help="kcat's own arguments after --; -b is added from TASTESTREAM_KAFKA_URL",
    )
    p.set_defaults(func=cmd_kcat)

    from agents import trainer
    from agents.checksums import add_parser as add_state_parser
    from agents.evaluate_command import add_parser as add_evaluate_parser
    from agents.experiment_command import add_parser as add_experiment_parser
    from agents.ranker_command import add_parser as add_ranker_parser
    from agents.replay import add_parser as add_replay_parser

    trainer.add_parsers(sub, verb)
    add_evaluate_parser(sub, verb)
    add_replay_parser(sub, verb)
    add_state_parser(sub, verb)
    add_experiment_parser(sub, verb)
    add_ranker_parser(sub, verb)
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if logging.getLogger().level > logging.DEBUG:
        # gensim logs every epoch and vocabulary step at INFO: noise in a trainer's log
        logging.getLogger("gensim").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's), run the verb, return its exit code.

    Any error becomes one line on stderr, ``tastestream VERB: cause (hint)``,
    and exit code 2; ``--debug`` re-raises it with its traceback.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command = getattr(args, "command", None)
    if command is None:
        verbs = ", ".join(parser.verbs)  # type: ignore[attr-defined]
        unknown = f"unknown option {extra[0]}; " if extra else ""
        parser.error(f"{unknown}choose a verb: {verbs}")
    if extra:
        args.verb_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    level = args.log_level or os.environ.get("TASTESTREAM_LOG_LEVEL") or "warning"
    if args.log_level:
        os.environ["TASTESTREAM_LOG_LEVEL"] = args.log_level  # children (demo) log the same
    _configure_logging(level)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"{args.verb_parser.prog}: {describe_error(exc)}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
