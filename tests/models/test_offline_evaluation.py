"""Tests for models/offline_evaluation.py (and the gensim backend of models/token_embedding.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.factorization import FactorizationParams
from models.offline_evaluation import (
    KNOWN_MODELS,
    VectorCandidates,
    compare,
    evaluate_models,
    report_text,
)
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.token_embedding import EmbeddingParams, TokenEmbedding, gensim_sentences

TASKS = ("item-to-item", "click-to-cart", "cart-to-cart")
TIMING_KEYS = ("train_seconds", "eval_seconds")
REPO = Path(__file__).resolve().parents[2]


def small_stream(seed: int = 0) -> list[dict]:
    config = SimulatorConfig(users=200, items=800, categories=10, sellers=40, seed=seed)
    return list(ClickstreamSimulator(config).events(40_000))


def run(events: list[dict]) -> dict:
    # k=20 of ~800 items: at Etsy's 200 the union over a user's seeds covers most
    # of a catalogue this small and every model saturates.
    return evaluate_models(
        events,
        k=20,
        models=KNOWN_MODELS,
        embedding_params=EmbeddingParams(dim=16, epochs=3, seed=0),
        factorization_params=FactorizationParams(factors=16, epochs=5, seed=0),
    )


def without_timings(result: dict) -> dict:
    out = json.loads(json.dumps(result))
    for row in out["models"].values():
        for key in TIMING_KEYS:
            row.pop(key)
    return out


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return small_stream()


@pytest.fixture(scope="module")
def result(events) -> dict:
    return run(events)


def test_every_model_has_every_metric_in_range(result):
    assert list(result["models"]) == list(KNOWN_MODELS)
    data = result["data"]
    assert data["train_events"] > 4 * data["test_events"] > 0  # 6 days vs 1
    assert data["auc_positives"] > 50
    for name, row in result["models"].items():
        for task in TASKS:
            counts = row["counts"][task]
            assert counts["targets"] > 50, (name, task)
            assert 0.0 <= row["hit_rate"][task] <= 1.0
            assert 0.0 <= row["novel_hit_rate"][task] <= 1.0
            assert counts["hits"] <= counts["targets"]
        assert 0.0 <= row["auc"] <= 1.0
        assert 0.0 < row["coverage"] <= 1.0
        assert row["train_seconds"] >= 0.0 and row["eval_seconds"] >= 0.0
    # The typed embedding ranks the clicked item's complements above random items.
    assert result["models"]["regularised"]["auc"] > 0.6
    for name in ("bpr", "warp"):
        row = result["models"][name]
        assert 0.5 < row["user_auc"] <= 1.0
        assert 0.0 <= row["hit_rate"]["user"] <= 1.0
    # Popularity answers every seed with the same k items: it covers little.
    assert result["models"]["popularity"]["coverage"] < result["models"]["regularised"]["coverage"]
    json.dumps(result)  # plain JSON


def test_category_cosine_shows_same_category_items_closer(result):
    for name in ("regularised", "embedding", "item2vec", "bpr", "warp"):
        cosine = result["models"][name]["category_cosine"]
        assert cosine["same_pairs"] > 0 and cosine["cross_pairs"] > 0
        assert -1.0 <= cosine["cross"] <= 1.0 and -1.0 <= cosine["same"] <= 1.0
    for name in ("regularised", "item2vec", "bpr"):
        cosine = result["models"][name]["category_cosine"]
        assert cosine["same"] > cosine["cross"], name
    assert result["models"]["regularised"]["category_cosine"]["token_type"] == "view"
    assert "category_cosine" not in result["models"]["popularity"]


def test_planted_structure_regularised_beats_popularity_and_untyped(result):
    # On this small stream co-occurrence counts still win (the embeddings see 1,400
    # sessions); benchmarks/quality.py compares them at scale.
    rows = result["models"]
    regularised = rows["regularised"]["hit_rate"]["click-to-cart"]
    assert regularised > 2 * rows["popularity"]["hit_rate"]["click-to-cart"]
    novel = rows["regularised"]["novel_hit_rate"]["click-to-cart"]
    assert novel > 2 * rows["popularity"]["novel_hit_rate"]["click-to-cart"]
    # Clicks lead to substitutes, carts to complements: one vector per item mixes them.
    assert novel > rows["item2vec"]["novel_hit_rate"]["click-to-cart"]
    comparison = result["comparison"]
    assert comparison["reference"] == "regularised"
    assert comparison["rows"]["popularity"]["beats"] is True
    assert comparison["rows"]["popularity"]["ratio"] > 1.0


def test_same_seed_same_report(events, result):
    assert without_timings(run(events)) == without_timings(result)


def test_report_text_names_every_model_and_the_comparison(result):
    text = report_text(result)
    for name in KNOWN_MODELS:
        assert f"| {name} |" in text
    assert "regularised vs each model" in text
    assert "user AUC" in text


def test_compare_handles_missing_and_zero_rates():
    rows = {
        "regularised": {"novel_hit_rate": {"click-to-cart": 0.2}},
        "zero": {"novel_hit_rate": {"click-to-cart": 0.0}},
        "none": {"novel_hit_rate": {"click-to-cart": None}},
        "better": {"novel_hit_rate": {"click-to-cart": 0.5}},
    }
    out = compare({"models": rows})["rows"]
    assert out["zero"]["ratio"] is None and out["zero"]["beats"] is True
    assert out["none"]["difference"] is None and out["none"]["beats"] is None
    assert out["better"]["beats"] is False
    assert "**regularised does not beat" not in report_text({"models": rows})
    text = report_text({"models": {**rows, "popularity": rows["better"]}})
    assert "**regularised does not beat popularity**" in text


def test_rejects_unknown_models_and_a_log_shorter_than_the_window(events):
    with pytest.raises(ValueError, match="unknown models"):
        evaluate_models(events, models=("popularity", "nope"))
    short = [e for e in events if e["ts"] < events[0]["ts"] + 3600]
    with pytest.raises(ValueError, match="test-hours"):
        evaluate_models(short, models=("popularity",), test_hours=24)


def test_vector_candidates_exclude_the_seed_and_respect_the_type():
    keys = [("a", "click"), ("a", "cart"), ("b", "cart"), ("c", "click")]
    vectors = np.array([[1.0, 0.0], [1.0, 0.05], [0.9, 0.4], [1.0, 0.01]])
    typed = VectorCandidates(keys, vectors, typed=True)
    assert typed("a", "click", "cart", 5) == ["a", "b"]
    assert typed("a", "click", "click", 5) == ["c"]  # itself left out
    assert typed("zz", "click", "cart", 5) == []
    untyped = VectorCandidates(["a", "b", "c"], vectors[:3], typed=False)
    assert untyped("a", "view", "cart", 1) == ["b"]


# ---------------------------------------------------------------- gensim backend


def planted_sessions() -> list[list[tuple[str, str]]]:
    """Clicks inside group g, then a cart in group g + 1 (as in test_token_embedding)."""
    rng = np.random.default_rng(0)
    sessions = []
    for _ in range(1500):
        group = int(rng.integers(10))
        session = [(f"g{group}i{int(m)}", "click") for m in rng.integers(4, size=3)]
        session.append((f"g{(group + 1) % 10}i{int(rng.integers(4))}", "cart"))
        sessions.append(session)
    return sessions


def test_gensim_backend_is_seeded_and_learns_the_planted_neighbours():
    sessions = planted_sessions()
    params = EmbeddingParams(dim=16, epochs=5, seed=3, backend="gensim")
    reports: list[dict] = []
    first = TokenEmbedding(params).fit(sessions, reports.append)
    second = TokenEmbedding(params).fit(sessions)
    np.testing.assert_array_equal(first.vectors, second.vectors)
    assert first.vectors.dtype == np.float32 and first.vectors.shape == (len(first.vocab), 16)
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(r["loss"]) and r["pairs"] > 0 for r in reports)
    hits = 0
    for group in range(10):
        carts = first.most_similar((f"g{group}i0", "click"), 4, target_type="cart")
        hits += sum(item.startswith(f"g{(group + 1) % 10}i") for item, _, _ in carts)
    assert hits >= 36  # of 40: the cart neighbours of a click are its complements


def test_gensim_backend_does_not_depend_on_python_hash_seed():
    code = (
        "import numpy as np, hashlib\n"
        "from models.token_embedding import EmbeddingParams, TokenEmbedding\n"
        "s = [[(f'i{n % 7}', 'click'), (f'i{(n * 3) % 11}', 'cart')] for n in range(300)]\n"
        "m = TokenEmbedding(EmbeddingParams(dim=8, epochs=2, backend='gensim')).fit(s)\n"
        "print(hashlib.sha1(m.vectors.tobytes()).hexdigest())\n"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_gensim_sentences_carry_exactly_the_regularisation_pairs():
    ids = np.array([0, 1, 0, 2])
    followers = np.array([[1, 2], [0, -1], [-1, -1]])
    sentences = gensim_sentences(ids, np.array([0]), followers)
    assert sentences[0] == ["0", "1", "0", "2"]
    pairs = sorted(tuple(s) for s in sentences[1:])
    # 0 occurs twice (followers 1 and 2), 1 once (follower 0), 2 has none.
    assert pairs == [("0", "1"), ("0", "1"), ("0", "2"), ("0", "2"), ("1", "0")]


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend"):
        TokenEmbedding(EmbeddingParams(backend="torch")).fit([[("a", "click"), ("b", "cart")]])
