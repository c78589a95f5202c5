import numpy as np

from models.candidates.tk_voting import tk_voting, voting_seeds


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float64)
    return v / np.linalg.norm(v)


def clusters(make_index):
    # Cluster A along x (items a1..a6), cluster B along z (b1..b4).
    vectors = {(f"a{n}", "click"): unit(1, 0.05 * n, 0) for n in range(1, 7)}
    vectors |= {(f"b{n}", "click"): unit(0, 0.05 * n, 1) for n in range(1, 5)}
    return make_index(vectors)


def test_a_one_off_wander_does_not_take_over(make_index, make_user):
    index = clusters(make_index)
    user = make_user([("a1", "click"), ("a2", "click"), ("a3", "click"), ("a4", "click"),
                      ("b1", "click")])  # fmt: skip
    # The raw last-item neighbours follow the wander...
    assert index.neighbours(("b1", "click"), "click", 1)[0][0].startswith("b")
    # ...the vote does not.
    found = tk_voting(user, index)
    assert [c.item_id for c in found[:2]] == ["a5", "a6"]
    assert found[0].score > 2 * max(c.score for c in found if c.item_id.startswith("b"))
    assert found[0].evidence["voters"] == 5  # b1 votes too, weakly
    assert "and 4 more of your recent items" in found[0].reason


def test_seen_items_are_not_candidates_and_t_limits_the_seeds(make_index, make_user):
    index = clusters(make_index)
    user = make_user([("a1", "click"), ("b1", "click"), ("b2", "click")])
    found = tk_voting(user, index, t=1)
    assert {c.item_id for c in found}.isdisjoint({"b2"})
    assert found[0].item_id.startswith("b")  # only b2 votes
    assert found[0].evidence["seeds"] == 1
    everything = tk_voting(user, index)
    assert {c.item_id for c in everything}.isdisjoint({"a1", "b1", "b2"})


def test_seed_weights_follow_engagement_type_and_recency(make_user):
    user = make_user([("x", "cart"), ("y", "click"), ("x", "view"), ("z", "purchase")])
    seeds = voting_seeds(user, t=3, recency=0.5)
    assert seeds == [("z", "purchase", 8.0), ("x", "cart", 2.5), ("y", "click", 0.5)]
    assert voting_seeds(user, t=1, recency=0.5) == [("z", "purchase", 8.0)]


def test_a_strong_old_seed_outvotes_a_recent_click(make_index, make_user):
    index = clusters(make_index)
    user = make_user([("a1", "purchase"), ("b1", "click")])
    assert tk_voting(user, index)[0].item_id.startswith("a")
