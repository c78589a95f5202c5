"""Streaming state over the real broker: co-occurrence, trajectories, bandits."""

from __future__ import annotations

import time
import uuid

import pytest
from support import http, send_events, wait_until


@pytest.fixture(scope="module")
def shared(module_worker):
    return module_worker


def send(settings, events: list[dict]) -> None:
    send_events(settings, events)


def session(user: str, steps: list[tuple[str, str]], ts: float, **extra) -> list[dict]:
    return [
        {"user_id": user, "item_id": item, "type": etype, "ts": ts + i, **extra}
        for i, (item, etype) in enumerate(steps)
    ]


def similar(worker, item: str, from_type: str, to_type: str, k: int = 20) -> dict:
    """The answer, its items cut to the co-occurrence part (the fallbacks' fill is dropped)."""
    status, body = http(
        "GET", f"{worker.url}/items/{item}/similar?from={from_type}&to={to_type}&k={k}"
    )
    assert status == 200, body
    assert len(body["items"]) <= k
    assert body["sources"] == list(dict.fromkeys(i["source"] for i in body["items"]))
    return {**body, "items": [i for i in body["items"] if i["source"] == "cooccurrence"]}


def test_similar_falls_back_to_the_category_then_trending_and_says_so(shared):
    tag = uuid.uuid4().hex[:6]
    now = time.time()
    hats = [f"H{tag}{i}" for i in range(3)]
    events = [
        {
            "user_id": f"{tag}-u{i}",
            "item_id": hats[i % 2 + 1],
            "type": "view",
            "ts": now + i,
            "item": {"category": f"hats{tag}"},
        }
        for i in range(4)
    ]
    events.append(
        {
            "user_id": f"{tag}-x",
            "item_id": hats[0],
            "type": "view",
            "ts": now,
            "item": {"category": f"hats{tag}"},
        }
    )
    send(shared.settings, events)
    # hats[0] never co-occurred with anything: its category's trending items answer it.
    body = wait_until(
        lambda: (lambda r: r[1] if r[0] == 200 and r[1]["items"] else None)(
            http("GET", f"{shared.url}/items/{hats[0]}/similar?from=view&to=item&k=50")
        ),
        what="a fallback answer",
    )
    assert body["to"] == "item" and body["model_version"] is None
    assert body["sources"][0] == "category", body["sources"]
    category = [i["item_id"] for i in body["items"] if i["source"] == "category"]
    assert set(category) == set(hats[1:]), category
    assert hats[0] not in [i["item_id"] for i in body["items"]]
    assert all(i["reason"] for i in body["items"])


def test_click_then_cart_makes_b_the_top_click_to_cart_neighbour(shared):
    tag = uuid.uuid4().hex[:6]
    a, b, c = f"A{tag}", f"B{tag}", f"C{tag}"
    now = time.time()
    events = []
    for i in range(3):
        events += session(f"{tag}-u{i}", [(a, "click"), (b, "cart")], now)
    events += session(f"{tag}-u3", [(a, "click"), (c, "cart")], now)
    events += session(f"{tag}-u4", [(a, "click")], now)
    send(shared.settings, events)

    body = wait_until(
        lambda: (lambda r: r if r["items"] and r["items"][0]["count"] > 2.9 else None)(
            similar(shared, a, "click", "cart")
        ),
        what="A's click->cart neighbours",
    )
    assert body["model_version"] is None and body["source"] == "cooccurrence"
    top, second = body["items"][:2]
    assert top["item_id"] == b and second["item_id"] == c
    # P(B | clicked A) = 3 of the 5 sessions that clicked A.
    assert top["p"] == pytest.approx(0.6, abs=1e-3)
    assert top["count"] == pytest.approx(3.0, abs=1e-2)
    assert second["p"] == pytest.approx(0.2, abs=1e-3)
    assert "60% of sessions that clicked" in top["reason"]
    # Directional: nothing follows B's cart token, and A's click->click list is empty.
    assert similar(shared, b, "cart", "click")["items"] == []
    assert similar(shared, a, "click", "click")["items"] == []
    assert body["sources"][0] == "cooccurrence"


def test_sessions_split_on_the_inactivity_gap(shared):
    tag = uuid.uuid4().hex[:6]
    a, b = f"A{tag}", f"B{tag}"
    t0 = time.time() - 7200
    # Same user, 31 minutes between the click and the cart: two sessions, no pair.
    events = session(f"{tag}-u", [(a, "click")], t0) + session(
        f"{tag}-u", [(b, "cart")], t0 + 31 * 60
    )
    # A session_id change splits too, even seconds apart.
    events += session(f"{tag}-v", [(a, "click")], t0, session_id="s1")
    events += session(f"{tag}-v", [(b, "cart")], t0 + 5, session_id="s2")
    # ... and a control pair inside one session.
    events += session(f"{tag}-w", [(a, "click"), (f"C{tag}", "cart")], t0)
    send(shared.settings, events)
    body = wait_until(
        lambda: (lambda r: r if r["items"] else None)(similar(shared, a, "click", "cart")),
        what="the control pair",
    )
    assert [i["item_id"] for i in body["items"]] == [f"C{tag}"]


