"""Shared fixtures and helpers: one real broker and one real Redis for the whole session.

Every test that needs Kafka gets its own topic prefix (so tests never see each
other's messages) on the session's embedded Tansu broker, or on the Kafka that
``TASTESTREAM_TEST_KAFKA_URL`` names (run the suite against Apache Kafka that
way); likewise Redis with ``TASTESTREAM_TEST_REDIS_URL``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from agents.provision import ensure_topics
from agents.settings import Settings
from agents.stack import Stack, die_with_parent, free_port, start_stack

REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """Where the shared real data sets are: ``$TASTESTREAM_SHARED_DATA``, else ``../shared/data``.

    ``..`` is the repository's parent, or, for a local clone (CI clones main
    into a scratch directory), the parent of the repository it was cloned from.
    """
    configured = os.environ.get("TASTESTREAM_SHARED_DATA")
    if configured:
        return Path(configured)
    candidates = [REPO.parent / "shared" / "data"]
    try:
        origin = subprocess.run(
            ["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin.startswith("file://"):
        origin = origin[len("file://") :]
    if origin.startswith("/"):
        candidates.append(Path(origin).resolve().parent / "shared" / "data")
    return next((path for path in candidates if path.is_dir()), candidates[0])


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(
        os.environ.get("TASTESTREAM_TEST_KAFKA_URL", ""),
        os.environ.get("TASTESTREAM_TEST_REDIS_URL", ""),
        tmp_path_factory.mktemp("stack"),
    )
    yield started
    started.stop()


def make_settings(stack: Stack, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_url": stack.kafka_url,
        "redis_url": stack.redis_url,
        "topic_prefix": f"t{uuid.uuid4().hex[:10]}",
        "data_dir": str(data_dir),
        "web_port": free_port(),
        "partitions": 4,
        "session_timeout_seconds": 4.0,
        "ingest_batch_seconds": 0.02,
        "log_fsync": "interval",
    }
    values.update(overrides)
    settings = Settings(**values)
    settings.check()
    return settings


@pytest.fixture
def settings(stack: Stack, tmp_path: Path) -> Settings:
    """Fresh topics (a new prefix) and a fresh data dir for one test."""
    s = make_settings(stack, tmp_path / "data")
    ensure_topics(s)
    return s


def settings_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in vars(settings).items():
        env["TASTESTREAM_" + name.upper()] = (
            json.dumps(value) if isinstance(value, dict) else str(value)
        )
    env["TASTESTREAM_LOG_LEVEL"] = "warning"
    env["PYTHONPATH"] = str(REPO)
    return env


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """(status, decoded JSON or text) for one request."""
    data = None
    headers = {}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
            ctype = resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, (json.loads(raw) if "json" in ctype else raw.decode())


def wait_until(
    predicate,
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "condition",
    describe=None,
):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``.

    ``describe`` (optional) is called on failure and its answer goes into the message.
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    detail = f"; {describe()!r}" if describe is not None else ""
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}{detail}"
    )


@dataclass
class WorkerProcess:
    """A real ``tastestream worker`` process against the session's broker and Redis."""

    settings: Settings
    log_path: Path
    proc: subprocess.Popen | None = None
    restarts: int = field(default=0)

    @property
    def url(self) -> str:
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agents.cli", "worker"],
            env=settings_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
            preexec_fn=die_with_parent,  # a killed test run leaves no worker behind
        )
        log.close()
        wait_until(self._ready, timeout=timeout, interval=0.2, what=f"worker at {self.url}")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            status, body = http("GET", self.url + "/health", timeout=2)
        except OSError:
            return False
        # /health answers before partitions are assigned and tables recovered.
        return status == 200 and body.get("ready", False)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush, like a crashed machine process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def history(self, user_id: str) -> list[dict[str, Any]]:
        status, body = http("GET", f"{self.url}/users/{user_id}/history")
        return body["events"] if status == 200 else []

    def metric(self, name: str) -> float:
        _, text = http("GET", self.url + "/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator:
    workers: list[WorkerProcess] = []

    def start(settings: Settings) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def worker(settings: Settings, worker_factory) -> WorkerProcess:
    return worker_factory(settings)


@pytest.fixture(scope="module")
def module_worker(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One worker (own topics) shared by a module's tests; each test uses its own ids."""
    base = tmp_path_factory.mktemp("module-worker")
    module_settings = make_settings(stack, base / "data")
    ensure_topics(module_settings)
    started = WorkerProcess(module_settings, base / "worker.log").start()
    yield started
    started.stop()


def send_events(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Produce ``events`` as the CLI does (validated, batched per partition) and flush."""
    from agents.producer import EventProducer

    producer = EventProducer(settings)
    producer.send_many(events)
    producer.flush()


def consume_all(bootstrap: str, topic: str, expect: int, timeout: float = 20.0) -> list[Any]:
    """Read ``expect`` messages of ``topic`` from the beginning (confluent-kafka)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    # assign, not subscribe: a group join on Tansu waits about half the session timeout.
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append(msg)
    finally:
        consumer.close()
    return out


@pytest.fixture(scope="session")
def kcat(tmp_path_factory) -> tuple[str, dict]:
    """Debian's kcat, pointed at the confluent-kafka wheel's librdkafka as ``tastestream kcat`` is.

    Debian's own librdkafka 2.0 cannot parse Tansu's ApiVersions reply (agents/kcat.py).
    """
    from agents.kcat import kcat_binary, kcat_env

    assert shutil.which("kcat"), "kcat is not installed: the test command installs it (apt kcat)"
    return kcat_binary(), kcat_env(cache_dir=tmp_path_factory.mktemp("kcat-lib"))


# -- steady streams and what they should have produced ----------------------------


def stream_event(tag: str, user: int, k: int, ts: float) -> dict[str, Any]:
    """The ``k``-th event of user ``user`` in a test stream (few items, so tokens stay small)."""
    kinds = ("view", "click", "cart", "click", "favorite", "view", "purchase", "impression")
    return {
        "user_id": f"{tag}-u{user}",
        "item_id": f"{tag}-i{(user * 3 + k * 5) % 13}",
        "type": kinds[k % len(kinds)],
        "ts": ts,
        "event_id": f"{tag}-u{user}-e{k}",
        "item": {"seller": f"{tag}-s{(user + k) % 4}", "category": f"c{k % 3}"},
    }


class SteadyStream:
    """Sends one event per user per round from a thread; keeps what the broker acknowledged.

    Every round is flushed before it counts as sent, so ``sent`` is exactly
    what the broker acknowledged, per user in order.
    """

    def __init__(
        self, settings: Settings, users: int, tag: str, pause: float = 0.05, max_rounds: int = 150
    ) -> None:
        import threading

        self.settings = settings
        self.users = users
        self.tag = tag
        self.pause = pause
        self.max_rounds = max_rounds
        self.sent: dict[str, list[dict[str, Any]]] = {f"{tag}-u{u}": [] for u in range(users)}
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        from agents.producer import EventProducer

        producer = EventProducer(self.settings, batch_size=50)
        base = 1_767_225_600.0
        try:
            while not self._stop.is_set() and self.rounds < self.max_rounds:
                k = self.rounds
                events = [
                    stream_event(self.tag, u, k, base + k * 7.0 + u * 0.001)
                    for u in range(self.users)
                ]
                producer.send_many(events)
                producer.flush()
                for event in events:
                    self.sent[event["user_id"]].append(event)
                self.rounds += 1
                time.sleep(self.pause)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self) -> SteadyStream:
        self._thread.start()
        return self

    def stop(self) -> dict[str, list[dict[str, Any]]]:
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error
        return self.sent

    def total(self) -> int:
        return sum(len(v) for v in self.sent.values())


def expected_state(settings: Settings, sent: dict[str, list[dict[str, Any]]]):
    """The state the workers must hold after ``sent``: the same fold, in one process."""
    from agents.state import state_config
    from models.stream_state import StreamState
    from streams.events import validate_event

    replica = StreamState(state_config(settings))
    for events in sent.values():
        replica.apply([validate_event(e) for e in events])
    return replica


def state_differences(url: str, settings: Settings, sent: dict[str, list[dict]]) -> list[str]:
    """Where the history, user state and co-occurrence served at ``url`` differ from the replica."""
    from agents.views import user_state_body

    replica = expected_state(settings, sent)
    at = 1_800_000_000.0
    wrong: list[str] = []
    for user, events in sent.items():
        status, body = http("GET", f"{url}/users/{user}/history")
        got = [e["event_id"] for e in body["events"]] if status == 200 else None
        if got != [e["event_id"] for e in reversed(events)]:
            wrong.append(f"history of {user}")
        status, body = http("GET", f"{url}/users/{user}/state?at={at}")
        want = json.loads(json.dumps(user_state_body(replica.user(user), user, at)))
        if status != 200 or body != want:
            wrong.append(f"state of {user}")
    items = sorted({e["item_id"] for events in sent.values() for e in events})
    for item in items[:6]:
        for source, target in (("view", "click"), ("click", "cart")):
            status, body = http("GET", f"{url}/items/{item}/similar?from={source}&to={target}&k=50")
            answered = body["items"] if status == 200 else None
            got = (
                sorted((i["item_id"], i["p"]) for i in answered if i["source"] == "cooccurrence")
                if answered is not None
                else None
            )
            neighbours = replica.neighbours((item, source))
            top = neighbours.top(target, 50, at) if neighbours is not None else []
            want = sorted((i, round(min(p, 1.0), 6)) for i, _, p in top)
            if got != want:
                wrong.append(f"co-occurrence {item}:{source}->{target}: {got} != {want}")
    return wrong


def assert_state_matches(
    url: str, settings: Settings, sent: dict[str, list[dict]], timeout: float = 60.0
) -> None:
    """History, user state and co-occurrence served at ``url`` equal the replica's, exactly.

    The token fold runs behind the user fold (pair records cross a topic), so
    the comparison is repeated until it holds or ``timeout`` passes: a value
    counted twice or lost never converges, a late one does.
    """
    deadline = time.monotonic() + timeout
    while True:
        wrong = state_differences(url, settings, sent)
        if not wrong or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not wrong, "\n".join(wrong[:10])


def assert_log_exact(settings: Settings, sent: dict[str, list[dict]]) -> None:
    """The durable event log holds every sent event, once (as readers see it)."""
    from streams.eventlog import read_logs

    logged = [e["event_id"] for e in read_logs(settings.eventlog_path)]
    want = sorted(e["event_id"] for events in sent.values() for e in events)
    assert len(logged) == len(set(logged))
    assert sorted(logged) == want
