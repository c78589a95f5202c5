"""The served rows: a published and reloaded model version, the worker's fold, the served code."""

from __future__ import annotations

import pytest

from models.evaluation import TASKS, EvalData
from models.evaluation.served import ServedSystem, fold_state, served_rows
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.token_embedding import EmbeddingParams
from models.training import TrainingParams


@pytest.fixture(scope="module")
def fitted():
    config = SimulatorConfig(users=80, items=300, categories=6, sellers=20, seed=5)
    events = list(ClickstreamSimulator(config).events(12_000))
    data = EvalData.split(events, test_hours=24)
    params = TrainingParams(seed=1, embedding=EmbeddingParams(dim=8, epochs=2))
    params.factorization.epochs = 2
    system = ServedSystem(params, seed=1)
    rows = served_rows(system)
    for row in rows:
        row.fit(data)
    return data, system, {row.name: row for row in rows}


def test_the_model_is_the_published_version_with_an_item_index(fitted):
    data, system, _ = fitted
    model = system.model
    assert model is not None and model.info.manifest["source"] == "evaluation"
    assert "item" in model.index.types() and "cart" in model.index.types()
    assert model.info.data["last_ts"] < data.cut  # trained on the training events only


def test_the_state_is_the_workers_fold_of_the_training_events(fitted):
    data, system, _ = fitted
    again = fold_state(data.raw_train)
    user = data.test_users[0]
    assert system.state.user(user) == again.user(user)
    assert system.state.popularity == again.popularity


def test_similar_answers_with_the_model_first_and_trending_without_a_seed(fitted):
    data, system, rows = fitted
    similar = rows["similar (served: model + fallbacks)"]
    seed = next((e["item_id"], e["type"]) for e in reversed(data.train) if e["type"] == "click")
    task = TASKS["click-to-cart"]
    answer = list(similar.similar(seed, task, 20))
    model_only = list(rows["model index (served)"].similar(seed, task, 20))
    assert len(answer) == 20 and answer[: len(model_only)] == model_only
    assert set(model_only) <= data.items_of_type("cart")  # cart tokens only
    assert list(similar.cold(task, 5)) == system.trending(5)
    assert list(rows["trending (served)"].home("anyone", 5)) == system.trending(5)


def test_home_is_built_at_the_cut_and_never_shows_what_the_user_bought(fitted):
    data, system, rows = fitted
    home = rows["home (served)"]
    for user in data.test_users[:10]:
        bought = set(system.state.user(user).trajectory.purchased)
        items = list(home.home(user, 20))
        assert len(items) == 20 and not bought & set(items)
        assert items == system.home(user, 20, now=data.cut)


def test_ranked_home_reorders_the_first_pass_pool_with_a_bootstrapped_ranker(fitted):
    from models.ranking.utility import HEADS

    data, system, rows = fitted
    ranked = rows["home (ranked: learned second pass)"]
    params = ranked.describe()
    assert params["bootstrap_examples"] > 0 and params["held_out_examples"] > 0
    assert set(params["ranker_brier"]) == set(HEADS)
    assert all(0.0 <= b <= 1.0 for b in params["ranker_brier"].values() if b is not None)
    assert ranked.bootstrapped.ranker.ready
    for user in data.test_users[:5]:
        pool = {c.item_id for c in system.recommend(user, 1000)}
        top = list(ranked.home(user, 20))
        assert len(top) == min(20, len(pool)) and set(top) <= pool
