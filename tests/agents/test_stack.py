"""The embedded stack starts real servers and leaves no process behind."""

import os
import signal
import subprocess
import sys
import time

import redis
from confluent_kafka.admin import AdminClient
from support import REPO, wait_until

from agents.stack import start_stack


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_start_answers_and_stop_leaves_nothing(tmp_path):
    stack = start_stack(work_dir=tmp_path)
    pids = [s.proc.pid for s in stack.services]
    try:
        assert redis.Redis.from_url(stack.redis_url).ping()
        bootstrap = stack.kafka_url.removeprefix("kafka://")
        assert AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5).brokers
    finally:
        stack.stop()
    assert len(pids) == 2
    wait_until(lambda: not any(alive(p) for p in pids), timeout=10, what="services to exit")


def test_children_die_with_a_killed_parent(tmp_path):
    script = (
        "import sys, time\n"
        "from agents.stack import start_stack\n"
        f"s = start_stack(work_dir={str(tmp_path)!r})\n"
        "print(' '.join(str(x.proc.pid) for x in s.services), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=str(REPO), text=True
    )
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(alive(p) for p in pids)
    parent.send_signal(signal.SIGKILL)  # no exit handler runs
    parent.wait(10)
    wait_until(lambda: not any(alive(p) for p in pids), timeout=10, what="orphans to die")
    time.sleep(0.1)
