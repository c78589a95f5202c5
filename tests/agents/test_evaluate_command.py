"""``tastestream evaluate``: the verb's parser and command on simulated, CSV and broken input."""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys

import msgpack
import pytest
from support import REPO

from agents.evaluate_command import add_parser, cmd_evaluate
from models.simulator import ClickstreamSimulator, SimulatorConfig, write_jsonl
from streams.eventlog import EventLog

FAST = ["--baselines", "none", "--dim", "8", "--epochs", "1", "--k", "20"]
BAD_LINES = [
    "this is not json\n",
    json.dumps({"user_id": "u1", "item_id": "i1", "type": "like", "ts": 1767225600}) + "\n",
    json.dumps({"user_id": "u1", "item_id": "i1", "type": "view"}) + "\n",
    json.dumps({"user_id": "u1", "item_id": "i1", "type": "view", "ts": 1767225600}) + "\n",
]
SERVED = [
    "similar (served: model + fallbacks)",
    "model index (served)",
    "co-occurrence sketch (served)",
    "trending (served)",
    "home (served)",
]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tastestream")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def simulated(n: int = 20_000) -> list[dict]:
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
    report = tmp_path / "out" / "REPORT.md"
    argv = ["evaluate", "--events", events_file, "--out", str(report), *FAST]
    argv[argv.index("none")] = "fast"
    result = subprocess.run(
        [sys.executable, "-m", "agents.cli", *argv], cwd=REPO, capture_output=True, timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert report.read_text() == stdout.rstrip("\n") + "\n"
    for name in [*SERVED, "popularity", "BPR (implicit)", "recently viewed (trivial)"]:
        assert f"| {name} |" in stdout, name
    assert "## Served rows against the best other row" in stdout
    assert "home (served): fitted" in stderr and "reading" in stderr  # progress on stderr
    data = json.loads(report.with_suffix(".json").read_text())
    names = [row["name"] for row in data["rows"]]
    assert names[:5] == SERVED and names[-2:] == [
        "seed echo (trivial)",
        "recently viewed (trivial)",
    ]
    assert data["config"]["k"] == 20 and data["config"]["test_hours"] == 24.0
    assert data["input"]["rejected"] == {"undecodable line": 1, "type": 1, "ts": 1}
    assert data["input"]["accepted"] == 20_001
    similar = data["rows"][0]
    assert similar["params"]["training"]["embedding"]["epochs"] == 1
    for task in ("item-to-item", "click-to-cart", "cart-to-cart"):
        entry = similar["tasks"][task]
        assert 0.0 <= entry["novel_rate"] <= 1.0 and 0.0 <= entry["auc"] <= 1.0
        assert entry["ci"][0] <= entry["rate"] <= entry["ci"][1]
    assert set(data["rows"][4]["home"]) == {"20", "100"}
    assert "Rejected input by reason" in stdout


def _table(markdown: str) -> str:
    return markdown.split("## Item level")[1].split("## Coverage")[0]


def test_msgpack_stream_event_log_and_csv_give_the_same_report(tmp_path, capsys):
    events = simulated(12_000)
    packed = tmp_path / "events.msgpack"
    packed.write_bytes(b"".join(msgpack.packb(e) for e in events))
    assert cmd_evaluate(parse(["evaluate", "--events", str(packed), *FAST])) == 0
    from_msgpack = capsys.readouterr().out
    log_root = tmp_path / "eventlog"
    with EventLog(log_root / "w0", fsync="never") as log:
        log.append(events)
    assert cmd_evaluate(parse(["evaluate", "--events", str(log_root), *FAST])) == 0
    from_log = capsys.readouterr().out
    assert "| similar (served: model + fallbacks) |" in from_msgpack
    assert _table(from_log) == _table(from_msgpack)  # same events, same numbers
    # The same interactions as a header-less gzip CSV, read through the importer.
    csv_path = tmp_path / "log.csv.gz"
    with gzip.open(csv_path, "wt") as out:
        for e in events:
            if e["type"] != "impression":
                category = e["item"]["category"]
                out.write(f"{e['user_id']},{e['item_id']},{category},{e['type']},{e['ts']}\n")
    argv = ["evaluate", "--events", str(csv_path), *FAST, "--no-header"]
    argv += ["--columns", "user_id=0,item_id=1,category=2,type=3,ts=4"]
    assert cmd_evaluate(parse(argv)) == 0
    from_csv = capsys.readouterr().out
    assert "| similar (served: model + fallbacks) |" in from_csv
    assert "item→item" in from_csv


def test_too_short_a_log_a_missing_file_or_a_bad_mapping_exits_2(tmp_path, capsys):
    short = tmp_path / "short.jsonl"
    events = simulated(3000)
    write_jsonl([e for e in events if e["ts"] < events[0]["ts"] + 3600], short)  # 1 h < 24 h
    assert cmd_evaluate(parse(["evaluate", "--events", str(short), *FAST])) == 2
    assert "test window" in capsys.readouterr().err
    missing = parse(["evaluate", "--events", str(tmp_path / "nope.jsonl")])
    assert cmd_evaluate(missing) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    bad = parse(["evaluate", "--events", str(short), "--no-header", "--columns", "user_id=x"])
    assert cmd_evaluate(bad) == 2
    assert "columns must map ts, item_id, type" in capsys.readouterr().err
