"""What the benchmarks that drive a real worker share: start it, read it, stop it.

Scripts run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path``
and they ``import harness``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def worker_overrides(stack: Any, work: Path, prefix: str) -> tuple[dict[str, str], Any]:
    """``TASTESTREAM_*`` overrides for a worker on ``stack`` (fresh topics), and its Settings."""
    from agents.settings import Settings
    from agents.stack import free_port

    overrides = {
        "kafka_url": stack.kafka_url,
        "redis_url": stack.redis_url,
        "topic_prefix": f"{prefix}{uuid.uuid4().hex[:8]}",
        "web_port": str(free_port()),
        "data_dir": str(work / "data"),
        "session_timeout_seconds": "4",
        "log_level": "warning",
    }
    settings = Settings.load(env={"TASTESTREAM_" + k.upper(): v for k, v in overrides.items()})
    return overrides, settings


def worker_env(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment plus ``TASTESTREAM_<KEY>`` for each override."""
    env = dict(os.environ)
    env.update({"TASTESTREAM_" + k.upper(): str(v) for k, v in overrides.items()})
    env["PYTHONPATH"] = str(REPO)
    return env


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` settings overrides (as the worker's ``TASTESTREAM_<KEY>`` would read).

    >>> parse_overrides(["State_Store = rocksdb"])
    {'state_store': 'rocksdb'}
    """
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set wants KEY=VALUE, got {pair!r}")
        out[key.strip().lower()] = value.strip()
    return out


def get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def read_metrics(url: str, timeout: float = 30.0) -> dict[str, float]:
    """Counter totals (labels summed) from ``GET /metrics``; empty while it does not answer.

    A worker busy with a burst can hold its event loop for seconds: that is a
    wait, not a failure.
    """
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=timeout) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    totals: Counter = Counter()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            totals[line.split("{", 1)[0].split(" ", 1)[0]] += float(line.rsplit(" ", 1)[1])
    return dict(totals)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_worker(
    overrides: dict[str, str], log_path: Path, timeout: float = 120.0
) -> tuple[subprocess.Popen, str]:
    """``python -m agents.cli worker`` with ``overrides``; returns once /health says ready."""
    url = f"http://127.0.0.1:{overrides['web_port']}"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agents.cli", "worker"],
            env=worker_env(overrides),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
        )

    def ready() -> bool:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker exited {proc.returncode}:\n{tail}")
        try:
            status, body = get_json(url + "/health", timeout=2)
        except OSError:
            return False
        return status == 200 and bool(body and body.get("ready"))

    try:
        wait_for(ready, timeout, "the worker to be ready", 0.2)
    except BaseException:
        stop_worker(proc)
        raise
    return proc, url


def profile_samples(path: Path) -> Iterator[tuple[list[str], int]]:
    """``(frames outermost first, sample count)`` per line of a py-spy ``--format raw`` file."""
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            yield stack.split(";"), int(count_text)


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
