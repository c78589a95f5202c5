"""Tests for models/ann_index.py: one HNSW index per token type."""

from __future__ import annotations

import numpy as np
import pytest

from models.ann_index import UNTYPED, TokenIndex

TYPES = ("click", "cart", "purchase")


@pytest.fixture(scope="module")
def data() -> tuple[list[tuple[str, str]], np.ndarray]:
    rng = np.random.default_rng(0)
    tokens = [(f"item{i}", kind) for kind in TYPES for i in range(300)]
    vectors = rng.standard_normal((len(tokens), 16)).astype(np.float32)
    return tokens, vectors


def exact(tokens, vectors, query, kind, k, skip=None):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = query / np.linalg.norm(query)
    rows = [r for r, t in enumerate(tokens) if t[1] == kind and t != skip]
    scores = unit[rows] @ q
    order = np.argsort(-scores)[:k]
    return [tokens[rows[o]][0] for o in order], scores[order]


def test_query_matches_exact_search_per_type(data):
    tokens, vectors = data
    index = TokenIndex.build(tokens, vectors, M=16, ef_construction=100, ef=200)
    assert index.types() == sorted(TYPES) and len(index) == len(tokens)
    rng = np.random.default_rng(1)
    for kind in TYPES:
        for _ in range(5):
            query = rng.standard_normal(16).astype(np.float32)
            found = index.query(query, kind, 10)
            expected, scores = exact(tokens, vectors, query, kind, 10)
            assert [item for item, _ in found] == expected
            np.testing.assert_allclose([s for _, s in found], scores, atol=1e-5)


def test_neighbours_exclude_the_token_itself(data):
    tokens, vectors = data
    index = TokenIndex.build(tokens, vectors, M=16, ef_construction=100)
    token = ("item7", "click")
    same = index.neighbours(token, "click", 10)
    assert len(same) == 10 and "item7" not in {i for i, _ in same}
    expected, _ = exact(tokens, vectors, vectors[tokens.index(token)], "click", 10, skip=token)
    assert [i for i, _ in same] == expected
    other, _ = exact(tokens, vectors, vectors[tokens.index(token)], "cart", 10)
    assert [i for i, _ in index.neighbours(token, "cart", 10)] == other
    assert index.neighbours(("missing", "click"), "click", 3) == []
    assert index.query(vectors[0], "favorite", 3) == []


def test_k_larger_than_a_type_returns_all_of_it():
    vectors = np.eye(3, dtype=np.float32)
    index = TokenIndex.build([("a", "click"), ("b", "click"), ("c", "cart")], vectors, M=4)
    assert sorted(i for i, _ in index.query(vectors[0], "click", 50)) == ["a", "b"]


def test_untyped_tokens_use_one_index():
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((20, 4)).astype(np.float32)
    index = TokenIndex.build([f"i{n}" for n in range(20)], vectors, M=8)
    assert index.types() == [UNTYPED]
    assert index.neighbours("i3", UNTYPED, 1)[0][0] != "i3"


def test_save_load_round_trip(data, tmp_path):
    tokens, vectors = data
    index = TokenIndex.build(tokens, vectors, M=16, ef_construction=64, ef=128)
    index.save(tmp_path / "idx")
    loaded = TokenIndex.load(tmp_path / "idx")
    assert loaded.types() == index.types() and len(loaded) == len(index)
    assert loaded.settings == index.settings
    query = np.random.default_rng(3).standard_normal(16).astype(np.float32)
    for kind in TYPES:
        assert loaded.query(query, kind, 20) == index.query(query, kind, 20)
    assert ("item1", "cart") in loaded and ("item1", "view") not in loaded
