import pytest

from models.candidates.merge import Filters, PassThroughRanker, explain, merge, normalised
from models.candidates.types import Candidate


def c(item, score, source, reason=""):
    return Candidate(item, score, source, reason or f"{source} likes {item}")


def test_merge_deduplicates_and_keeps_every_source_and_reason():
    merged = merge(
        [
            c("lamp", 0.9, "etsy_user", "because you clicked desk"),
            c("lamp", 0.3, "etsy_user", "because you clicked chair"),  # same source twice
            c("lamp", 0.2, "cooccurrence", "20% who carted desk bought this"),
            c("rug", 0.4, "cooccurrence"),
            c("vase", 50.0, "popularity", "trending now"),
        ]
    )
    assert [m.item_id for m in merged].count("lamp") == 1
    lamp = next(m for m in merged if m.item_id == "lamp")
    assert lamp.sources == ("etsy_user", "cooccurrence")
    assert lamp.reasons == ("because you clicked desk", "20% who carted desk bought this")
    # Normalised per source: etsy 0.9/0.9 = 1, co-occurrence 0.2/0.4 = 0.5.
    assert lamp.score == pytest.approx(1.5)
    assert lamp.evidence["by_source"] == pytest.approx({"etsy_user": 1.0, "cooccurrence": 0.5})
    assert lamp.contributions[0].score == 0.9  # the source's own candidate is kept
    assert [m.item_id for m in merged] == ["lamp", "rug", "vase"]  # ties by item id


def test_surface_weights_change_the_order():
    found = [c("a", 1.0, "x"), c("b", 1.0, "y")]
    assert [m.item_id for m in merge(found, {"x": 0.1, "y": 1.0})] == ["b", "a"]
    assert [m.item_id for m in merge(found, {"x": 1.0, "y": 0.1})] == ["a", "b"]
    assert merge(found, {"x": 2.0}, default_weight=0.5)[1].score == pytest.approx(0.5)


def test_normalised_handles_negative_and_zero_scores():
    assert normalised([-2.0, 0.0, 2.0]) == [0.0, 0.5, 1.0]
    assert normalised([3.0, 3.0]) == [1.0, 1.0]
    assert normalised([-1.0, -1.0]) == [1.0, 1.0]
    assert normalised([]) == []


def test_filters_remove_purchased_unavailable_offline_and_excluded():
    items = [c(i, 1.0, "s") for i in ["bought", "gone", "offline", "hidden", "fine", "nobody"]]
    sellers = {"offline": "s-off", "fine": "s-on"}
    filters = Filters(
        purchased={"bought"},
        unavailable=lambda item: item == "gone",
        offline_sellers={"s-off"},
        seller_of=sellers.get,
        exclude=frozenset({"hidden"}),
    )
    assert [x.item_id for x in filters.apply(items)] == ["fine", "nobody"]
    assert [filters.why_removed(i) for i in ["bought", "gone", "offline", "hidden", "fine"]] == [
        "purchased",
        "unavailable",
        "seller_offline",
        "excluded",
        None,
    ]
    assert [x.item_id for x in Filters().apply(items)] == [x.item_id for x in items]


def test_explain_and_the_pass_through_ranker():
    merged = merge([c("a", 1.0, "x", "reason one"), c("a", 1.0, "y", "reason one"),
                    c("a", 0.5, "z", "reason two")])  # fmt: skip
    assert explain(merged[0]) == "reason one; also reason two"
    assert explain(merged[0], max_reasons=1) == "reason one"
    ranked = PassThroughRanker().rank("u", merged)
    assert ranked == merged and ranked is not merged
