"""Hand-made fixtures for the candidate sources: tiny indexes and scripted users."""

from __future__ import annotations

import numpy as np
import pytest

from models.ann_index import TokenIndex
from models.trajectory import UserTrajectory


@pytest.fixture
def make_index():
    """``{token: vector}`` -> a small exact-enough TokenIndex."""

    def build(vectors: dict) -> TokenIndex:
        tokens = list(vectors)
        return TokenIndex.build(
            tokens, np.array([vectors[t] for t in tokens]), M=16, ef_construction=64
        )

    return build


@pytest.fixture
def make_user():
    """``[(item, type[, seller])]`` -> a UserTrajectory fed those events 10 s apart."""

    def build(steps, start: float = 0.0) -> UserTrajectory:
        user = UserTrajectory(half_life=None)
        for n, step in enumerate(steps):
            event = {"item_id": step[0], "type": step[1], "ts": start + 10.0 * n}
            if len(step) > 2:
                event["item"] = {"seller": step[2]}
            user.update(event)
        return user

    return build
