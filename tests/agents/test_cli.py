"""The CLI verbs, run as a user runs them (subprocesses), against the real stack."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
from support import REPO, consume_all, http, settings_env, wait_until

from agents.stack import free_port


def run_cli(args: list[str], env: dict, stdin: bytes | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        input=stdin,
        env=env,
        cwd=str(REPO),
        capture_output=True,
        timeout=timeout,
    )


def last_json(stdout: bytes) -> dict:
    return json.loads(stdout.decode().strip().splitlines()[-1])


def test_simulate_to_file_is_seeded_and_valid(tmp_path, settings):
    env = settings_env(settings)
    out_a, out_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out in (out_a, out_b):
        result = run_cli(
            [
                "simulate",
                "--users",
                "50",
                "--items",
                "200",
                "--events",
                "2000",
                "--seed",
                "3",
                "--out",
                str(out),
            ],
            env,
        )
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        assert last_json(result.stdout) == {"events": 2000, "out": str(out)}
    assert out_a.read_bytes() == out_b.read_bytes()
    assert len(out_a.read_text().splitlines()) == 2000


def test_produce_sends_valid_events_and_counts_rejects_by_reason(settings):
    env = settings_env(settings)
    lines = [
        json.dumps({"user_id": f"p{i}", "item_id": "i", "type": "view", "ts": 1767225600 + i})
        for i in range(30)
    ]
    lines += [
        json.dumps({"user_id": "p", "item_id": "i", "type": "zap", "ts": 1}),
        json.dumps({"user_id": "p", "type": "view", "ts": 1}),
        "{broken",
    ]
    result = run_cli(["produce", "-"], env, stdin="\n".join(lines).encode())
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    summary = last_json(result.stdout)
    assert summary["sent"] == 30
    assert summary["rejected"] == {"type": 1, "item_id": 1, "undecodable line": 1}
    messages = consume_all(settings.kafka_bootstrap, settings.topics.events.name, expect=1)
    assert messages, "nothing reached the events topic"


def test_produce_without_a_broker_says_what_to_do(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TASTESTREAM_DATA_DIR=str(tmp_path))
    env.pop("TASTESTREAM_KAFKA_URL", None)
    result = run_cli(["produce", "-"], env, stdin=b"")
    assert result.returncode != 0
    assert b"TASTESTREAM_KAFKA_URL" in result.stderr + result.stdout


def _descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def start_demo(tmp_path, *args: str) -> tuple[subprocess.Popen, int, object]:
    """``tastestream demo ARGS`` on the embedded default, output to a file."""
    port = free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        TASTESTREAM_DATA_DIR=str(tmp_path / "data"),
        TASTESTREAM_WEB_PORT=str(port),
        TASTESTREAM_SESSION_TIMEOUT_SECONDS="4",
    )
    env.pop("TASTESTREAM_KAFKA_URL", None)
    env.pop("TASTESTREAM_REDIS_URL", None)
    out = tmp_path / "demo.out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "demo", "--users", "50", "--items", "300", *args],
        env=env,
        cwd=str(REPO),
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return proc, port, out


def assert_all_exited(pids) -> None:
    def alive():
        return [
            p for p in pids
            if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]  # fmt: skip

    wait_until(lambda: not alive(), timeout=20, what="the demo's children to exit")


def test_demo_names_a_user_with_events_trains_early_and_leaves_nothing_behind(tmp_path):
    proc, port, out = start_demo(
        tmp_path, "--duration", "30", "--rate", "300", "--first-model-after", "1500"
    )
    base = f"http://127.0.0.1:{port}"
    seen: set[int] = set()
    accepted = 0.0
    banner_user = live_model = None
    deadline = time.monotonic() + 150
    while proc.poll() is None and time.monotonic() < deadline:
        seen.update(_descendants(proc.pid))
        try:
            if banner_user is None:
                found = re.search(rf"page:  {base}/ui/users/(\S+)", out.read_text())
                if found:
                    banner_user = found.group(1)
                    # the user the banner names already has events, the moment it is printed
                    assert http("GET", f"{base}/users/{banner_user}/history")[0] == 200
            if live_model is None:
                status, body = http("GET", f"{base}/models", timeout=2)
                live_model = body.get("live") if status == 200 else None
            status, text = http("GET", f"{base}/metrics", timeout=2)
            if status == 200:
                for line in text.splitlines():
                    if line.startswith("tastestream_events_accepted_total "):
                        accepted = float(line.split()[1])
        except OSError:
            pass
        time.sleep(0.5)
    output = out.read_text(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    assert banner_user, output[-3000:]
    assert "bootstrap.servers=127.0.0.1:" in output and "export TASTESTREAM_KAFKA_URL=" in output
    assert "the first trains after 1,500 events" in output and "then every 2m" in output
    assert accepted > 100, output[-3000:]  # the worker ingested the simulated stream
    # the first model went live during a 30 s demo, not after the 2-minute schedule
    assert live_model is not None, (tmp_path / "data" / "logs" / "trainer.log").read_text()
    trainer_log = (tmp_path / "data" / "logs" / "trainer.log").read_text()
    assert "published" in trainer_log and " INFO " not in trainer_log  # quiet: no gensim chatter
    assert len(seen) >= 4  # broker, redis, worker, trainer (at least)
    assert_all_exited(seen)


def test_demo_stops_cleanly_on_sigterm(tmp_path):
    proc, port, _ = start_demo(tmp_path, "--rate", "100")
    wait_until(
        lambda: (
            _port_open(port) and http("GET", f"http://127.0.0.1:{port}/health", timeout=2)[0] == 200
        ),
        timeout=120,
        interval=0.5,
        what="demo up",
    )
    children = _descendants(proc.pid)
    assert len(children) >= 3
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(90) == 0
    assert_all_exited(children)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_import_maps_columns_and_vocabulary_and_counts_rejects(tmp_path, settings):
    csv_path = tmp_path / "events.csv"
    csv_path.write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433224214164,992329,addtocart,248676,\n"
        "1433221999827,111016,transaction,318965,4000\n"
        "1433221955914,483717,like,253185,\n"
        "notatime,1,view,2,\n"
    )
    out = tmp_path / "events.jsonl"
    result = run_cli(
        [
            "import", str(csv_path),
            "--columns", "ts=timestamp,user_id=visitorid,item_id=itemid,type=event",
            "--types", "view=view,addtocart=cart,transaction=purchase",
            "--out", str(out),
        ],
        settings_env(settings),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    summary = last_json(result.stdout)
    assert (summary["rows"], summary["accepted"], summary["written"]) == (5, 3, 3)
    assert sum(summary["rejected"].values()) == 2
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["type"] for e in events] == ["view", "cart", "purchase"]
    assert events[0] == {
        **events[0],
        "user_id": "257597",
        "item_id": "355908",
        "ts": 1433221332.117,
    }


def test_produce_wait_returns_once_the_workers_applied_every_event(tmp_path, settings, worker):
    events = [
        {"user_id": f"w{i % 40}", "item_id": f"i{i}", "type": "view", "ts": 1767225600 + i}
        for i in range(3000)
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    args = ["produce", str(path), "--wait", "--wait-timeout", "60"]
    result = run_cli(args, settings_env(settings))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    summary = last_json(result.stdout)
    assert summary["sent"] == summary["applied"] == 3000
    # applied means applied: no polling needed, every user's history is complete now
    histories = {f"w{u}": worker.history(f"w{u}") for u in range(40)}
    assert all(len(h) == 75 for h in histories.values()), {u: len(h) for u, h in histories.items()}


def test_produce_wait_times_out_with_one_line_when_no_worker_applies(tmp_path, settings):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"user_id": "u", "item_id": "i", "type": "view", "ts": 1767225600}))
    started = time.monotonic()
    args = ["produce", str(path), "--wait", "--wait-timeout", "2"]
    result = run_cli(args, settings_env(settings))
    assert result.returncode == 2
    assert time.monotonic() - started < 30
    err = result.stderr.decode().strip().splitlines()
    assert err[-1].startswith("tastestream produce: the workers applied 0 of 1 events within 2 s")
    assert "Traceback" not in result.stderr.decode()
    assert last_json(result.stdout)["sent"] == 1


def test_train_once_waits_for_ingest_then_trains_on_everything_sent(tmp_path, settings, worker):
    from models.simulator import ClickstreamSimulator, SimulatorConfig

    events = list(ClickstreamSimulator(SimulatorConfig(users=40, items=120, seed=2)).events(4000))
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    env = settings_env(settings)
    sent = run_cli(["produce", str(path)], env)  # returns once the broker has them, no waiting
    assert sent.returncode == 0, sent.stderr.decode()[-2000:]
    args = ["train", "--once", "--wait-for-ingest", "--wait-timeout", "60", "--dim", "8"]
    result = run_cli(args, env, timeout=180)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    # every event sent was in the log it trained on, though nothing waited before
    assert "training on 4,000 events" in result.stdout.decode(), result.stdout.decode()
