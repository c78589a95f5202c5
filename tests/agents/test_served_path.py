"""The evaluated home list is the served one: a real worker agrees with the offline system.

The offline evaluation (``models/evaluation/served.py``) builds a user's home
list from the model version as ``train`` publishes it and from the state
folded over the same events (``fold_state``), through
``models.surfaces.build_context`` and ``generate``. A worker that loaded that
version and ingested those events must answer ``GET /users/{id}/recommendations``
with the same items in the same order (same ``seed`` for Thompson sampling,
the worker's ``computed_at`` as ``now``).

What the worker must pass for this to hold: the context of
``build_context`` (same sources, weights, ``per_source``, filters and
catalogue look-ups), its settings' state parameters equal to
``StateConfig``'s defaults, and every event folded in time order per user.
"""

from __future__ import annotations

import time

import pytest
from support import http, send_events, wait_until

from models.evaluation.served import ServedSystem, fold_state
from models.model_version import load_version, set_current, write_version
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.token_embedding import EmbeddingParams
from models.training import TrainingParams, train_version


def recent_stream(n: int = 4000) -> list[dict]:
    """Simulated events moved to end a minute ago, each a millisecond after the last.

    Distinct times give every decayed count a distinct value, so no order
    between equal scores depends on how the worker batched the events.
    """
    config = SimulatorConfig(users=40, items=150, categories=6, sellers=12, seed=4)
    events = sorted(ClickstreamSimulator(config).events(n), key=lambda e: e["ts"])
    shift = time.time() - 60.0 - events[-1]["ts"] - n * 1e-3
    return [{**e, "ts": round(e["ts"] + shift + k * 1e-3, 3)} for k, e in enumerate(events)]


@pytest.mark.slow
def test_the_evaluated_home_list_is_what_the_worker_serves(settings, worker_factory):
    events = recent_stream()
    params = TrainingParams(
        seed=3,
        embedding=EmbeddingParams(dim=16, epochs=2),
        index_threads=1,
    )
    params.factorization.epochs = 2
    root = settings.data_path / "models"
    info = write_version(root, train_version(events, params))
    set_current(root, info.version)
    worker = worker_factory(settings)

    def live() -> str | None:
        return (http("GET", worker.url + "/models")[1].get("live") or {}).get("version")

    wait_until(lambda: live() == info.version, what="the version loaded at start")
    send_events(settings, events)
    offline = ServedSystem.from_parts(load_version(info.path), fold_state(events))
    users = sorted({e["user_id"] for e in events if e["type"] == "cart"})[:4]
    assert len(users) == 4

    def served(user: str) -> tuple[list[str], float]:
        status, body = http("GET", f"{worker.url}/users/{user}/recommendations?k=20&seed=0")
        assert status == 200, body
        return [c["item_id"] for c in body["items"]], body["computed_at"]

    for user in users:
        last: dict = {}

        def agrees(user: str = user, last: dict = last) -> bool:
            items, now = served(user)
            last["served"] = items
            last["offline"] = offline.home(user, 20, now=now)
            return items == last["offline"]

        # The co-occurrence pairs travel through a topic of their own: wait for them.
        try:
            wait_until(agrees, timeout=60, what=f"{user}'s served list to equal the evaluated one")
        except AssertionError:
            pytest.fail(f"{user}: served {last['served']} != evaluated {last['offline']}")
        assert len(last["served"]) == 20
