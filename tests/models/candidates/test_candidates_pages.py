import numpy as np

from models.candidates.cart_page import cart_cooccurrence, cart_embedding
from models.candidates.item_page import item_cooccurrence, item_embedding
from models.cooccurrence import build_neighbours


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float64)
    return v / np.linalg.norm(v)


def world(make_index):
    return make_index(
        {
            ("lamp", "click"): unit(1, 0, 0),
            ("lamp2", "click"): unit(1, 0.1, 0),
            ("desk", "click"): unit(0, 1, 0),
            ("desk", "cart"): unit(0, 0, 1),
            ("chair", "purchase"): unit(0, 0.1, 1),  # goes with a carted desk
            ("bulb", "purchase"): unit(1, 0, 0.1),  # goes with a lamp
        }
    )


def test_item_page_neighbours_never_include_the_item(make_index):
    index = world(make_index)
    found = item_embedding("lamp", index, k=5)
    assert found[0].item_id == "lamp2"
    assert "lamp" not in {c.item_id for c in found}
    assert found[0].reason == "similar to lamp"
    both = {c.item_id for c in item_embedding("lamp", index, k=1, target_types=("click", "cart"))}
    assert both == {"lamp2", "desk"}
    assert item_embedding("unknown", index) == []


def test_cart_page_uses_the_cart_token_else_the_click_token(make_index):
    index = world(make_index)
    desk = cart_embedding("desk", index, k=1)
    assert [(c.item_id, c.evidence["via"]) for c in desk] == [("chair", "cart")]
    lamp = cart_embedding("lamp", index, k=1)  # no cart token for the lamp
    assert [(c.item_id, c.evidence["via"]) for c in lamp] == [("bulb", "click")]
    assert cart_embedding("unknown", index) == []


def test_page_cooccurrence_without_a_model():
    events = [
        {"user_id": "p", "item_id": "lamp", "type": "click", "ts": 0.0},
        {"user_id": "p", "item_id": "bulb", "type": "purchase", "ts": 5.0},
        {"user_id": "q", "item_id": "desk", "type": "cart", "ts": 0.0},
        {"user_id": "q", "item_id": "chair", "type": "purchase", "ts": 5.0},
    ]
    table = build_neighbours(events, half_life=None)
    assert [c.item_id for c in item_cooccurrence("lamp", table.get, now=5.0)] == ["bulb"]
    assert [c.item_id for c in cart_cooccurrence("desk", table.get, now=5.0)] == ["chair"]
    via_click = cart_cooccurrence("lamp", table.get, now=5.0)  # never carted: click token
    assert [(c.item_id, c.evidence["seed"]) for c in via_click] == [("bulb", ("lamp", "click"))]
    assert cart_cooccurrence("rug", table.get, now=5.0) == []
