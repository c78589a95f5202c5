"""Every entry point fails in one line with the cause and a hint, and leaves nothing half-written.

Run as a user runs them (subprocesses). No traceback unless ``--debug``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from support import REPO, settings_env

from agents.stack import free_port

COLUMNS = ["--columns", "ts=timestamp,user_id=visitorid,item_id=itemid,type=event"]
TYPES = ["--types", "view=view,addtocart=cart"]


def cli(args: list[str], env: dict | None = None, stdin: bytes | None = None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        input=stdin,
        env=env or dict(os.environ, PYTHONPATH=str(REPO)),
        cwd=str(REPO),
        capture_output=True,
        timeout=timeout,
    )


def one_line_error(result, verb: str, *phrases: str) -> str:
    """Assert exit code 2 and a single stderr line naming the verb and the phrases."""
    err = result.stderr.decode()
    assert result.returncode == 2, (result.returncode, err, result.stdout.decode()[-500:])
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tastestream {verb}".rstrip() + ":"), lines[0]
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("inputs")
    (base / "empty.jsonl").write_bytes(b"")
    (base / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    (base / "wrong.csv").write_text("a,b\n1,2\n")
    (base / "ok.csv").write_text("timestamp,visitorid,event,itemid\n1433221332117,1,view,2\n")
    return base


@pytest.fixture
def env_with_broker(settings):
    return settings_env(settings)


@pytest.mark.parametrize(
    ("name", "phrases"),
    [
        ("missing.jsonl", ["missing.jsonl: no such file", "check the path"]),
        (".", ["is a directory", "pass a file"]),
        ("empty.jsonl", ["empty.jsonl is empty"]),
        ("binary.jsonl", ["binary.jsonl is neither JSON lines nor msgpack events"]),
    ],
)
def test_produce_bad_input_files(files, env_with_broker, name, phrases):
    path = str(files / name) if name != "." else str(files)
    one_line_error(cli(["produce", path], env_with_broker), "produce", *phrases)


@pytest.mark.parametrize(
    ("name", "phrases"),
    [
        ("missing.csv", ["missing.csv: no such file"]),
        (".", ["is a directory"]),
        ("empty.jsonl", ["empty"]),
        ("binary.jsonl", ["not UTF-8 text"]),
        ("wrong.csv", ["not in the header", "'a', 'b'"]),
    ],
)
def test_import_bad_input_files_leave_no_output_behind(files, tmp_path, name, phrases):
    path = str(files / name) if name != "." else str(files)
    out = tmp_path / "out.jsonl"
    result = cli(["import", path, *COLUMNS, *TYPES, "--out", str(out)])
    one_line_error(result, "import", *phrases)
    assert list(tmp_path.iterdir()) == []  # no empty or partial out.jsonl, no temp file


def test_import_writes_its_output_whole(files, tmp_path):
    out = tmp_path / "out.jsonl"
    result = cli(["import", str(files / "ok.csv"), *COLUMNS, *TYPES, "--out", str(out)])
    assert result.returncode == 0, result.stderr.decode()
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert json.loads(out.read_text())["item_id"] == "2"


def test_simulate_and_evaluate_outputs_are_renamed_into_place(tmp_path):
    out = tmp_path / "sim.jsonl"
    args = ["simulate", "--users", "20", "--items", "50", "--events", "300", "--out", str(out)]
    assert cli(args).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim.jsonl"]
    result = cli(["simulate", "--events", "10", "--out", str(tmp_path / "no-such-dir" / "x")])
    one_line_error(result, "simulate", "no such directory")
    result = cli(["simulate", "--items", "10", "--events", "5", "--out", str(tmp_path / "x")])
    one_line_error(result, "simulate", "cannot run with --users 1000 --items 10", "--items 30")
    result = cli(["evaluate", "--events", str(tmp_path / "nothing.jsonl")])
    err = result.stderr.decode()
    assert result.returncode == 2 and "no such file" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "verb", "phrases"),
    [
        (["produce", "x", "--batch-size", "0"], "produce", ["--batch-size", "at least 1"]),
        (["demo", "--rate", "-5"], "demo", ["--rate", "above 0"]),
        (["simulate", "--users", "many"], "simulate", ["--users", "'many'"]),
        (["train", "--every", "soon"], "train", ["use e.g. 90s, 30m"]),
        (["import", "x.csv", "--columns", "a=b", "--types", "a=b", "--web-port", "1"], "import",
         ["unrecognized arguments: --web-port"]),
        (["--bogus"], "", ["unknown option --bogus", "choose a verb", "demo"]),
        ([], "", ["choose a verb"]),
        (["produce", "x", "--wait-timeout", "nan"], "produce", ["--wait-timeout"]),
    ],
)  # fmt: skip
def test_bad_options_get_one_line_pointing_at_help(args, verb, phrases):
    line = one_line_error(cli(args), verb, *phrases)
    assert line.endswith(f"(see tastestream{' ' + verb if verb else ''} --help)")


def test_broker_unreachable_is_said_quickly_and_plainly(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TASTESTREAM_DATA_DIR=str(tmp_path))
    env["TASTESTREAM_KAFKA_URL"] = f"kafka://127.0.0.1:{free_port()}"  # nothing listens
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps({"user_id": "u", "item_id": "i", "type": "view", "ts": 1}) + "\n")
    started = time.monotonic()
    line = one_line_error(cli(["produce", str(path)], env), "produce", "no Kafka broker answered")
    assert "tastestream broker" in line and "TASTESTREAM_KAFKA_URL" in line
    assert time.monotonic() - started < 30
    one_line_error(cli(["kcat", "--", "-L"], dict(env, PATH="/nonexistent")), "kcat", "kcat")


def test_debug_shows_the_traceback(tmp_path):
    result = cli(["--debug", "produce", str(tmp_path / "missing.jsonl")])
    err = result.stderr.decode()
    assert result.returncode != 0 and "Traceback" in err and "CliError" in err


def test_help_version_and_per_verb_options():
    top = cli(["--help"]).stdout.decode()
    assert "``" not in top and "produce" in top and "kcat" in top
    version = cli(["--version"]).stdout.decode()
    assert version.startswith("tastestream ") and "Python" in version
    for verb, present, absent in [
        ("import", ["--columns", "--out"], ["--web-port", "--partitions", "--data-dir"]),
        ("produce", ["--wait", "--wait-timeout", "--batch-size"], ["--web-port", "--data-dir"]),
        ("broker", ["--port", "--host"], ["--web-port", "--data-dir"]),
        ("train", ["--wait-for-ingest", "--first-after-events"], ["--web-port"]),
        ("demo", ["--log-level", "--first-model-after"], []),
    ]:
        text = cli([verb, "--help"]).stdout.decode()
        assert "``" not in text
        assert all(option in text for option in present), (verb, text)
        assert not any(option in text for option in absent), (verb, text)
        # every option has help: no option line stands alone without a description
        options = [line for line in text.splitlines() if line.strip().startswith("--")]
        assert options and all(
            len(line.split("  ", 2)) > 1 or line.rstrip().endswith(("}", "N", "SECONDS"))
            for line in options
        )
