"""Tests for models/token_embedding.py: SGNS over interaction tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.token_embedding import (
    EmbeddingParams,
    TokenEmbedding,
    gensim_sentences,
    scatter_add_rows,
    skipgram_pairs,
    top_followers,
)

GROUPS, GROUP_SIZE = 20, 4
REPO = Path(__file__).resolve().parents[2]


def item(group: int, member: int) -> str:
    return f"g{group}i{member}"


def planted_sessions(n_sessions: int = 2000, seed: int = 0) -> list[list[tuple[str, str]]]:
    """Clicks wander within a group of substitutes; the cart is in the complement group.

    Group g's complement is group g + 1 (mod GROUPS): after clicking around
    group g a user carts one item of group g + 1.
    """
    rng = np.random.default_rng(seed)
    sessions = []
    for _ in range(n_sessions):
        group = int(rng.integers(GROUPS))
        members = rng.integers(GROUP_SIZE, size=int(rng.integers(2, 5)))
        session = [(item(group, int(m)), "click") for m in members]
        complement = (group + 1) % GROUPS
        session.append((item(complement, int(rng.integers(GROUP_SIZE))), "cart"))
        sessions.append(session)
    return sessions


@pytest.fixture(scope="module")
def sessions() -> list[list[tuple[str, str]]]:
    return planted_sessions()


@pytest.fixture(scope="module")
def typed_model(sessions) -> TokenEmbedding:
    return TokenEmbedding(EmbeddingParams(dim=16, epochs=5, seed=3)).fit(sessions)


def test_same_seed_gives_identical_vectors(sessions):
    params = EmbeddingParams(dim=8, epochs=2, seed=7)
    first = TokenEmbedding(params).fit(sessions)
    second = TokenEmbedding(params).fit(sessions)
    other = TokenEmbedding(EmbeddingParams(dim=8, epochs=2, seed=8)).fit(sessions)
    assert first.vocab == second.vocab
    np.testing.assert_array_equal(first.vectors, second.vectors)
    assert not np.array_equal(first.vectors, other.vectors)
    assert first.vectors.dtype == np.float32


def test_click_neighbours_are_substitutes_and_cart_neighbours_are_complements(typed_model):
    for group in range(GROUPS):
        anchor = (item(group, 0), "click")
        substitutes = {item(group, m) for m in range(1, GROUP_SIZE)}
        complements = {item((group + 1) % GROUPS, m) for m in range(GROUP_SIZE)}
        clicks = typed_model.most_similar(anchor, GROUP_SIZE - 1, target_type="click")
        carts = typed_model.most_similar(anchor, GROUP_SIZE, target_type="cart")
        assert {i for i, kind, _ in clicks} == substitutes
        assert {kind for _, kind, _ in clicks} == {"click"}
        assert {i for i, _, _ in carts} == complements
        assert {kind for _, kind, _ in carts} == {"cart"}


def test_untyped_baseline_has_one_token_per_item(sessions):
    model = TokenEmbedding(EmbeddingParams(dim=16, epochs=5, typed=False, seed=3)).fit(sessions)
    items = {i for s in sessions for i, _ in s}
    assert set(model.vocab) == items
    assert model.vectors.shape == (len(items), 16)
    # Clicked and carted share one vector, so the baseline cannot tell them apart.
    np.testing.assert_array_equal(model.vector((item(0, 0), "click")), model.vector(item(0, 0)))
    neighbours = model.most_similar(item(0, 0), GROUP_SIZE - 1)
    assert all(kind is None for _, kind, _ in neighbours)
    assert item(0, 0) not in {i for i, _, _ in neighbours}


def test_top_followers_are_the_most_frequent_next_tokens():
    # Token 0 is followed by 1 three times, by 2 twice, by 3 once; the session
    # boundary between positions 7 and 8 must not count 0 -> 3.
    ids = np.array([0, 1, 0, 1, 0, 2, 0, 2, 3, 0, 1, 0, 3])
    starts = np.array([0, 8])
    followers = top_followers(ids, starts, 4, 2)
    assert followers[0].tolist() == [1, 2]
    three = top_followers(ids, starts, 4, 3)
    assert three[0].tolist() == [1, 2, 3]
    assert three[3].tolist() == [0, -1, -1]  # 3 -> 0 once; nothing else follows 3


def test_regularisation_appends_followers_as_positives_of_the_anchor():
    # Session "0 1 0 1 0 2" plus a long session in which 3 follows 4 far from 0.
    ids = np.array([0, 1, 0, 1, 0, 2, 4, 3, 5, 5, 5])
    starts = np.array([0, 6])
    followers = top_followers(ids, starts, 6, 3)
    assert followers[0].tolist() == [1, 2, -1]
    without = skipgram_pairs(ids, starts, 1, np.random.default_rng(0))
    with_followers = skipgram_pairs(ids, starts, 1, np.random.default_rng(0), followers)
    window_pairs = list(zip(*(a.tolist() for a in without), strict=True))
    pairs = list(zip(*(a.tolist() for a in with_followers), strict=True))
    # Same rng, so the window pairs are identical; 0 occurs three times and 2 is
    # one of its followers: (0, 2) and (2, 0) are added once per occurrence.
    assert pairs[: len(window_pairs)] == window_pairs
    assert pairs.count((0, 2)) == window_pairs.count((0, 2)) + 3
    assert pairs.count((2, 0)) == window_pairs.count((2, 0)) + 3
    assert pairs.count((4, 3)) == window_pairs.count((4, 3)) + 1  # 3 follows 4 once
    assert (0, 0) not in set(pairs)  # a token is never its own context


def test_fit_records_followers_and_reports_progress(sessions):
    reports = []
    model = TokenEmbedding(EmbeddingParams(dim=8, epochs=3, seed=1)).fit(sessions, reports.append)
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r["pairs"] > 0 for r in reports)
    assert reports[-1]["lr"] < reports[0]["lr"]
    # Every click in group 0 is followed only by group-0 clicks or a group-1 cart.
    for follower in model.followers[(item(0, 0), "click")]:
        assert follower[0].startswith(("g0", "g1"))
    assert len(model.followers[(item(0, 0), "click")]) == 3


def test_min_count_and_subsampling(sessions):
    rare = [*sessions, [("lonely", "view")]]
    model = TokenEmbedding(EmbeddingParams(dim=8, epochs=2, min_count=2, sample=1e-2, seed=0)).fit(
        rare
    )
    assert model.vector(("lonely", "view")) is None
    assert np.isfinite(model.vectors).all()


def test_save_load_round_trip(typed_model, tmp_path):
    typed_model.save(tmp_path / "emb")
    loaded = TokenEmbedding.load(tmp_path / "emb")
    assert loaded.vocab == typed_model.vocab
    assert loaded.params == typed_model.params
    np.testing.assert_array_equal(loaded.vectors, typed_model.vectors)
    anchor = (item(2, 1), "click")
    assert loaded.most_similar(anchor, 5, "cart") == typed_model.most_similar(anchor, 5, "cart")
    assert loaded.followers == typed_model.followers
    assert not list((tmp_path / "emb").glob("*.pkl"))


def test_scatter_add_rows_matches_add_at():
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 5, size=40)
    updates = rng.standard_normal((40, 3)).astype(np.float32)
    expected = np.zeros((5, 3), np.float32)
    np.add.at(expected, rows, updates)
    got = np.zeros((5, 3), np.float32)
    scatter_add_rows(got, rows, updates)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    averaged = np.zeros((5, 3), np.float32)
    scatter_add_rows(averaged, rows, updates, damping=1.0)
    counts = np.bincount(rows, minlength=5)[:, None]
    np.testing.assert_allclose(averaged, expected / np.maximum(counts, 1), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- gensim backend


def ten_group_sessions() -> list[list[tuple[str, str]]]:
    """Clicks inside group g, then a cart in group g + 1 (ten groups of four)."""
    rng = np.random.default_rng(0)
    sessions = []
    for _ in range(1500):
        group = int(rng.integers(10))
        session = [(f"g{group}i{int(m)}", "click") for m in rng.integers(4, size=3)]
        session.append((f"g{(group + 1) % 10}i{int(rng.integers(4))}", "cart"))
        sessions.append(session)
    return sessions


def test_gensim_backend_is_seeded_and_learns_the_planted_neighbours():
    sessions = ten_group_sessions()
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