def test_old_counts_decay(shared):
    tag = uuid.uuid4().hex[:6]
    a = f"A{tag}"
    half_life = shared.settings.state_half_life_seconds
    old = time.time() - half_life  # one half-life ago
    events = session(f"{tag}-old", [(a, "click"), (f"OLD{tag}", "cart")], old)
    events += session(f"{tag}-new", [(a, "click"), (f"NEW{tag}", "cart")], time.time())
    send(shared.settings, events)
    body = wait_until(
        lambda: (lambda r: r if len(r["items"]) == 2 else None)(
            similar(shared, a, "click", "cart")
        ),
        what="both pairs",
    )
    counts = {i["item_id"]: i["count"] for i in body["items"]}
    assert counts[f"NEW{tag}"] == pytest.approx(1.0, abs=0.01)
    assert counts[f"OLD{tag}"] == pytest.approx(0.5, abs=0.01)


def test_similar_rejects_bad_parameters(shared):
    for query, words in [
        ("from=like", "from: must be one of"),
        ("to=zap", "to: must be one of"),
        ("k=0", "k: must be"),
        ("k=abc", "k: must be"),
    ]:
        status, body = http("GET", f"{shared.url}/items/x/similar?{query}")
        assert status == 400 and words in body["error"]


def user_state(worker, user: str, at: float | None = None) -> dict | None:
    query = f"?at={at}" if at is not None else ""
    status, body = http("GET", f"{worker.url}/users/{user}/state{query}")
    return body if status == 200 else None


def test_trajectory_and_bandit_follow_the_stream(shared):
    tag = uuid.uuid4().hex[:6]
    user = f"{tag}-u"
    t0 = time.time() - 3600

    def item(i: str, seller: str) -> dict:
        return {"category": "lamps", "seller": seller}

    steps = [
        ("i1", "click"),
        ("i2", "click"),
        ("i1", "click"),
        ("i3", "click"),
        ("i4", "click"),
        ("i5", "click"),
        ("i2", "cart"),
        ("i2", "purchase"),
    ]
    events = [
        {"user_id": user, "item_id": f"{tag}{i}", "type": t, "ts": t0 + n, "item": item(i, "s1")}
        for n, (i, t) in enumerate(steps)
    ]
    # Shown, never engaged: never becomes an arm (Thompson never picks a stranger).
    events.append(
        {
            "user_id": user,
            "item_id": f"{tag}x",
            "type": "impression",
            "ts": t0 + 20,
            "item": item("x", "s9"),
        }
    )
    send(shared.settings, events)
    state = wait_until(
        lambda: (lambda s: s if s and s["tokens"] >= 8 else None)(user_state(shared, user)),
        what="the user's state",
    )
    # The last 4 distinct clicked items, most recent first.
    assert state["seeds"]["click"] == [f"{tag}i5", f"{tag}i4", f"{tag}i3", f"{tag}i1"]
    assert state["purchased"] == [f"{tag}i2"]
    assert state["top_sellers"][0]["seller"] == "s1"
    # i2 (click, cart, purchase) outweighs i1 (two clicks), which outweighs i3.
    weights = {w["item_id"]: w["weight"] for w in state["top_items"]}
    assert weights[f"{tag}i2"] > weights[f"{tag}i1"] > weights[f"{tag}i3"]
    arm_ids = {a["id"] for a in state["bandit_arms"]}
    assert f"{tag}i2" in arm_ids and f"{tag}x" not in arm_ids
    best = state["bandit_arms"][0]
    assert best["id"] == f"{tag}i2" and best["alpha"] > best["beta"]


def test_redelivered_events_change_no_state(shared):
    tag = uuid.uuid4().hex[:6]
    user = f"{tag}-u"
    now = time.time()
    events = [
        {
            "user_id": user,
            "item_id": f"{tag}{i}",
            "type": t,
            "ts": now + i,
            "event_id": f"{tag}-e{i}",
        }
        for i, t in enumerate(["click", "cart", "click", "purchase"])
    ]
    send(shared.settings, events)
    first = wait_until(
        lambda: (lambda s: s if s and s["tokens"] == 4 else None)(user_state(shared, user, now)),
        what="the user's state",
    )
    pairs = wait_until(
        lambda: (lambda r: r if r["items"] else None)(similar(shared, f"{tag}0", "click", "cart")),
        what="the pair",
    )
    duplicates = shared.metric("tastestream_events_duplicate_total")
    send(shared.settings, events)  # a redelivery of all four
    wait_until(
        lambda: shared.metric("tastestream_events_duplicate_total") >= duplicates + 4,
        what="the redelivery to be seen",
    )
    assert user_state(shared, user, now) == first
    again = similar(shared, f"{tag}0", "click", "cart")
    # Same pairs and shares; counts only as decayed by the seconds between the two reads.
    assert [(i["item_id"], i["p"]) for i in again["items"]] == [
        (i["item_id"], i["p"]) for i in pairs["items"]
    ]
    for now_item, then_item in zip(again["items"], pairs["items"], strict=True):
        assert now_item["count"] == pytest.approx(then_item["count"], abs=1e-3)
