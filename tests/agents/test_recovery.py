"""Crashes: a SIGKILLed worker restores every user's history and loses no logged event."""

from __future__ import annotations

import threading
import time

import pytest
from support import http, wait_until

from agents.producer import EventProducer
from streams.eventlog import read_logs


def make_events(n_users: int, per_user: int, tag: str, start: int = 0) -> list[dict]:
    return [
        {
            "user_id": f"{tag}-u{u}",
            "item_id": f"i{(u * 7 + i) % 50}",
            "type": ("view", "click", "cart")[i % 3],
            "ts": 1767225600.0 + i,
            "event_id": f"{tag}-u{u}-e{i}",
        }
        for i in range(start, start + per_user)
        for u in range(n_users)
    ]


def snapshot(worker, n_users: int, tag: str) -> dict[str, list[str]]:
    return {
        f"{tag}-u{u}": [e["event_id"] for e in worker.history(f"{tag}-u{u}")]
        for u in range(n_users)
    }


def settled(read, pause: float = 1.0, timeout: float = 30.0):
    """``read()`` once two readings ``pause`` apart agree (the agents have caught up)."""
    previous = read()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(pause)
        current = read()
        if current == previous:
            return current
        previous = current
    raise AssertionError("state kept changing")


def state_snapshot(worker, n_users: int, tag: str, at: float) -> dict[str, dict]:
    out = {}
    for u in range(n_users):
        user = f"{tag}-u{u}"
        status, state = http("GET", f"{worker.url}/users/{user}/state?at={at}")
        _, similar = http("GET", f"{worker.url}/items/i{(u * 7) % 50}/similar?from=view&to=click")
        similar["items"] = [(i["item_id"], round(i["p"], 3)) for i in similar["items"]]
        out[user] = {"state": state if status == 200 else None, "similar": similar}
    return out


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_killed_worker_restores_every_history_exactly(store, settings, worker_factory):
    settings = settings.replace(table_store=store)
    worker = worker_factory(settings)
    n_users, per_user = 40, 30
    producer = EventProducer(settings, batch_size=250)  # big batches: Tansu's end-offset trap
    producer.send_many(make_events(n_users, per_user, "r"))
    producer.flush()
    wait_until(
        lambda: worker.metric("tastestream_events_accepted_total") >= n_users * per_user,
        what="all events accepted",
    )
    before = snapshot(worker, n_users, "r")
    assert all(len(ids) == per_user for ids in before.values())
    at = time.time()
    wait_until(
        lambda: all(
            v["state"] and v["similar"]["items"]
            for v in state_snapshot(worker, n_users, "r", at).values()
        ),
        what="trajectories, bandits and co-occurrence to catch up",
    )
    state_before = settled(lambda: state_snapshot(worker, n_users, "r", at))

    worker.kill()
    restarted = worker_factory(settings)
    assert snapshot(restarted, n_users, "r") == before
    # The three state tables came back from their changelogs too.
    assert state_snapshot(restarted, n_users, "r", at) == state_before
    # Redelivery after the crash changed nothing, and new events still flow.
    producer = EventProducer(settings)
    producer.send_many(make_events(n_users, 2, "r", start=per_user))
    producer.flush()
    wait_until(
        lambda: all(len(h) == per_user + 2 for h in snapshot(restarted, n_users, "r").values()),
        what="new events after restart",
    )
    after = snapshot(restarted, n_users, "r")
    assert all(ids[2:] == before[user] for user, ids in after.items())


def test_kill_mid_write_keeps_every_acknowledged_event_in_the_log(settings, worker_factory):
    worker = worker_factory(settings)
    n_users = 20
    stop = threading.Event()

    def produce_forever() -> None:
        producer = EventProducer(settings, batch_size=20)
        i = 0
        while not stop.is_set():
            producer.send_many(make_events(n_users, 5, "k", start=i))
            producer.flush()
            i += 5
            time.sleep(0.01)

    thread = threading.Thread(target=produce_forever, daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: worker.metric("tastestream_events_accepted_total") > 1500,
            what="the worker to be busy writing",
        )
        # Acknowledged: what the worker shows in a history (the log append comes
        # before any later await, so a visible event is already in the log).
        acknowledged = {eid for ids in snapshot(worker, n_users, "k").values() for eid in ids}
        worker.kill()  # mid-stream, while events keep coming
    finally:
        stop.set()
        thread.join(10)

    logged = [e["event_id"] for e in read_logs(settings.eventlog_path, dedupe_window=0)]
    assert acknowledged and acknowledged <= set(logged)

    # A restarted worker reopens the same log (cutting any torn tail) and goes on.
    restarted = worker_factory(settings)
    producer = EventProducer(settings)
    producer.send_many(make_events(n_users, 1, "k", start=100_000))
    producer.flush()
    wait_until(
        lambda: any(e["event_id"].endswith("-e100000") for e in read_logs(settings.eventlog_path)),
        what="post-restart events in the log",
    )
    final = [e["event_id"] for e in read_logs(settings.eventlog_path)]
    assert len(final) == len(set(final))  # read dedupes at-least-once redeliveries
    assert acknowledged <= set(final)
    assert restarted.proc.poll() is None
