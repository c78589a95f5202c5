"""``train --once`` on a real event log publishes and announces; list, rollback, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

from support import REPO, consume_all, settings_env

from agents.trainer import parse_interval
from models.model_version import current_version, list_versions
from models.simulator import ClickstreamSimulator, SimulatorConfig
from streams.eventlog import EventLog


def run(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agents.trainer", *args],
        env=settings_env(settings),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_log(settings, n: int) -> None:
    sim = ClickstreamSimulator(SimulatorConfig(users=60, items=120, categories=6, sellers=10))
    events = list(sim.events(n))
    with EventLog(settings.eventlog_path / "w0", fsync="never") as log:
        for lo in range(0, len(events), 500):
            log.append(events[lo : lo + 500])


def test_train_once_publishes_announces_lists_and_rolls_back(settings):
    write_log(settings, 5000)
    first = run(settings, "train", "--once", "--epochs", "1", "--dim", "16")
    assert first.returncode == 0, first.stderr
    assert "epoch   1/1" in first.stderr  # progress: epochs, loss, elapsed
    root = settings.data_path / "models"
    versions = list_versions(root)
    assert len(versions) == 1 and current_version(root) == versions[0].version
    assert versions[0].data["events"] == 5000

    topic = settings.topics.model_updates.name
    (message,) = consume_all(settings.kafka_bootstrap, topic, 1)
    body = json.loads(message.value())
    assert body == versions[0].announcement("publish")

    second = run(settings, "train", "--once", "--epochs", "1", "--dim", "16", "--seed", "3")
    assert second.returncode == 0, second.stderr
    v1, v2 = (v.version for v in list_versions(root))
    listing = run(settings, "model", "list")
    assert f"* {v2}" in listing.stdout and f"  {v1}" in listing.stdout

    back = run(settings, "model", "rollback")
    assert back.returncode == 0, back.stderr
    assert current_version(root) == v1
    messages = [json.loads(m.value()) for m in consume_all(settings.kafka_bootstrap, topic, 3)]
    assert [(m["action"], m["version"]) for m in messages] == [
        ("publish", v1),
        ("publish", v2),
        ("rollback", v1),
    ]
    oldest = run(settings, "model", "rollback")
    assert oldest.returncode == 2 and "oldest version" in oldest.stderr


def test_empty_log_and_too_few_events_are_clear_errors(settings):
    empty = run(settings, "train", "--once")
    assert empty.returncode == 2
    assert "no events yet" in empty.stderr and "run the worker/demo first" in empty.stderr
    write_log(settings, 20)
    few = run(settings, "train", "--once")
    assert few.returncode == 2 and "too few events to train: 20 events" in few.stderr
    assert list_versions(settings.data_path / "models") == []


def test_train_from_an_events_file(settings, tmp_path):
    sim = ClickstreamSimulator(SimulatorConfig(users=60, items=120, categories=6, sellers=10))
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in sim.events(3000)))
    done = run(settings, "train", "--once", "--events", str(path), "--epochs", "1")
    assert done.returncode == 0, done.stderr
    (version,) = list_versions(settings.data_path / "models")
    assert version.data["events"] == 3000 and version.manifest["source"] == str(path)


def test_intervals():
    assert [parse_interval(t) for t in ("90s", "30m", "2h", "1d", "15")] == [
        90.0,
        1800.0,
        7200.0,
        86400.0,
        15.0,
    ]
