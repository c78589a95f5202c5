import numpy as np

from models.candidates.etsy_user import etsy_user


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float64)
    return v / np.linalg.norm(v)


def world(make_index):
    # Each click/cart seed has one cart token close to it and nothing else near.
    return make_index(
        {
            ("desk", "click"): unit(1, 0, 0, 0),
            ("lamp", "cart"): unit(1, 0.1, 0, 0),
            ("sofa", "click"): unit(0, 1, 0, 0),
            ("cushion", "cart"): unit(0, 1, 0.1, 0),
            ("bed", "cart"): unit(0, 0, 1, 0),
            ("sheets", "cart"): unit(0, 0, 1, 0.1),
            ("boat", "cart"): unit(0, 0, 0, 1),
        }
    )


def test_click_and_cart_seeds_each_bring_their_nearest_cart_token(make_index, make_user):
    index = world(make_index)
    user = make_user([("desk", "click"), ("sofa", "click"), ("bed", "cart")])
    found = etsy_user(user, index, per_seed=1)
    by_item = {c.item_id: c for c in found}
    assert set(by_item) == {"lamp", "cushion", "sheets"}
    assert by_item["lamp"].evidence["seed"] == ("desk", "click")
    assert by_item["lamp"].reason == "because you clicked desk: people cart this next"
    assert by_item["sheets"].evidence["seed"] == ("bed", "cart")
    assert "carted bed" in by_item["sheets"].reason
    assert all(c.source == "etsy_user" for c in found)


def test_only_the_last_seeds_count_and_items_are_unique(make_index, make_user):
    index = world(make_index)
    user = make_user([("desk", "click"), ("sofa", "click")])
    found = etsy_user(user, index, seeds_per_type=1, per_seed=1)
    assert [c.item_id for c in found] == ["cushion"]  # sofa is the last click
    many = etsy_user(user, index, per_seed=10)
    assert len(many) == len({c.item_id for c in many})
    assert many == sorted(many, key=lambda c: -c.score)


def test_names_appear_in_reasons_and_unknown_seeds_give_nothing(make_index, make_user):
    index = world(make_index)
    user = make_user([("desk", "click")])
    found = etsy_user(user, index, per_seed=1, name_of={"desk": "Oak desk"}.get)
    assert found[0].reason.startswith("because you clicked Oak desk")
    assert etsy_user(make_user([("unknown", "click")]), index) == []
