import numpy as np
import pytest

from models.ann_index import TokenIndex
from models.bandit import UserBandit
from models.candidates.types import ModelParts
from models.cooccurrence import build_neighbours
from models.factorization import FactorizationParams, MatrixFactorization
from models.popularity import Popularity
from models.surfaces import (
    DEFAULT_SURFACES,
    SOURCES,
    SurfaceContext,
    SurfaceError,
    generate,
    load_surfaces,
    surface_named,
)
from models.trajectory import UserTrajectory

#: Every source of home weighed in (the mechanics of generate; defaults are measured).
EVERY_SOURCE = load_surfaces(
    {
        "home": {
            "etsy_user": 1.0,
            "tk_voting": 0.8,
            "trajectory_line": 0.5,
            "thompson": 0.5,
            "category_trending": 0.8,
        }
    }
)["home"]

# A small shop: lamps (x axis), desks (y axis), rugs (z axis).
CATEGORY = {f"lamp{n}": "lamps" for n in range(6)} | {f"desk{n}": "desks" for n in range(6)}
CATEGORY |= {f"rug{n}": "rugs" for n in range(6)}
SELLER = {item: f"s-{cat}" for item, cat in CATEGORY.items()}
AXIS = {"lamps": 0, "desks": 1, "rugs": 2}


def vector(item: str, kind: str, rng: np.random.Generator) -> np.ndarray:
    v = 0.15 * rng.standard_normal(4)
    v[AXIS[CATEGORY[item]]] += 1.0
    v[3] += {"click": 0.0, "cart": 0.3, "purchase": 0.6}[kind]
    return v / np.linalg.norm(v)


def events(user: str, steps: list[tuple[str, str]], start: float = 0.0) -> list[dict]:
    return [
        {
            "user_id": user,
            "item_id": item,
            "type": kind,
            "ts": start + 10.0 * n,
            "item": {"category": CATEGORY[item], "seller": SELLER[item]},
        }
        for n, (item, kind) in enumerate(steps)
    ]


STEPS = [("lamp0", "click"), ("lamp1", "click"), ("lamp1", "cart"), ("desk0", "click"),
         ("lamp2", "click"), ("lamp1", "purchase")]  # fmt: skip
OTHERS = [[("lamp0", "cart"), ("desk1", "purchase")], [("lamp1", "cart"), ("rug0", "purchase")]]


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    tokens = [(item, kind) for item in CATEGORY for kind in ("click", "cart", "purchase")]
    tokens.remove(("lamp2", "cart"))  # a token the model never learned
    index = TokenIndex.build(
        tokens, np.array([vector(i, k, rng) for i, k in tokens]), M=16, ef_construction=64
    )
    history = events("u", STEPS)
    crowd = [e for n, steps in enumerate(OTHERS) for e in events(f"o{n}", steps, 1000.0)]
    triples = [(e["user_id"], e["item_id"], 1.0) for e in history + crowd] * 3
    mf = MatrixFactorization(FactorizationParams(factors=4, epochs=20, seed=0)).fit(triples)
    popularity = Popularity(half_life=None)
    popularity.update_many(crowd + events("o9", [("rug3", "purchase"), ("rug3", "purchase")]))
    return {
        "model": ModelParts(index=index, factorization=mf),
        "history": history,
        "neighbours": build_neighbours(crowd + history, half_life=None),
        "popularity": popularity,
    }


def context(world, **overrides) -> SurfaceContext:
    trajectory = UserTrajectory(half_life=None)
    trajectory.update_many(world["history"])
    bandit = UserBandit(half_life=None, min_sellers=1)
    bandit.update_many(world["history"])
    base = {
        "user_id": "u",
        "now": 100.0,
        "trajectory": trajectory,
        "bandit": bandit,
        "neighbours": world["neighbours"].get,
        "popularity": world["popularity"],
        "model": world["model"],
        "k": 10,
        "rng": np.random.default_rng(3),
        "category_of": CATEGORY.get,
        "seller_of": SELLER.get,
    }
    return SurfaceContext(**(base | overrides))


def test_load_surfaces_overlays_weights_and_names_bad_input():
    surfaces = load_surfaces({"home": {"thompson": 0, "cooccurrence": 2.5}})
    assert surfaces["home"].weights["thompson"] == 0.0
    assert surfaces["home"].weights["cooccurrence"] == 2.5
    assert surfaces["home"].weights["etsy_user"] == DEFAULT_SURFACES["home"].weights["etsy_user"]
    assert "thompson" not in surfaces["home"].sources(fallback=False)
    assert load_surfaces(None) == DEFAULT_SURFACES
    with pytest.raises(SurfaceError, match="unknown surface 'homepage'; expected one of cart"):
        load_surfaces({"homepage": {}})
    with pytest.raises(SurfaceError, match=r"surfaces.cart: unknown source 'magic'"):
        load_surfaces({"cart": {"magic": 1.0}})
    for bad in (-1, "high", float("nan"), True):
        with pytest.raises(SurfaceError, match=r"surfaces.home.etsy_user: weight"):
            load_surfaces({"home": {"etsy_user": bad}})
    with pytest.raises(SurfaceError, match="unknown surface 'basket'"):
        surface_named(surfaces, "basket")
    assert set(DEFAULT_SURFACES["home"].weights) <= set(SOURCES)


