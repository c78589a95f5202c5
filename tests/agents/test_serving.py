"""Hot swap: validation refuses corrupt versions, swaps lose no request, rollback, announcements.

The core (ModelSlots) is tested in-process; ModelServer against the real
broker (announcements on the model-updates topic); and one worker process
with the serving module registered, over HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from support import WorkerProcess, http, wait_until

from agents.serving import ModelServer, ModelSlots
from agents.trainer import announce
from models.factorization import FactorizationParams
from models.model_version import set_current, write_version
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.token_embedding import EmbeddingParams
from models.training import TrainingParams, train_version


def _train(seed: int):
    sim = ClickstreamSimulator(SimulatorConfig(users=60, items=120, categories=6, sellers=10))
    params = TrainingParams(
        seed=seed,
        embedding=EmbeddingParams(dim=8, epochs=1),
        factorization=FactorizationParams(factors=4, epochs=2),
    )
    return train_version(sim.events(5000), params)


@pytest.fixture(scope="module")
def trained_pair():
    return _train(1), _train(2)


def _corrupt(path: Path) -> None:
    target = path / "embedding" / "vectors.npy"
    data = bytearray(target.read_bytes())
    data[-5] ^= 0xFF
    target.write_bytes(bytes(data))


def _query_token(trained) -> tuple[str, str]:
    return next(t for t in trained.embedding.vocab if t[1] == "click")


def test_corrupt_version_refused_old_keeps_serving(tmp_path, trained_pair):
    a, b = trained_pair
    good = write_version(tmp_path, a)
    bad = write_version(tmp_path, b)
    _corrupt(bad.path)
    slots = ModelSlots()
    slots.install(slots.load(good.path, good.checksum))
    item, kind = _query_token(a)
    with pytest.raises(Exception, match=r"vectors\.npy: checksum mismatch"):
        slots.load(bad.path, bad.checksum)
    assert slots.live_version == good.version
    assert len(slots.similar(item, kind, "cart", 5)) == 5


def test_swaps_under_continuous_requests_lose_nothing(tmp_path, trained_pair):
    a, b = trained_pair
    versions = [write_version(tmp_path, a), write_version(tmp_path, b)]
    slots = ModelSlots()
    slots.install(slots.load(versions[0].path))
    item, kind = _query_token(a)
    assert (item, kind) in b.index  # the same simulated catalogue: known to both versions
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    seen_versions: set[str] = set()

    def hammer() -> None:
        while not stop.is_set():
            try:
                result = slots.similar(item, kind, "cart", 5)
                seen_versions.add(slots.live_version)
                counts["ok" if result and len(result) == 5 else "failed"] += 1
            except Exception:
                counts["failed"] += 1

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for n in range(8):
            slots.release_previous()
            slots.install(slots.load(versions[(n + 1) % 2].path))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert counts["failed"] == 0 and counts["ok"] > 0
    assert seen_versions == {v.version for v in versions}
    assert slots.swaps == 9


def test_rollback_switches_back_instantly(tmp_path, trained_pair):
    a, b = trained_pair
    first, second = write_version(tmp_path, a), write_version(tmp_path, b)
    slots = ModelSlots()
    slots.install(slots.load(first.path))
    slots.install(slots.load(second.path))
    assert (slots.live_version, slots.previous.version) == (second.version, first.version)
    assert not slots.rollback("v-unknown")
    assert slots.rollback(first.version)
    assert (slots.live_version, slots.previous.version) == (first.version, second.version)


def test_server_follows_announcements_on_the_topic(settings, trained_pair):
    """Real broker: publish, a corrupt publish (refused, counted), rollback."""
    a, b = trained_pair
    root = settings.data_path / "models"
    first = write_version(root, a)
    set_current(root, first.version)
    second = write_version(root, b)
    bad = write_version(root, a)
    _corrupt(bad.path)
    server = ModelServer(settings)

    async def until(predicate, what: str) -> None:
        for _ in range(300):
            if predicate():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; status {server.status()}")

    async def scenario() -> None:
        await server.start()
        assert server.live_version == first.version  # CURRENT at start-up
        await asyncio.to_thread(server.listener.assigned.wait, 20)
        await asyncio.to_thread(announce, settings, second.announcement("publish"))
        await until(lambda: server.live_version == second.version, "the published version")
        await asyncio.to_thread(announce, settings, bad.announcement("publish"))
        await until(lambda: server.metrics.value("tastestream_model_refused_total") == 1, "refusal")
        assert server.live_version == second.version
        assert server.similar(*_query_token(b), "cart", 3)
        await asyncio.to_thread(announce, settings, first.announcement("rollback"))
        await until(lambda: server.live_version == first.version, "the rollback")

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
    assert server.metrics.value("tastestream_model_swaps_total") == 3
    assert server.metrics.value("tastestream_model_live_info", {"version": first.version}) == 1
    assert server.status()["refused"][0]["version"] == bad.version


def test_worker_swaps_and_refuses_over_http(settings, tmp_path, trained_pair):
    a, b = trained_pair
    root = settings.data_path / "models"
    first = write_version(root, a)
    set_current(root, first.version)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:

        def live() -> str | None:
            status, body = http("GET", worker.url + "/models")
            assert status == 200, body
            return (body["live"] or {}).get("version")

        wait_until(lambda: live() == first.version, what="CURRENT loaded at start")
        wait_until(lambda: http("GET", worker.url + "/models")[1]["listening"], what="listener")
        second = write_version(root, b)
        bad = write_version(root, a)
        _corrupt(bad.path)
        announce(settings, second.announcement("publish"))
        wait_until(lambda: live() == second.version, what="published version live")
        announce(settings, bad.announcement("publish"))
        wait_until(lambda: worker.metric("tastestream_model_refused_total") == 1, what="refusal")
        assert live() == second.version
        assert worker.metric("tastestream_model_swaps_total") == 2
    finally:
        worker.stop()
