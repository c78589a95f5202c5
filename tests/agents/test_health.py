"""Readiness that means it, credentials where writes happen, and 400s that name the field."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

from support import REPO, WorkerProcess, http, send_events, settings_env, stream_event, wait_until

from agents.producer import kafka_producer


def poll_start(worker: WorkerProcess, user: str, seconds: float = 60.0) -> list[tuple[str, int]]:
    """Start the worker's process and poll it every 50 ms until it is ready (and 2 s more)."""
    log = open(worker.log_path, "ab")  # noqa: SIM115 - closed with the process
    worker.proc = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "worker"],
        env=settings_env(worker.settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(REPO),
    )
    log.close()
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + seconds
    ready_at = None
    while time.monotonic() < deadline:
        for path in ("/health", f"/users/{user}/history", f"/users/{user}/recommendations"):
            try:
                status, _ = http("GET", worker.url + path, timeout=10)
            except OSError:
                continue  # not listening yet
            seen.append((path, status))
            if path == "/health" and status == 200 and ready_at is None:
                ready_at = time.monotonic()
        if ready_at is not None and time.monotonic() - ready_at > 2.0:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"not ready within {seconds} s:\n{worker.log_tail()}")


def test_ready_means_a_request_would_succeed_after_a_start_and_after_kill_9(settings, tmp_path):
    worker = WorkerProcess(settings, tmp_path / "w.log").start()
    user = "hl-u1"
    send_events(settings, [stream_event("hl", 1, k, 1_767_225_600.0 + k) for k in range(5)])
    wait_until(lambda: len(worker.history(user)) == 5, what="events applied")
    time.sleep(1.5)  # checkpointed
    for stop in (worker.stop, worker.kill):
        stop()
        seen = poll_start(worker, user)
        assert not [s for s in seen if s[1] >= 500 and s[1] != 503], seen
        first_ready = next(i for i, s in enumerate(seen) if s == ("/health", 200))
        after = seen[first_ready:]
        # From the first 200 on, the known user is served, never "no events".
        assert all(status == 200 for _, status in after), after
        assert len(worker.history(user)) == 5
    status, live = http("GET", worker.url + "/health/live")
    assert status == 200 and live["live"]
    worker.stop()


def test_writes_need_the_token_when_one_is_set(settings, worker_factory):
    settings = settings.replace(api_token="s3cret-token")
    worker = worker_factory(settings)
    event = stream_event("au", 1, 0, 1_767_225_600.0)

    def post(headers: dict[str, str], path: str = "/events", body: object = event) -> int:
        request = urllib.request.Request(
            worker.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert post({}) == 401
    assert post({"Authorization": "Bearer wrong"}) == 401
    assert post({"Authorization": "Bearer s3cret-token"}) == 202
    assert post({}, "/internal/token-states", {"keys": ["click:x"]}) == 401
    assert (
        post({"Authorization": "Bearer s3cret-token"}, "/internal/token-states", {"keys": []})
        == 200
    )
    wait_until(lambda: worker.history("au-u1"), what="the authorised event")
    # Reads stay open unless api_token_reads is set; the rejections are counted.
    assert http("GET", worker.url + "/users/au-u1/history")[0] == 200
    assert worker.metric("tastestream_http_rejected_total") >= 2
    _, health = http("GET", worker.url + "/health")
    assert health["open"] is False and "s3cret" not in worker.log_tail(100_000)


def test_a_model_announcement_may_not_name_a_path_outside_the_model_roots(
    settings, worker_factory, tmp_path
):
    worker = worker_factory(settings)
    evil = tmp_path / "elsewhere" / "v1"
    evil.mkdir(parents=True)
    (evil / "manifest.json").write_text("{}")
    # The listener reads from the end of the topic once assigned: announce after that.
    wait_until(lambda: http("GET", worker.url + "/models")[1]["listening"], what="listening")
    producer = kafka_producer(settings)
    topic = settings.topics.model_updates.name
    for announcement in (
        {"action": "publish", "version": "v1", "path": str(evil), "checksum": "x"},
        {"action": "publish", "version": "../../etc", "checksum": "x"},
        {"action": "publish", "version": "v2"},  # no checksum
    ):
        producer.produce(topic, json.dumps(announcement).encode(), key=b"model")
    producer.flush(10)
    wait_until(
        lambda: worker.metric("tastestream_model_refused_total") >= 3,
        what="three refusals",
    )
    _, models = http("GET", worker.url + "/models")
    assert models["live"] is None


def test_malformed_parameters_and_bodies_are_400_naming_the_field(module_worker):
    url = module_worker.url
    for path, field in [
        ("/users/x/history?limit=%C2%B2", "limit"),
        ("/users/x/history?limit=-1", "limit"),
        ("/users/x/state?at=-1e308", "at"),
        ("/users/x/state?at=nan", "at"),
        ("/users/x/recommendations?k=abc", "k"),
        ("/users/x/recommendations?seed=1.5", "seed"),
        ("/items/x/similar?from=like", "from"),
        ("/items/x/similar?k=99999999999999999999", "k"),
    ]:
        status, body = http("GET", url + path)
        assert status == 400 and body["field"] == field, (path, body)
    for raw, words in [
        (b"", "is empty"),
        (b"not json{", "is not JSON"),
        (b"[1, 2", "is not valid JSON"),
        (b'"hello"', "expected a JSON object or an array of objects, got a string"),
        (b"42", "got a number"),
        (b"\xff\xfe", "is not JSON"),
    ]:
        status, body = http("POST", url + "/events", raw)
        assert status == 400 and body["field"] == "body" and words in body["error"], (raw, body)
    # Valid JSON that is not events: each item rejected with its reason, duplicates counted.
    event = {"user_id": "dup", "item_id": "i", "type": "view", "ts": 1.0, "event_id": "e1"}
    status, body = http("POST", url + "/events", [1, event, event])
    assert status == 202 and body["accepted"] == 1 and body["duplicates"] == 1
    assert [r["index"] for r in body["rejected"]] == [0]
    # An event id is unique per user: another user's event with the same id is not a duplicate.
    other = {**event, "user_id": "dup-other"}
    status, body = http("POST", url + "/events", [event, other])
    assert status == 202 and body["accepted"] == 2 and body["duplicates"] == 0, body
