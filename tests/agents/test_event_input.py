"""Event input of ``import``, ``evaluate`` and ``train --events``: CLI runs, one-line errors."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from support import REPO

from agents.event_input import InputError, read_events
from streams.importer import ImportSpec, parse_mapping


def run_cli(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("TASTESTREAM_KAFKA_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        env=env,
        cwd=str(cwd),
        capture_output=True,
        timeout=120,
    )


def test_import_reads_a_gzipped_headerless_file_by_position(tmp_path):
    path = tmp_path / "behaviour.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("1,10,c1,pv,1511544070\n1,11,c1,cart,1511544071\n2,12,c2,like,1511544072\n")
    out = tmp_path / "events.jsonl"
    result = run_cli(
        ["import", str(path), "--no-header",
         "--columns", "user_id=0,item_id=1,category=2,type=3,ts=4",
         "--types", "pv=click,cart=cart", "--out", str(out)],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    summary = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert (summary["rows"], summary["accepted"], summary["written"]) == (3, 2, 2)
    assert summary["rejected"] == {"column 3 (type): unknown value": 1}
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["item_id"], e["type"], e["item"]["category"]) for e in events] == [
        ("10", "click", "c1"),
        ("11", "cart", "c1"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-header", "--columns", "user_id=0,item_id=1,type=x,ts=4", "--types", "pv=click"],
         "0-based positions: type=x"),
        (["--no-header", "--columns", "user_id=0,item_id=1,type=3,ts=9", "--types", "pv=click"],
         "ts=9 beyond the first row's 5 fields"),
    ],
)  # fmt: skip
def test_import_errors_are_one_line(tmp_path, args, message):
    path = tmp_path / "log.csv"
    path.write_text("1,10,c1,pv,1511544070\n")
    result = run_cli(["import", str(path), *args, "--out", str(tmp_path / "o.jsonl")], tmp_path)
    assert result.returncode != 0
    err = result.stderr.decode().strip()
    assert "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("tastestream import: ") and message in err, err


def test_read_events_counts_rejects_from_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text(
        '{"user_id": "u", "item_id": "i", "type": "click", "ts": 1}\n'
        "not json\n"
        '{"user_id": "u", "item_id": "i", "type": "like", "ts": 1}\n'
    )
    rejected: Counter[str] = Counter()
    assert [e["type"] for e in read_events(str(jsonl), rejected)] == ["click"]
    assert rejected == {"undecodable line": 1, "type": 1}
    csv_path = tmp_path / "log.csv"
    csv_path.write_text("1,10,pv,5\n1,12,pv,6\n1,11,pv,x\n")
    spec = ImportSpec(
        columns=parse_mapping("user_id=0,item_id=1,type=2,ts=3"),
        types={"pv": "click"},
        header=False,
    )
    rejected = Counter()
    assert len(list(read_events(str(csv_path), rejected, spec))) == 2
    assert rejected == {"column 3 (ts): not a number (file uses epoch s)": 1}
    with pytest.raises(InputError, match=r"missing\.jsonl: no such file"):
        list(read_events(str(tmp_path / "missing.jsonl"), Counter()))
