from models.candidates.cooccurrence import cooccurrence
from models.candidates.popularity import popularity, top_category
from models.cooccurrence import build_neighbours
from models.popularity import Popularity


def sessions():
    # Four people cart the lamp: three then buy a bulb, one a shade; one clicks a rug after.
    events = []
    for n, bought in enumerate(["bulb", "bulb", "bulb", "shade"]):
        events += [
            {"user_id": f"p{n}", "item_id": "lamp", "type": "cart", "ts": 0.0},
            {"user_id": f"p{n}", "item_id": bought, "type": "purchase", "ts": 10.0},
        ]
    events += [
        {"user_id": "p9", "item_id": "vase", "type": "click", "ts": 0.0},
        {"user_id": "p9", "item_id": "rug", "type": "click", "ts": 10.0},
    ]
    return build_neighbours(events, half_life=None)


def test_shares_of_who_did_what_next(make_user):
    table = sessions()
    user = make_user([("lamp", "cart")])
    found = cooccurrence(user, table.get, now=10.0)
    assert [c.item_id for c in found] == ["bulb", "shade"]
    assert found[0].evidence["share"] == 0.75
    assert found[0].reason == "because you carted lamp; 75% who did bought this"
    assert found[1].score == 0.25


def test_any_pair_of_types_and_unknown_seeds(make_user):
    table = sessions()
    user = make_user([("vase", "click"), ("never-seen", "view")])
    found = cooccurrence(user, table.get, now=10.0)
    assert [(c.item_id, c.evidence["target_type"]) for c in found] == [("rug", "click")]
    assert "clicked vase; 100% who did clicked this" in found[0].reason
    assert cooccurrence(make_user([("never-seen", "click")]), table.get, now=0.0) == []


def test_target_weights_rank_purchases_above_clicks(make_user):
    table = sessions()
    user = make_user([("vase", "click"), ("lamp", "cart")])
    found = cooccurrence(user, table.get, now=10.0, target_weights={"purchase": 1.0, "click": 0.1})
    assert [c.item_id for c in found] == ["bulb", "shade", "rug"]


def popular() -> Popularity:
    pop = Popularity(half_life=None)
    pop.update_many(
        [{"item_id": "hat", "type": "purchase", "ts": 0.0, "item": {"category": "hats"}}]
        + [{"item_id": "boot", "type": "click", "ts": 0.0, "item": {"category": "shoes"}}] * 2
        + [{"item_id": "shoe", "type": "view", "ts": 0.0, "item": {"category": "shoes"}}]
    )
    return pop


def test_popularity_overall_and_in_the_users_top_category(make_user):
    pop = popular()
    assert [c.item_id for c in popularity(pop, now=0.0)] == ["hat", "boot", "shoe"]
    category_of = {"hat": "hats", "boot": "shoes", "shoe": "shoes", "sock": "shoes"}.get
    user = make_user([("sock", "cart"), ("hat", "view")])
    assert top_category(user, category_of) == "shoes"
    found = popularity(pop, now=0.0, category=top_category(user, category_of))
    assert [c.item_id for c in found] == ["boot", "shoe"]
    assert found[0].reason == "trending in shoes"


def test_new_user_and_empty_category_fall_back_to_overall():
    pop = popular()
    assert top_category(None, {"hat": "hats"}.get) is None
    found = popularity(pop, now=0.0, k=1, category="kites")
    assert [(c.item_id, c.reason) for c in found] == [("hat", "trending now")]
    assert popularity(Popularity(), now=0.0) == []
