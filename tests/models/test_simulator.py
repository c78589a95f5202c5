"""The simulator emits valid events in time order, and its planted structure is really there.

Structure is measured from the emitted stream (not read back from the
simulator's internals) and compared with what chance would give.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np
import pytest

from models.sessions import sessionise
from models.simulator import ClickstreamSimulator, SimulatorConfig, write_jsonl
from streams.events import validate_event

CONFIG = SimulatorConfig(users=150, items=1500, categories=20, sellers=60, seed=7)
N_EVENTS = 60_000
ENGAGEMENTS = ("click", "favorite", "cart", "purchase")


@pytest.fixture(scope="module")
def sim() -> ClickstreamSimulator:
    return ClickstreamSimulator(CONFIG)


@pytest.fixture(scope="module")
def stream(sim: ClickstreamSimulator) -> list[dict]:
    return list(sim.events(N_EVENTS))


def by_session(events: list[dict]) -> dict[str, list[dict]]:
    sessions: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        sessions[event["session_id"]].append(event)
    return sessions


def total_variation(a: Counter, b: Counter) -> float:
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


# ----------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(tmp_path) -> None:
    small = SimulatorConfig(users=40, items=400, categories=8, sellers=15, seed=3)
    paths = [tmp_path / f"{name}.jsonl" for name in ("a", "b", "c")]
    assert write_jsonl(ClickstreamSimulator(small).events(3000), paths[0]) == 3000
    write_jsonl(ClickstreamSimulator(small).events(3000), paths[1])
    other = SimulatorConfig(users=40, items=400, categories=8, sellers=15, seed=4)
    write_jsonl(ClickstreamSimulator(other).events(3000), paths[2])
    first, again, different = (p.read_bytes() for p in paths)
    assert first == again
    assert first != different
    assert len(first.splitlines()) == 3000


def test_events_twice_on_one_simulator_repeat_the_same_stream(sim) -> None:
    assert list(sim.events(500)) == list(sim.events(500))


# -------------------------------------------------------------------- contract


def test_every_event_passes_the_contract(stream) -> None:
    for event in stream:
        assert validate_event(event) == event  # already canonical
        assert re.fullmatch(r"u\d+", event["user_id"])
        assert re.fullmatch(r"i\d+", event["item_id"])
        assert set(event["item"]) == {"category", "seller", "price", "available"}
        if event["type"] in ("impression", "view", "click"):
            assert set(event["context"]) == {"surface", "position"}
        if event["type"] in ("cart", "purchase"):
            assert event["value"] == event["item"]["price"] > 0
    assert len({e["event_id"] for e in stream}) == len(stream)


def test_event_item_metadata_matches_the_catalogue(sim, stream) -> None:
    catalogue = {row["item_id"]: row for row in sim.catalogue()}
    assert len(catalogue) == CONFIG.items
    for event in stream[:5000]:
        row = catalogue[event["item_id"]]
        assert event["item"]["category"] == row["category"] == sim.item_category(event["item_id"])
        assert event["item"]["seller"] == row["seller"] == sim.item_seller(event["item_id"])
        assert event["item"]["price"] == row["price"]


def test_ts_is_ordered_from_start_and_spans_several_days(stream) -> None:
    ts = np.array([e["ts"] for e in stream])
    assert np.all(np.diff(ts) >= 0)
    assert ts[0] >= CONFIG.start_ts
    span_days = (ts[-1] - ts[0]) / 86400
    assert 5.0 < span_days < 9.5  # about span_days (7) by default
    # a 24-hour held-out window has plenty of traffic
    assert np.sum(ts > ts[-1] - 86400) > N_EVENTS / 20


def test_explicit_events_per_day_sets_the_rate() -> None:
    cfg = SimulatorConfig(users=300, items=600, categories=6, sellers=20, events_per_day=2000.0)
    ts = [e["ts"] for e in ClickstreamSimulator(cfg).events(6000)]
    assert 2.0 < (ts[-1] - ts[0]) / 86400 < 4.5


def test_sessions_are_minutes_long_and_hours_apart(stream) -> None:
    sessions = by_session(stream)
    users_of = {sid: {e["user_id"] for e in events} for sid, events in sessions.items()}
    assert all(len(users) == 1 for users in users_of.values())
    inner_gaps = [
        b["ts"] - a["ts"] for events in sessions.values() for a, b in itertools.pairwise(events)
    ]
    assert max(inner_gaps) < 20 * 60
    assert np.median([e[-1]["ts"] - e[0]["ts"] for e in sessions.values()]) > 60
    spans_by_user: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for events in sessions.values():
        spans_by_user[events[0]["user_id"]].append((events[0]["ts"], events[-1]["ts"]))
    gaps = [
        later[0] - earlier[1]
        for spans in spans_by_user.values()
        for earlier, later in itertools.pairwise(sorted(spans))
    ]
    assert len(gaps) > 100
    assert min(gaps) >= CONFIG.min_session_gap
    assert np.median(gaps) > 2 * 3600


def test_shared_sessionisation_recovers_the_emitted_sessions(stream) -> None:
    sessions = list(sessionise(stream))
    with_interactions = {e["session_id"] for e in stream if e["type"] != "impression"}
    assert {s.key for s in sessions} == with_interactions
    assert len(sessions) == len(with_interactions)


# ---------------------------------------------------------------------- funnel


def test_funnel_rates_are_ordered(stream) -> None:
    counts = Counter(e["type"] for e in stream)
    assert counts["view"] > counts["click"] > counts["cart"] > counts["purchase"] > 0
    assert counts["impression"] > 0 and counts["favorite"] > 0


def test_click_through_follows_category_affinity(sim, stream) -> None:
    shown = {"high": 0, "low": 0}
    clicked = {"high": 0, "low": 0}
    clicks = {(e["session_id"], e["item_id"]) for e in stream if e["type"] == "click"}
    for event in stream:
        if event["type"] != "view" or not event["item"]["available"]:
            continue
        category = int(event["item"]["category"][1:])
        affinity = sim.user_taste(event["user_id"], event["ts"])[category] * CONFIG.categories
        bucket = "high" if affinity > 2.0 else "low" if affinity < 1.0 else None
        if bucket:
            shown[bucket] += 1
            clicked[bucket] += (event["session_id"], event["item_id"]) in clicks
    assert shown["low"] > 200 and shown["high"] > 200
    assert clicked["high"] / shown["high"] > 1.3 * clicked["low"] / shown["low"]


# ------------------------------------------------------------ planted structure


def test_clicks_move_among_substitutes(sim, stream) -> None:
    pairs = []
    for events in by_session(stream).values():
        clicks = [e for e in events if e["type"] == "click"]
        pairs += [(a["item_id"], b["item_id"]) for a, b in itertools.pairwise(clicks)]
    assert len(pairs) > 500
    category = sim.item_category
    same = np.mean([category(a) == category(b) for a, b in pairs])
    shares = Counter(category(b) for _, b in pairs)
    chance = sum((n / len(pairs)) ** 2 for n in shares.values())
    assert same > 0.6 and same > 2 * chance
    near = np.mean([b in sim.substitutes(a, 10) for a, b in pairs])
    assert near > 0.3  # chance: about 10 / items per category
    into_complements = np.mean([b in sim.complements(a) for a, b in pairs])
    assert into_complements < 0.05


def test_carts_after_clicks_go_to_complements(sim, stream) -> None:
    pairs = []
    for events in by_session(stream).values():
        last_click = None
        for event in events:
            if event["type"] == "click":
                last_click = event["item_id"]
            elif event["type"] == "cart" and last_click is not None:
                pairs.append((last_click, event["item_id"]))
    assert len(pairs) > 200
    hit = np.mean([cart in sim.complements(click) for click, cart in pairs])
    shuffled = [cart for _, cart in pairs]
    random.Random(0).shuffle(shuffled)
    chance = np.mean(
        [cart in sim.complements(click) for (click, _), cart in zip(pairs, shuffled, strict=True)]
    )
    assert hit > 0.3 and hit > 10 * chance
    # carted A and clicked A lead to different places: carts leave the category
    category = sim.item_category
    cross = np.mean(
        [category(cart) in sim.complement_categories(category(click)) for click, cart in pairs]
    )
    assert cross > 0.4


def test_taste_drift_is_visible_in_the_stream() -> None:
    cfg = SimulatorConfig(users=30, items=600, categories=12, sellers=25, seed=11)
    sim = ClickstreamSimulator(cfg)
    per_user: dict[str, list[str]] = defaultdict(list)
    for event in sim.events(40_000):
        if event["type"] in ("view", "click"):
            per_user[event["user_id"]].append(event["item"]["category"])
    rng = random.Random(1)
    drift, noise, target_rose = [], [], []
    for user, cats in per_user.items():
        if len(cats) < 90:
            continue
        third = len(cats) // 3
        early, late = cats[:third], cats[-third:]
        drift.append(total_variation(Counter(early), Counter(late)))
        pool = early + late
        rng.shuffle(pool)
        noise.append(total_variation(Counter(pool[:third]), Counter(pool[third:])))
        target = sim.user_drift_target(user)
        target_rose.append(late.count(target) > early.count(target))
    assert len(drift) >= 20
    assert np.mean(drift) > np.mean(noise) + 0.1
    assert np.mean(target_rose) > 0.7


def test_user_taste_is_a_distribution_that_drifts_to_its_target(sim) -> None:
    day = 86400.0
    for user in ("u0", "u1", "u2"):
        start = sim.user_taste(user)
        later = sim.user_taste(user, CONFIG.start_ts + 5 * day)
        target = int(sim.user_drift_target(user)[1:])
        assert start.shape == (CONFIG.categories,)
        assert start.sum() == pytest.approx(1.0) and later.sum() == pytest.approx(1.0)
        assert later[target] > start[target]
        assert target != int(np.argmax(start))


# ----------------------------------------------------------------- live sellers


def test_sellers_go_offline_and_their_items_are_not_engaged(sim, stream) -> None:
    grid = CONFIG.start_ts + 900.0 * np.arange(7 * 96)
    schedules = [[sim.seller_live(f"s{s}", ts) for ts in grid] for s in range(CONFIG.sellers)]
    assert all(any(row) and not all(row) for row in schedules)
    for event in stream:
        assert event["item"]["available"] == sim.item_available(event["item_id"], event["ts"])
    offline = [e for e in stream if not e["item"]["available"]]
    assert len(offline) > 20
    assert {e["type"] for e in offline} == {"view"}
    # the catalogue at a time agrees with the schedule
    ts = CONFIG.start_ts + 3.3 * 86400
    rows = sim.catalogue(ts)
    assert any(not r["available"] for r in rows) and any(r["available"] for r in rows)
    assert all(r["available"] == sim.seller_live(r["seller"], ts) for r in rows)


# ------------------------------------------------------------ ground truth API


def test_substitutes_and_complements_are_consistent(sim) -> None:
    for item in ("i0", "i5", "i99"):
        subs = sim.substitutes(item, 8)
        assert len(subs) == len(set(subs)) == 8 and item not in subs
        assert {sim.item_category(s) for s in subs} == {sim.item_category(item)}
        comps = sim.complements(item)
        comp_cats = sim.complement_categories(sim.item_category(item))
        assert 1 <= len(comp_cats) <= 2 and sim.item_category(item) not in comp_cats
        assert len(comps) == CONFIG.complements_per_category * len(comp_cats)
        assert {sim.item_category(c) for c in comps} == set(comp_cats)


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(items=3, categories=5)
    with pytest.raises(ValueError):
        SimulatorConfig(click_rate=1.5)


# ------------------------------------------------------------------------ live


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.slept += seconds
        self.now += seconds


def test_pull_paced_live_events_are_stamped_with_the_clock() -> None:
    cfg = SimulatorConfig(users=300, items=500, categories=8, sellers=20)
    clock = FakeClock(2_100_000_000.0)

    def ticking() -> float:
        clock.now += 0.01  # the caller pulls 100 events a second, whatever the config
        return clock.now

    events = list(itertools.islice(ClickstreamSimulator(cfg).live_events(ticking), 2000))
    ts = np.array([e["ts"] for e in events])
    assert ts[0] > 2_100_000_000.0
    assert np.allclose(np.diff(ts), 0.01, atol=1e-3)  # one clock reading per event
    assert all(validate_event(e) == e for e in events)
    assert len({e["session_id"] for e in events}) > 10
    assert len({e["event_id"] for e in events}) == 2000


def test_real_time_live_events_sleep_until_due() -> None:
    cfg = SimulatorConfig(users=2000, items=500, categories=8, sellers=20)
    sim = ClickstreamSimulator(cfg)
    clock = FakeClock(2_000_000_000.0)
    events = []
    for event in itertools.islice(sim.live_events(clock, clock.sleep), 1500):
        assert event["ts"] <= clock.now  # never ahead of the clock when handed over
        events.append(validate_event(event))
    ts = [e["ts"] for e in events]
    assert ts[0] >= 2_000_000_000.0 and ts == sorted(ts)
    assert clock.slept > 0
    elapsed = clock.now - 2_000_000_000.0
    rate = cfg.live_events_per_second
    assert 1500 / rate / 2 < elapsed < 1500 / rate * 2
    assert events[0]["event_id"].startswith("s0t2000000000")
    assert clock.now - ts[-1] < 1.0  # ts tracks the clock


def test_a_rate_too_high_for_the_users_warns() -> None:
    cfg = SimulatorConfig(users=10, items=100, categories=4, sellers=5)
    clock = FakeClock(1e9)
    with pytest.warns(RuntimeWarning, match="add users"):
        next(ClickstreamSimulator(cfg).live_events(clock, clock.sleep))
    with pytest.warns(RuntimeWarning, match="add users"):
        next(ClickstreamSimulator(replace(cfg, events_per_day=1e6)).events(10))
