"""The raw user vector (Whatnot's latent-factor model): top items by dot product.

Items the user already bought are excluded at the source (they would otherwise
fill the top of a factorisation trained on those very purchases). A user the
model has never seen gets nothing: the popularity source speaks for new users,
with an honest reason.

Examples
--------
>>> from models.factorization import FactorizationParams, MatrixFactorization
>>> mf = MatrixFactorization(FactorizationParams(factors=4, epochs=30, seed=0))
>>> mf = mf.fit([("u1", "a", 1.0), ("u1", "b", 1.0), ("u2", "c", 1.0), ("u2", "d", 1.0)] * 5)
>>> sorted(c.item_id for c in user_vector("u1", mf, k=2, purchased={"x"}))
['a', 'b']
>>> user_vector("stranger", mf)
[]
"""

from __future__ import annotations

from collections.abc import Iterable

from models.candidates.types import Candidate, UserFactors

SOURCE = "user_vector"
DEFAULT_K = 200


def user_vector(
    user_id: str,
    factorization: UserFactors,
    *,
    k: int = DEFAULT_K,
    purchased: Iterable[str] = (),
) -> list[Candidate]:
    """The user's top ``k`` items by factor score, skipping ``purchased``.

    Parameters
    ----------
    user_id
        The user.
    factorization
        A trained user x item model.
    k
        Candidates returned.
    purchased
        Items the user bought (e.g. ``trajectory.purchased``).

    Returns
    -------
    list of Candidate
        Best score first; empty for a user the model does not know.
    """
    if factorization.user_vector(user_id) is None:
        return []
    return [
        Candidate(item, score, SOURCE, "picked for your taste profile", {"score": score})
        for item, score in factorization.recommend(user_id, k, exclude=list(purchased))
    ]
