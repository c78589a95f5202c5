"""Third-party clients, as the README shows them: its very snippets run against a real worker.

Each snippet (kcat through ``tastestream kcat``, confluent-kafka, aiokafka) sends
an event and a recommendation request and reads the answer from the
recommendations topic. The test swaps in the suite's broker address, its
topic prefix and fresh ids, runs the snippet as a user would (a shell or a
Python process), and checks the answer and that the event reached the user's history.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support import REPO, WorkerProcess, wait_until

README = REPO / "README.md"


def readme_example(name: str) -> str:
    """The fenced code block after ``<!-- example: NAME -->`` in the README."""
    text = README.read_text(encoding="utf-8")
    marker = f"<!-- example: {name} -->"
    assert marker in text, f"the README lost its {name} example"
    block = re.search(r"```\w*\n(.*?)```", text.split(marker, 1)[1], re.S)
    assert block, f"no code block after {marker}"
    return block.group(1)


def localise(code: str, worker: WorkerProcess, user: str, request_id: str) -> str:
    """The snippet with the suite's broker, topic prefix and fresh ids."""
    settings = worker.settings
    return (
        code.replace("127.0.0.1:9092", settings.kafka_bootstrap)
        .replace('"tastestream.', f'"{settings.topic_prefix}.')
        .replace(" tastestream.", f" {settings.topic_prefix}.")
        .replace("u42", user)
        .replace("r42", request_id)
    )


def run_example(argv: list[str], code: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("TASTESTREAM_KAFKA_URL", None)
    done = subprocess.run(
        [*argv, code], env=env, cwd=str(REPO), capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def answer_in(stdout: str, user: str) -> dict:
    answers = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert answers, f"no answer printed: {stdout[-2000:]}"
    answer = answers[-1]
    assert answer["user_id"] == user and isinstance(answer["items"], list), answer
    return answer


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("kcat", ["bash", "-euo", "pipefail", "-c"]),
        ("confluent-kafka", [sys.executable, "-c"]),
        ("aiokafka", [sys.executable, "-c"]),
    ],
)
def test_readme_client_sends_an_event_and_reads_its_recommendations(module_worker, name, argv):
    user = f"{name}-{uuid.uuid4().hex[:8]}"
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    code = localise(readme_example(name), module_worker, user, request_id)
    assert module_worker.settings.kafka_bootstrap in code  # the snippet names the broker
    stdout = run_example(argv, code)
    answer = answer_in(stdout, user)
    if name == "kcat":
        assert answer["request_id"] == request_id
    history = wait_until(lambda: module_worker.history(user), what=f"{user}'s history")
    assert [(e["item_id"], e["type"]) for e in history] == [("i7", "click")]


def test_kcat_print_gives_a_command_that_runs_elsewhere(module_worker, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env["TASTESTREAM_KAFKA_URL"] = module_worker.settings.kafka_url
    printed = subprocess.run(
        [sys.executable, "-m", "agents.cli", "kcat", "--print", "--", "-L", "-J"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    assert printed.startswith("LD_LIBRARY_PATH=") and " -b " in printed
    listed = subprocess.run(
        ["bash", "-c", printed], capture_output=True, text=True, timeout=30, check=True
    )
    topics = {t["topic"] for t in json.loads(listed.stdout)["topics"]}
    assert module_worker.settings.topics.events.name in topics
