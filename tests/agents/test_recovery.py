"""Crashes and rebalances: nothing acknowledged is lost, nothing is counted twice.

Each test streams events steadily, kills a worker with SIGKILL mid-stream,
restarts it, and then compares everything the workers serve (history, user
state, co-occurrence) with the same fold run in one process over exactly what
the broker acknowledged, and the durable event log with what was sent.
"""

from __future__ import annotations

import time

import pytest
from support import (
    SteadyStream,
    assert_log_exact,
    assert_state_matches,
    http,
    send_events,
    wait_until,
)


def applied(worker, stream_sent: dict) -> bool:
    """Every user's history holds as many events as were sent to them."""
    for user, events in stream_sent.items():
        status, body = http("GET", f"{worker.url}/users/{user}/history")
        if status != 200 or len(body["events"]) != len(events):
            return False
    return True


@pytest.mark.parametrize(
    ("store", "snapshots"),
    [("memory", True), ("memory", False), ("rocksdb", True)],
    ids=["snapshots", "changelog-only", "rocksdb"],
)
def test_kill_9_mid_stream_then_restart_is_exact(store, snapshots, settings, worker_factory):
    settings = settings.replace(snapshot_seconds=1.0 if snapshots else 0.0, state_store=store)
    worker = worker_factory(settings)
    stream = SteadyStream(settings, users=30, tag="k9").start()
    wait_until(lambda: stream.rounds >= 25, what="a steady stream")
    time.sleep(1.5)  # a few checkpoints (and snapshots) behind us
    worker.kill()  # mid-stream: events keep arriving at the broker
    time.sleep(1.0)
    restarted = worker_factory(settings)
    wait_until(lambda: stream.rounds >= 45, timeout=60, what="more events after the restart")
    sent = stream.stop()
    wait_until(lambda: applied(restarted, sent), timeout=60, what="every sent event applied")
    assert_state_matches(restarted.url, settings, sent)
    assert_log_exact(settings, sent)
    from_snapshot = restarted.metric("tastestream_recovered_from_snapshot_total")
    assert (from_snapshot > 0) == snapshots
    # The redelivery guards survived the restart: sending it all again changes nothing.
    send_events(settings, [e for events in sent.values() for e in events])
    wait_until(
        lambda: restarted.metric("tastestream_events_duplicate_total") >= stream.total(),
        what="the repeated events to be recognised",
    )
    assert_state_matches(restarted.url, settings, sent)


def test_two_workers_rebalance_and_a_kill_9_are_exact(settings, worker_factory):
    settings = settings.replace(snapshot_seconds=2.0)
    first = worker_factory(settings)
    stream = SteadyStream(settings, users=30, tag="rb").start()
    wait_until(lambda: stream.rounds >= 10, what="a steady stream")
    second = worker_factory(settings.replace(web_port=_port()))  # rebalance: 2 + 2 partitions
    wait_until(lambda: stream.rounds >= 25, what="more events across two workers")
    first.kill()  # the survivor takes all partitions
    wait_until(lambda: stream.rounds >= 40, what="events while one worker is down")
    restarted = worker_factory(settings)  # and a rebalance back
    wait_until(lambda: stream.rounds >= 50, what="events after it came back")
    sent = stream.stop()
    wait_until(lambda: applied(second, sent), timeout=90, what="every sent event applied")
    # Either worker answers every user (requests are routed to the owner).
    assert_state_matches(second.url, settings, sent)
    assert_state_matches(restarted.url, settings, sent)
    assert_log_exact(settings, sent)


def _port() -> int:
    from agents.stack import free_port

    return free_port()
