"""train_version: deterministic, recovers the simulator's planted structure, refuses too little."""

from __future__ import annotations

import numpy as np
import pytest

from models.factorization import FactorizationParams
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.token_embedding import EmbeddingParams
from models.training import NotEnoughData, TrainingParams, train_version

CONFIG = SimulatorConfig(users=300, items=400, categories=8, sellers=30, seed=1)


def small_params(seed: int = 0, epochs: int = 20) -> TrainingParams:
    """The production embedding set-up (per-user sentences, item tokens, 20 epochs) at dim 32."""
    return TrainingParams(
        seed=seed,
        embedding=EmbeddingParams(dim=32, epochs=epochs),
        factorization=FactorizationParams(factors=16, epochs=10),
    )


@pytest.fixture(scope="module")
def simulator() -> ClickstreamSimulator:
    return ClickstreamSimulator(CONFIG)


@pytest.fixture(scope="module")
def events(simulator) -> list[dict]:
    return list(simulator.events(40_000))


@pytest.fixture(scope="module")
def trained(events):
    return train_version(events, small_params())


def test_same_seed_same_vectors_and_factors(events):
    first, again = (train_version(events[:8000], small_params(epochs=2)) for _ in range(2))
    assert again.embedding.vocab == first.embedding.vocab
    np.testing.assert_array_equal(again.embedding.vectors, first.embedding.vectors)
    np.testing.assert_array_equal(
        again.factorization.item_factors, first.factorization.item_factors
    )
    other = train_version(events[:8000], small_params(seed=7, epochs=2))
    assert not np.array_equal(other.embedding.vectors[:5], first.embedding.vectors[:5])


def test_data_range_and_metrics(events, trained):
    assert trained.data_range["events"] == len(events)
    assert trained.data_range["first_ts"] == events[0]["ts"]
    assert trained.data_range["last_ts"] == events[-1]["ts"]
    assert set(trained.index.types()) >= {"click", "cart", "item"}
    assert np.isfinite(trained.metrics["embedding_loss"])
    vocab = trained.embedding.vocab
    items = {token[0] for token in vocab}
    assert trained.metrics["vocab"] == len(vocab) == len(trained.index)
    assert sum(token[1] == "item" for token in vocab) == len(items)  # one item token per item


def test_click_to_cart_finds_complements_click_to_click_finds_substitutes(simulator, trained):
    """The planted structure: carts go to complement categories, clicks stay in category."""
    index = trained.index
    items = [i for i in {t[0] for t in trained.embedding.vocab} if (i, "click") in index]
    items = sorted(
        items, key=lambda i: -trained.embedding.counts[trained.embedding.index_of((i, "click"))]
    )[:100]
    to_cart_complement = to_click_same = differ = 0
    for item in items:
        category = simulator.item_category(item)
        complements = set(simulator.complement_categories(category))
        carts = [i for i, _ in index.neighbours((item, "click"), "cart", 5)]
        clicks = [i for i, _ in index.neighbours((item, "click"), "click", 5)]
        to_cart_complement += np.mean([simulator.item_category(i) in complements for i in carts])
        to_click_same += np.mean([simulator.item_category(i) == category for i in clicks])
        differ += set(carts) != set(clicks)
    # Chance levels are about 1/8 (one or two complement categories of 8; same category).
    assert to_cart_complement / len(items) > 0.5
    assert to_click_same / len(items) > 0.7
    assert differ == len(items)


def test_too_few_events_is_a_clear_error(events):
    with pytest.raises(NotEnoughData, match="3 events; at least 100"):
        train_version(events[:3], small_params())
    lonely = [dict(e, user_id=f"x{n}", session_id=f"s{n}") for n, e in enumerate(events[:200])]
    with pytest.raises(NotEnoughData, match=r"no user sequence with 2\+ interactions"):
        train_version(lonely, small_params())
