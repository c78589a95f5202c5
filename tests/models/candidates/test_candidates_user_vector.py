import pytest

from models.candidates.user_vector import user_vector
from models.factorization import FactorizationParams, MatrixFactorization


@pytest.fixture(scope="module")
def factorization():
    triples = [("u1", "a", 1.0), ("u1", "b", 1.0), ("u2", "c", 1.0), ("u2", "d", 1.0)] * 5
    return MatrixFactorization(FactorizationParams(factors=4, epochs=30, seed=0)).fit(triples)


def test_top_items_by_dot_product(factorization):
    found = user_vector("u1", factorization, k=2)
    assert {c.item_id for c in found} == {"a", "b"}
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)
    assert found[0].score == pytest.approx(float(factorization.score("u1", [found[0].item_id])[0]))
    assert all(c.source == "user_vector" for c in found)


def test_purchased_items_are_excluded(factorization):
    found = user_vector("u1", factorization, k=2, purchased={"a"})
    assert "a" not in {c.item_id for c in found}
    assert found[0].item_id == "b"


def test_unknown_user_gets_nothing(factorization):
    assert user_vector("nobody", factorization) == []
