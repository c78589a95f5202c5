"""Replay: sources and time windows, rebuilds that equal the live state, interrupted replays.

The checksums compared here are ``tastestream state checksum``'s: user states
bit for bit, token states over their neighbours (models/state_checksum.py).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import defaultdict

import pytest
from support import (
    REPO,
    assert_state_matches,
    expected_state,
    http,
    send_events,
    settings_env,
    stream_event,
    wait_until,
)

from agents.checksums import recovered_checksums, replica_checksums, worker_checksums
from agents.cli_io import CliError
from agents.provision import ensure_topics
from agents.replay import CsvOptions, open_source, progress_path, rebuild
from agents.settings import Settings
from agents.stack import free_port
from streams.eventlog import EventLog

BASE_TS = 1_767_225_600.0


def scripted_events(tag: str, users: int, per_user: int) -> list[dict]:
    """``per_user`` events per user, users interleaved in time (as a live stream sends them)."""
    return [
        stream_event(tag, u, k, BASE_TS + k * 60.0 + u * 0.5)
        for k in range(per_user)
        for u in range(users)
    ]


def by_user(events: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        out[event["user_id"]].append(event)
    return dict(out)


def cli(args: list[str], settings: Settings, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        env=settings_env(settings),
        cwd=str(REPO),
        capture_output=True,
        timeout=120,
        **kwargs,
    )


def applied(worker, sent: dict[str, list[dict]]) -> bool:
    for user, events in sent.items():
        status, body = http("GET", f"{worker.url}/users/{user}/history")
        if status != 200 or len(body["events"]) != len(events):
            return False
    return True


# -- sources and windows (no broker) ------------------------------------------------------


def test_every_source_yields_the_window_in_time_order(tmp_path):
    events = scripted_events("src", users=5, per_user=8)
    since, until = BASE_TS + 120.0, BASE_TS + 300.0
    want = [e["event_id"] for e in events if since <= e["ts"] < until]
    assert 0 < len(want) < len(events)
    # The durable event log of two workers, each holding some users.
    for worker in ("w0", "w1"):
        with EventLog(tmp_path / "eventlog" / worker, fsync="never") as log:
            log.append(
                [e for e in events if (e["user_id"] in ("src-u0", "src-u3")) == (worker == "w0")]
            )
    # A contract file in another order, and a CSV log with its own column names.
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text("".join(json.dumps(e) + "\n" for e in shuffled))
    csv = tmp_path / "events.csv"
    rows = ["when,who,what,action,id"]
    rows += [f"{e['ts']},{e['user_id']},{e['item_id']},{e['type']},{e['event_id']}" for e in events]
    csv.write_text("\n".join(rows) + "\n")
    types = ",".join(f"{t}={t}" for t in sorted({e["type"] for e in events}))
    mapping = CsvOptions("ts=when,user_id=who,item_id=what,type=action,event_id=id", types, "s")
    settings = Settings(data_dir=str(tmp_path))
    for source, options in ((tmp_path / "eventlog", None), (jsonl, None), (csv, mapping)):
        got = list(open_source(str(source), settings, since, until, options).events)
        assert [e["event_id"] for e in got] == want, source
        assert [e["ts"] for e in got] == sorted(e["ts"] for e in got)
    # Open windows on either side.
    assert len(list(open_source(str(jsonl), settings, until=since).events)) == sum(
        e["ts"] < since for e in events
    )
    assert len(list(open_source(str(jsonl), settings, since=until).events)) == sum(
        e["ts"] >= until for e in events
    )


def test_bad_replays_fail_in_one_line(settings, tmp_path):
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text(json.dumps(scripted_events("bad", 1, 1)[0]) + "\n")
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n")
    cases = [
        (["--from", str(tmp_path / "missing"), "--rebuild"], "no such file or directory"),
        (["--from", str(jsonl), "--rebuild", "--since", "soon"], "--since 'soon'"),
        (["--from", str(jsonl), "--rebuild", "--since", "20", "--until", "10"], "is not after"),
        (["--from", str(jsonl), "--rebuild", "--resume"], "go with --to-topic"),
        (["--from", str(csv), "--to-topic"], "needs --columns and --types"),
        (["--from", "kafka:no-such-topic", "--rebuild"], "no such topic"),
    ]
    for args, phrase in cases:
        result = cli(["replay", *args], settings)
        err = result.stderr.decode()
        assert result.returncode == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith("tastestream replay:") and phrase in err, (phrase, err)


# -- rebuilds: deterministic, equal to the live state, served by a worker -------------------


def test_rebuilds_are_identical_and_equal_the_live_state(settings, worker_factory):
    live = worker_factory(settings)
    events = scripted_events("det", users=16, per_user=12)
    sent = by_user(events)
    send_events(settings, events)
    wait_until(lambda: applied(live, sent), timeout=60, what="the live worker to apply all")

    # The same fold in one process, each user's events in turn (not the live order).
    replica_sums = replica_checksums(expected_state(settings, sent), settings.partitions)
    # The token fold runs behind the user fold, checkpoints follow every second.
    wait_until(
        lambda: worker_checksums([live.url]) == replica_sums == recovered_checksums(settings),
        timeout=30,
        what="live == replica == recovered checksums",
    )
    live_sums = replica_sums

    # A rebuild refuses while the prefix's workers run.
    refused = cli(["replay", "--from", str(settings.eventlog_path), "--rebuild"], settings)
    err = refused.stderr.decode()
    assert refused.returncode == 2 and "are running" in err and len(err.splitlines()) == 1, err

    # The same log into two empty stacks, and the events topic into a third.
    rebuilt = {}
    for name, source in (
        ("log-1", str(settings.eventlog_path)),
        ("log-2", str(settings.eventlog_path)),
        ("topic", f"kafka:{settings.topics.events.name}"),
    ):
        target = settings.replace(topic_prefix=f"{settings.topic_prefix}-{name}")
        ensure_topics(target)
        summary = rebuild(target, open_source(source, target))
        assert (summary.events, summary.users) == (len(events), len(sent))
        rebuilt[name] = recovered_checksums(target)
    assert rebuilt["log-1"] == rebuilt["log-2"] == rebuilt["topic"]
    # Re-run over a rebuilt prefix (as after an interrupted rebuild): emptied, then the same.
    target = settings.replace(topic_prefix=f"{settings.topic_prefix}-log-1")
    half = open_source(str(settings.eventlog_path), target, until=events[len(events) // 2]["ts"])
    rebuild(target, half)
    assert recovered_checksums(target) != rebuilt["log-1"]
    rebuild(target, open_source(str(settings.eventlog_path), target))
    assert recovered_checksums(target) == rebuilt["log-1"]
    for store in ("users", "tokens"):
        assert rebuilt["log-1"][store] == live_sums[store], store
    assert sum(e["keys"] for e in live_sums["users"].values()) == len(sent)

    # The verb prints the same, one line per store and partition.
    printed = cli(["state", "checksum", "--prefix", f"{settings.topic_prefix}-log-1"], settings)
    lines = printed.stdout.decode().splitlines()
    assert printed.returncode == 0 and len(lines) == 2 * settings.partitions, printed
    for line in lines:
        store, partition, _, keys, sha = line.split()
        entry = rebuilt["log-1"][store][partition[1:]]
        assert (entry["keys"], entry["sha256"]) == (int(keys.replace(",", "")), sha)

    # A worker started on a rebuilt prefix recovers it and serves what the live one does;
    # its checksum route is internal: behind the API token when one is set.
    target = settings.replace(
        topic_prefix=f"{settings.topic_prefix}-log-1", web_port=free_port(), api_token="s3cret"
    )
    served = worker_factory(target)
    with pytest.raises(CliError, match="answered 401"):
        worker_checksums([served.url])
    assert worker_checksums([served.url], "s3cret") == rebuilt["log-1"]
    assert_state_matches(served.url, target, sent)


# -- --to-topic: paced, marked, interrupted and resumed -------------------------------------


def test_to_topic_replay_stopped_midway_resumes_where_it_stopped(
    settings, worker_factory, tmp_path
):
    worker = worker_factory(settings)
    events = scripted_events("rs", users=20, per_user=20)
    sent = by_user(events)
    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events))
    args = ["replay", "--from", str(source), "--to-topic", "--rate", "400"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", *args],
        env=settings_env(settings),
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    identity = {
        "source": str(source.resolve()),
        "since": None,
        "until": None,
        "prefix": settings.topic_prefix,
        "offset": 0,
    }
    progress = progress_path(settings, identity)

    def delivered() -> int:
        return json.loads(progress.read_text())["sent"] if progress.exists() else 0

    wait_until(lambda: delivered() >= 100, timeout=30, what="the replay to be under way")
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()
    first = json.loads(out.decode().strip().splitlines()[-1])
    assert not first["complete"] and 100 <= first["events"] < len(events), first
    assert first["events"] == delivered()

    resumed = cli([*args, "--resume"], settings)
    assert resumed.returncode == 0, resumed.stderr.decode()
    second = json.loads(resumed.stdout.decode().strip().splitlines()[-1])
    assert second["complete"] and second["resumed_after"] == first["events"]
    assert first["events"] + second["events"] == len(events)

    wait_until(lambda: applied(worker, sent), timeout=60, what="every replayed event applied")
    assert_state_matches(worker.url, settings, sent)
    # Counted as replayed, each once, and kept out of the live latency histogram.
    assert worker.metric("tastestream_replay_events_total") == len(events)
    assert worker.metric("tastestream_events_duplicate_total") == 0
    assert worker.metric("tastestream_ingest_latency_seconds_count") == 0
    # Re-running the whole replay changes nothing: the redelivery guards drop every event.
    again = cli([*args, "--rate", "5000"], settings)
    assert again.returncode == 0, again.stderr.decode()
    wait_until(
        lambda: worker.metric("tastestream_events_duplicate_total") == len(events),
        what="the repeated replay to be recognised",
    )
    assert_state_matches(worker.url, settings, sent)
    assert os.path.exists(progress)