def test_home_with_a_model_runs_every_source_and_filters(world):
    trace: dict = {}
    found = generate(EVERY_SOURCE, context(world, k=50), trace)
    assert set(EVERY_SOURCE.sources(False)) <= set(trace["ran"])
    assert "lamp1" not in {c.item_id for c in found}  # purchased
    assert trace["filtered"]["purchased"] >= 1
    contributing = {s for c in found for s in c.sources}
    assert {"etsy_user", "tk_voting", "trajectory_line", "thompson", "user_vector"} <= contributing
    assert len(found) == len({c.item_id for c in found}) <= 50
    assert all(c.reason for c in found)
    # The user lives among lamps: the top of the list is lamps.
    assert CATEGORY[found[0].item_id] == "lamps"


def test_offline_sellers_unavailable_and_excluded_items_never_appear(world):
    ctx = context(
        world, k=50, offline_sellers={"s-desks"}, unavailable={"lamp3"}, exclude={"lamp4"}
    )
    items = {c.item_id for c in generate(DEFAULT_SURFACES["home"], ctx)}
    assert items and not items & ({"lamp3", "lamp4"} | {i for i in CATEGORY if "desk" in i})


def test_default_home_leads_with_the_users_own_items_unless_bought(world):
    trace: dict = {}
    found = generate(DEFAULT_SURFACES["home"], context(world, k=50), trace)
    primaries = {"recently_viewed", "user_vector", "cooccurrence"}
    assert primaries <= set(trace["ran"]) <= primaries | {"popularity"}  # a short list fills
    own = [c for c in found if "recently_viewed" in c.sources]
    assert own and found[0] is own[0]  # the user's own items come first
    assert "lamp1" not in {c.item_id for c in found}  # bought: filtered


def test_home_without_a_model_uses_cooccurrence_then_popularity(world):
    trace: dict = {}
    found = generate(EVERY_SOURCE, context(world, model=None), trace)
    sources = {s for c in found for s in c.sources}
    # Model-free primaries, then popularity fills the tail if the list is short.
    assert {"cooccurrence", "category_trending", "recently_viewed"} <= sources
    assert sources <= {"cooccurrence", "category_trending", "recently_viewed", "popularity"}
    assert set(trace["skipped"]) == {
        "etsy_user", "tk_voting", "trajectory_line", "thompson", "user_vector",
    }  # fmt: skip
    assert any("%" in c.reason for c in found if c.source == "cooccurrence")


def test_brand_new_user_gets_popularity_only(world):
    ctx = context(world, user_id="new", trajectory=None, bandit=None)
    found = generate(DEFAULT_SURFACES["home"], ctx)
    assert found and {c.source for c in found} == {"popularity"}
    assert found[0].item_id == "rug3"  # the most popular item overall
    assert found[0].reason == "trending now"


def test_cart_page_falls_back_to_the_click_token(world):
    ctx = context(world, item_id="lamp2", neighbours=lambda token: None)
    trace: dict = {}
    found = generate(DEFAULT_SURFACES["cart"], ctx, trace)
    embedded = [c.contributions[0] for c in found if c.source == "cart_embedding"]
    assert embedded and all(c.evidence["via"] == "click" for c in embedded)
    assert "lamp2" not in {c.item_id for c in found}
    ctx = context(world, item_id="desk2", neighbours=lambda token: None)
    embedded = [c for c in generate(DEFAULT_SURFACES["cart"], ctx) if "cart_embedding" in c.sources]
    assert embedded[0].evidence["by_source"]
    assert embedded[0].contributions[0].evidence["via"] == "cart"
    # Without item_id: the user's last carted item (lamp1).
    found = generate(DEFAULT_SURFACES["cart"], context(world))
    assert found[0].contributions[0].evidence["seed"][0] == "lamp1"


def test_item_page_needs_an_item_and_excludes_it(world):
    with pytest.raises(SurfaceError, match="needs an item_id"):
        generate(DEFAULT_SURFACES["item"], context(world))
    found = generate(DEFAULT_SURFACES["item"], context(world, item_id="rug1"))
    assert "rug1" not in {c.item_id for c in found}
    assert CATEGORY[found[0].item_id] == "rugs"


def test_requests_are_reproducible_and_a_ranker_plugs_in(world):
    surface = DEFAULT_SURFACES["home"]
    first = generate(surface, context(world, rng=np.random.default_rng(11)))
    again = generate(surface, context(world, rng=np.random.default_rng(11)))
    assert [c.item_id for c in first] == [c.item_id for c in again]

    class Reverse:
        def rank(self, user_id, candidates, context=None):
            return list(reversed(candidates))

    ranked = generate(surface, context(world, rng=np.random.default_rng(11), ranker=Reverse()))
    assert [c.item_id for c in ranked] != [c.item_id for c in first]  # the ranker had its say
    everything = context(world, rng=np.random.default_rng(11), k=500)
    everything_reversed = context(world, rng=np.random.default_rng(11), k=500, ranker=Reverse())
    assert [c.item_id for c in generate(surface, everything_reversed)] == [
        c.item_id for c in reversed(generate(surface, everything))
    ]
