"""``tastestream evaluate``: the verb's parser and command on simulated and broken input."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import msgpack
import pytest
from support import REPO

from agents.evaluate_command import add_parser, cmd_evaluate
from models.simulator import ClickstreamSimulator, SimulatorConfig, write_jsonl
from streams.eventlog import EventLog

FAST = ["--models", "regularised,cooccurrence,popularity", "--dim", "8", "--epochs", "2"]
FAST += ["--k", "20"]
BAD_LINES = [
    "this is not json\n",
    json.dumps({"user_id": "u1", "item_id": "i1", "type": "like", "ts": 1767225600}) + "\n",
    json.dumps({"user_id": "u1", "item_id": "i1", "type": "view"}) + "\n",
    json.dumps({"user_id": "u1", "item_id": "i1", "type": "view", "ts": 1767225600}) + "\n",
]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tastestream")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def simulated(n: int = 30_000) -> list[dict]:
    config = SimulatorConfig(users=150, items=600, categories=8, sellers=30, seed=1)
    return list(ClickstreamSimulator(config).events(n))


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("evaluate") / "events.jsonl"
    write_jsonl(simulated(), path)
    with open(path, "a") as out:  # three bad lines, one valid extra
        out.writelines(BAD_LINES)
    return str(path)


def test_cli_writes_markdown_and_json_and_counts_rejected_lines(events_file, tmp_path):
    # Run as a user would, in a fresh interpreter (agents/cli.py wires the verb later).
    report = tmp_path / "out" / "REPORT.md"
    code = (
        "import argparse, sys\n"
        "from agents.evaluate_command import add_parser\n"
        "p = argparse.ArgumentParser(prog='tastestream')\n"
        "add_parser(p.add_subparsers(dest='command', required=True))\n"
        "args = p.parse_args(sys.argv[1:])\n"
        "sys.exit(args.func(args))\n"
    )
    argv = ["evaluate", "--events", events_file, "--out", str(report), *FAST]
    result = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert report.read_text() == stdout.rstrip("\n") + "\n"
    for name in ("regularised", "cooccurrence", "popularity"):
        assert f"| {name} |" in stdout
    assert "regularised vs each model" in stdout
    assert "regularised: training" in stderr and "reading" in stderr  # progress on stderr
    data = json.loads(report.with_suffix(".json").read_text())
    assert list(data["models"]) == ["regularised", "cooccurrence", "popularity"]
    assert data["config"]["k"] == 20 and data["config"]["test_hours"] == 24.0
    assert data["input"]["rejected"] == {"undecodable line": 1, "type": 1, "ts": 1}
    assert data["input"]["accepted"] == 30_001
    for row in data["models"].values():
        assert 0.0 <= row["novel_hit_rate"]["click-to-cart"] <= 1.0
        assert row["train_seconds"] >= 0.0
    assert "Rejected input lines by field" in stdout


def test_msgpack_stream_and_event_log_directory_are_read(tmp_path, capsys):
    events = simulated(20_000)
    packed = tmp_path / "events.msgpack"
    packed.write_bytes(b"".join(msgpack.packb(e) for e in events))
    args = parse(["evaluate", "--events", str(packed), "--models", "popularity", "--k", "20"])
    assert cmd_evaluate(args) == 0
    from_msgpack = capsys.readouterr().out
    log_root = tmp_path / "eventlog"
    with EventLog(log_root / "w0", fsync="never") as log:
        log.append(events)
    args = parse(["evaluate", "--events", str(log_root), "--models", "popularity", "--k", "20"])
    assert cmd_evaluate(args) == 0
    from_log = capsys.readouterr().out
    assert "| popularity |" in from_msgpack
    assert from_log == from_msgpack  # same events, same report


def test_too_short_a_log_or_a_missing_file_exits_2(tmp_path, capsys):
    short = tmp_path / "short.jsonl"
    events = simulated(3000)
    write_jsonl([e for e in events if e["ts"] < events[0]["ts"] + 3600], short)  # 1 h < 24 h
    assert cmd_evaluate(parse(["evaluate", "--events", str(short), *FAST])) == 2
    assert "test-hours" in capsys.readouterr().err
    missing = parse(["evaluate", "--events", str(tmp_path / "nope.jsonl")])
    assert cmd_evaluate(missing) == 2


def test_unknown_model_or_backend_exits_2_before_reading(capsys):
    args = parse(["evaluate", "--events", "x.jsonl", "--models", "popularity, nope"])
    assert args.models == ("popularity", "nope")
    assert cmd_evaluate(args) == 2
    assert "unknown model(s) nope" in capsys.readouterr().err
    assert cmd_evaluate(parse(["evaluate", "--events", "x.jsonl", "--backend", "torch"])) == 2
    assert "--backend" in capsys.readouterr().err
