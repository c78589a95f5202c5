"""Dependencies going away: Redis stopped under load, the broker killed and restarted.

Each test runs its own broker and Redis (they are stopped and restarted here)
and prints what it measured: requests served and failed while the dependency
was away, and seconds until the worker caught up once it was back.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis as redis_sync
from support import (
    WorkerProcess,
    assert_state_matches,
    http,
    make_settings,
    send_events,
    stream_event,
    wait_until,
)

from agents.provision import ensure_topics
from agents.stack import Stack, start_stack


@pytest.fixture
def own_stack(tmp_path) -> Stack:
    stack = start_stack("", "", tmp_path / "stack")
    yield stack
    stack.stop()


def service(stack: Stack, name: str):
    return next(s for s in stack.services if s.name == name)


class RequestLoad:
    """GETs of users' home lists from a thread at a steady rate; counts outcomes."""

    def __init__(self, url: str, users: list[str], rate: float = 40.0) -> None:
        self.url = url
        self.users = users
        self.rate = rate
        self.outcomes: Counter = Counter()
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            user = self.users[i % len(self.users)]
            started = time.monotonic()
            try:
                status, _ = http("GET", f"{self.url}/users/{user}/recommendations", timeout=5)
            except OSError as exc:
                status = type(exc).__name__
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.outcomes[status] += 1
            i += 1
            time.sleep(1 / self.rate)

    def __enter__(self) -> RequestLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.outcomes.items() if status != 200)


def events_for(tag: str, users: int, rounds: range) -> list[dict]:
    return [
        stream_event(tag, u, k, 1_767_225_600.0 + k * 7.0 + u * 0.001)
        for k in rounds
        for u in range(users)
    ]


def by_user(events: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in events:
        out.setdefault(e["user_id"], []).append(e)
    return out


def test_redis_outage_under_load_costs_no_request_and_writes_resume(own_stack, tmp_path):
    settings = make_settings(own_stack, tmp_path / "data")
    ensure_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    users = [f"ro-u{u}" for u in range(20)]
    send_events(settings, events_for("ro", 20, range(0, 5)))
    client = redis_sync.Redis.from_url(settings.redis_url)
    key = f"{settings.topic_prefix}:recs:home:ro-u3"
    wait_until(lambda: client.exists(key), what="lists in Redis")
    redis = service(own_stack, "redis")
    outage = 20.0
    with RequestLoad(worker.url, users) as load:
        time.sleep(1.0)
        redis.stop()
        down_at = time.monotonic()
        # State keeps changing while Redis is away: those lists must reach Redis later.
        send_events(settings, events_for("ro", 20, range(5, 8)))
        wait_until(
            lambda: http("GET", worker.url + "/health")[1].get("redis", {}).get("ok") is False,
            what="/health to report Redis away",
        )
        status, health = http("GET", worker.url + "/health")
        assert status == 200 and health["status"] == "degraded" and health["ready"]
        time.sleep(max(0.0, outage - (time.monotonic() - down_at)))
        assert worker.proc.poll() is None, "the worker died with Redis"
        redis.start()
        back_at = time.monotonic()
        client = redis_sync.Redis.from_url(settings.redis_url)
        wait_until(lambda: client.exists(key), timeout=30, what="lists back after Redis returned")
        recovered_after = time.monotonic() - back_at
        time.sleep(1.0)
    print(
        f"\nRedis away {outage:.0f} s under {load.rate:.0f} req/s: {sum(load.outcomes.values())} "
        f"requests, {load.failed} failed, slowest {load.slowest * 1000:.0f} ms; lists back in "
        f"Redis {recovered_after:.1f} s after it returned"
    )
    assert load.failed == 0, load.outcomes
    # Lists written while Redis was away carry the events sent meanwhile.
    body = client.get(key)
    assert body is not None and b"ro-u3" in body
    assert http("GET", worker.url + "/health")[1]["redis"]["ok"] is True
    worker.stop()


def test_broker_killed_and_restarted_the_worker_rebuilds_from_the_event_log(own_stack, tmp_path):
    settings = make_settings(own_stack, tmp_path / "data", snapshot_seconds=1.0)
    ensure_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    users = [f"bk-u{u}" for u in range(15)]
    first = events_for("bk", 15, range(0, 6))
    send_events(settings, first)
    wait_until(lambda: all(len(worker.history(u)) == 6 for u in users), what="events applied")
    time.sleep(2.0)  # a snapshot of this incarnation exists
    broker = service(own_stack, "broker")
    with RequestLoad(worker.url, users, rate=20.0) as load:
        broker.stop()
        down_at = time.monotonic()
        time.sleep(6.0)
        # Away: the worker is alive and still answers from what it holds.
        assert worker.proc.poll() is None, "the worker died with the broker"
        assert http("GET", worker.url + "/health/live")[0] == 200
        served_while_down = dict(load.outcomes)
        broker.start()  # same port, empty: every topic is gone
        back_at = time.monotonic()
        # Recreated topics, rebuilt state: the old events are still there.
        wait_until(
            lambda: (
                http("GET", worker.url + "/health/ready")[0] == 200
                and all(len(worker.history(u)) == 6 for u in users)
            ),
            timeout=90,
            what="the worker to be ready again with its state",
        )
        ready_after = time.monotonic() - back_at
        second = events_for("bk", 15, range(6, 9))
        send_events(settings, second)
        wait_until(
            lambda: all(len(worker.history(u)) == 9 for u in users),
            timeout=60,
            what="new events after the broker came back",
        )
        caught_up_after = time.monotonic() - back_at
    print(
        f"\nbroker away {back_at - down_at:.0f} s: {sum(served_while_down.values())} requests "
        f"while down ({served_while_down}); ready again {ready_after:.1f} s after it returned, "
        f"new events applied after {caught_up_after:.1f} s; rebuilds: "
        f"{worker.metric('tastestream_rebuilds_total'):.0f}"
    )
    assert worker.proc.poll() is None
    assert worker.metric("tastestream_rebuilds_total") > 0
    assert served_while_down.get(200, 0) > 0
    assert_state_matches(worker.url, settings, by_user(first + second))
    worker.stop()
