import numpy as np

from models.candidates.trajectory_line import fit_curve, trajectory_line


def on_circle(theta: float) -> np.ndarray:
    """A point of the unit circle in the (x, y) plane of a 3-D space."""
    return np.array([np.cos(theta), np.sin(theta), 0.0])


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float64)
    return v / np.linalg.norm(v)


# The user walks along the unit circle from angle 0 to 0.8, skipping 0.5.
WALK = {"w0": 0.0, "w1": 0.2, "w2": 0.4, "w3": 0.6, "w4": 0.8}


def world(make_index):
    vectors = {(item, "click"): on_circle(theta) for item, theta in WALK.items()}
    vectors[("missed", "click")] = on_circle(0.5)  # on the path, never met
    vectors[("ahead", "click")] = on_circle(1.0)  # where the path is heading
    vectors[("aside", "click")] = unit(np.cos(0.5), np.sin(0.5), 0.8)  # off the path
    vectors[("elsewhere", "click")] = unit(0, 0, 1)
    return make_index(vectors)


def test_picks_the_item_the_user_should_have_met(make_index, make_user):
    index = world(make_index)
    user = make_user([(item, "click") for item in WALK])
    found = trajectory_line(user, index, extrapolate=0.0, k_per_point=3)
    assert found[0].item_id == "missed"
    assert found[0].reason == "on the path of your recent browsing"
    assert 0.0 < found[0].evidence["position"] < 1.0
    assert {c.item_id for c in found}.isdisjoint(WALK)  # visited items are not candidates
    order = [c.item_id for c in found]
    assert "aside" not in order or order.index("aside") > order.index("missed")


def test_the_extrapolated_curve_reaches_where_the_user_is_heading(make_index, make_user):
    index = world(make_index)
    user = make_user([(item, "click") for item in WALK])
    found = {c.item_id: c for c in trajectory_line(user, index, extrapolate=0.3, k_per_point=2)}
    assert found["ahead"].evidence["position"] > 1.0
    assert found["ahead"].reason == "where your recent browsing is heading"
    assert "elsewhere" not in found


def test_short_paths_use_a_polynomial_and_one_point_still_works(make_index, make_user):
    index = world(make_index)
    user = make_user([("w1", "click"), ("w3", "click")])  # 2 points: a straight line
    assert trajectory_line(user, index, extrapolate=0.0, k_per_point=1)[0].item_id == "missed"
    single = trajectory_line(make_user([("w4", "click")]), index, k_per_point=1)
    assert [c.item_id for c in single] == ["ahead"]
    assert trajectory_line(make_user([("unknown", "click")]), index) == []


def test_fit_curve_is_exact_on_a_line_for_spline_and_polynomial():
    positions = np.array([0.0, 0.5, 1.25])
    for n in (3, 7):  # polynomial fallback, smoothing spline
        x = np.linspace(0.0, 1.0, n)
        line = np.stack([x, 2 * x - 1], axis=1)
        expected = np.stack([positions, 2 * positions - 1], axis=1)
        assert np.allclose(fit_curve(line, positions), expected, atol=1e-6)
