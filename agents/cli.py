"""``tastestream``: one command line for every role.

    tastestream demo       broker + Redis + worker + simulated clickstream, until Ctrl-C
    tastestream worker     the Faust worker (ingest, state, HTTP API)
    tastestream broker     only the embedded Kafka-compatible broker
    tastestream produce    send JSONL / msgpack events from a file or stdin
    tastestream simulate   a synthetic clickstream, to the topic or to a JSONL file
    tastestream import     convert a CSV log into contract events
    tastestream train      train a model version (--once | --every 30m), publish and announce it
    tastestream model      list model versions, or roll CURRENT back
    tastestream evaluate   offline hit rate / AUC of the candidate generators on an event file

Settings come from deploy/tastestream.toml and ``TASTESTREAM_*`` variables.
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

from agents.settings import Settings, SettingsError
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


def _open_input(path: str):
    return sys.stdin.buffer if path == "-" else open(path, "rb")


def cmd_produce(args: argparse.Namespace) -> int:
    from agents.producer import EventProducer, read_event_file
    from agents.progress import Progress
    from agents.provision import ensure_topics

    settings = _settings(args)
    if not settings.kafka_url:
        raise SystemExit(
            "produce needs a broker: set TASTESTREAM_KAFKA_URL (see `tastestream broker`)"
        )
    ensure_topics(settings)
    producer = EventProducer(settings, batch_size=args.batch_size)
    undecodable: Counter = Counter()
    with _open_input(args.file) as stream, Progress("sending") as bar:
        for raw in read_event_file(stream, undecodable):
            producer.send(raw)
            bar.update()
    summary = producer.flush()
    summary.rejected.update(undecodable)
    _print(json.dumps({"topic": producer.topic, **summary.as_dict()}))
    return 0 if not summary.failed else 1


# -- simulate -----------------------------------------------------------------


def _simulator(args: argparse.Namespace):
    from models.simulator import ClickstreamSimulator, SimulatorConfig

    return ClickstreamSimulator(SimulatorConfig(users=args.users, items=args.items, seed=args.seed))


def produce_live(settings: Settings, simulator: Any, rate: float, duration: float | None) -> int:
    """Send simulated events at ``rate`` per second (wall-clock ts) until ``duration`` ends."""
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
                producer.send(next(events))
                sent += 1
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
            raise SystemExit("--out needs --events N")
        with Progress("simulating", total=args.events) as bar:

            def counted():
                for event in simulator.events(args.events):
                    bar.update()
                    yield event

            n = write_jsonl(counted(), args.out)
        _print(json.dumps({"events": n, "out": args.out}))
        return 0
    settings = _settings(args)
    if not settings.kafka_url:
        raise SystemExit("simulate needs a broker: set TASTESTREAM_KAFKA_URL, or pass --out FILE")
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
    from agents.stack import _die_with_parent

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
            preexec_fn=_die_with_parent,
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


def cmd_demo(args: argparse.Namespace) -> int:
    from agents.provision import ensure_topics

    settings = _settings(args)
    handle_stop_signals()
    stack = start_stack(settings.kafka_url, settings.redis_url, settings.data_path / "stack")
    worker = trainer = None
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
        _print(f"tastestream demo running: kafka {settings.kafka_url}  redis {settings.redis_url}")
        _print(f"HTTP API: {base}  (try {base}/users/u1/history, {base}/metrics)")
        _print(f"worker log: {worker_log}")
        if args.train_every:
            trainer = spawn_role(
                settings, ["train", "--every", args.train_every], logs / "trainer.log"
            )
            _print(f"trainer: every {args.train_every} (log: {logs / 'trainer.log'})")
        _print(
            f"simulated clickstream: {args.users} users, {args.items} items, "
            f"{args.rate:.0f} events/s. Ctrl-C to stop."
        )
        sent = produce_live(settings, _simulator(args), args.rate, args.duration)
        if STOPPING.is_set():
            _print("stopping ...")
        _print(json.dumps({"sent": sent}))
        return 0
    except (KeyboardInterrupt, Stop):
        _print("stopping now ...")
        return 0
    finally:
        stop_processes([trainer, worker])
        stack.stop()


# -- import -------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    from agents.event_input import InputError, import_spec, read_events
    from agents.progress import Progress

    try:
        spec = import_spec(args)
    except InputError as exc:
        raise SystemExit(f"tastestream import: {exc}") from None
    rejected: Counter = Counter()
    rows = [0]
    try:
        with Progress("importing", unit="rows") as bar:

            def counted(read: int) -> None:
                bar.update(read - rows[0])
                rows[0] = read

            importer = read_events(args.file, rejected, spec, progress=counted)
            if args.out:
                from agents.producer import write_jsonl

                with open(args.out, "w") as out:
                    written = write_jsonl(importer, out)
                result: dict[str, Any] = {"written": written, "out": args.out}
            else:
                from agents.producer import EventProducer

                settings = _settings(args)
                if not settings.kafka_url:
                    raise SystemExit(
                        "import without --out sends to Kafka: set TASTESTREAM_KAFKA_URL"
                    )
                producer = EventProducer(settings)
                producer.send_many(importer)
                result = producer.flush().as_dict()
    except InputError as exc:
        raise SystemExit(f"tastestream import: {exc}") from None
    accepted = rows[0] - sum(rejected.values())
    result.update(rows=rows[0], accepted=accepted, rejected=dict(rejected))
    _print(json.dumps(result))
    return 0


# -- parser -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tastestream", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--web-port", dest="web_port", type=int, help="HTTP port (default 6066)")
        p.add_argument("--partitions", type=int, help="partitions of per-user topics")
        p.add_argument("--data-dir", dest="data_dir", help="event log and state directory")
        return p

    def simulation(p: argparse.ArgumentParser, rate: float) -> None:
        p.add_argument("--users", type=int, default=1000)
        p.add_argument("--items", type=int, default=5000)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--rate", type=float, default=rate, help="events per second")
        p.add_argument(
            "--duration", type=float, default=None, help="seconds; default: until Ctrl-C"
        )

    p = common(sub.add_parser("demo", help="the whole stack with a simulated clickstream"))
    simulation(p, rate=200.0)
    p.add_argument(
        "--train-every",
        dest="train_every",
        default="2m",
        help="retrain and publish a model this often (e.g. 90s, 2m; '' to turn off)",
    )
    p.set_defaults(func=cmd_demo)

    p = common(sub.add_parser("worker", help="run the Faust worker"))
    p.set_defaults(func=cmd_worker)

    p = common(sub.add_parser("broker", help="run only the embedded broker"))
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=cmd_broker)

    p = common(sub.add_parser("produce", help="send JSONL or msgpack events (FILE or -)"))
    p.add_argument("file")
    p.add_argument("--batch-size", type=int, default=100, help="events per message")
    p.set_defaults(func=cmd_produce)

    p = common(sub.add_parser("simulate", help="synthetic clickstream to the topic or a file"))
    simulation(p, rate=500.0)
    p.add_argument("--events", type=int, default=None, help="produce exactly this many")
    p.add_argument("--out", default=None, help="write JSONL here instead of producing")
    p.set_defaults(func=cmd_simulate)

    from agents.event_input import add_import_options

    p = common(sub.add_parser("import", help="convert a CSV log (gzip or not) into events"))
    p.add_argument("file")
    add_import_options(p, required=True)
    p.add_argument("--out", default=None, help="JSONL file; default: send to the events topic")
    p.set_defaults(func=cmd_import)

    from agents import trainer
    from agents.evaluate_command import add_parser as add_evaluate_parser

    trainer.add_parsers(sub)
    add_evaluate_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("TASTESTREAM_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args) or 0
    except (SettingsError, StackError) as exc:
        print(f"tastestream: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
