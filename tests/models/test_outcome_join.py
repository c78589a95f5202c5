"""The impression -> outcome join: matching, late, duplicate, missing and unknown engagements,
Redis supersession, per-variant sums, and identical outcomes when a partition is folded again."""

from __future__ import annotations

import copy

from models.outcome_join import Aggregates, JoinState, OutcomeJoin, engagement_record, unpack


class Partition:
    """One partition's stores as plain dicts (the worker keeps them in a ChangelogStore)."""

    def __init__(self) -> None:
        self.users: dict[str, JoinState] = {}
        self.aggregates = Aggregates()
        self.due: dict[str, float] = {}
        self.join = OutcomeJoin(
            self.users.get,
            lambda u: self.users.setdefault(u, JoinState()),
            self.aggregates,
            self.due,
            max_lists=3,
        )

    def fold_all(self, records):
        kinds, outcomes = [], []
        for record in records:
            folded = self.join.fold(record)
            kinds.append(folded.kind)
            outcomes.extend(folded.outcomes)
        return kinds, outcomes


def served(
    list_id,
    user="u",
    items=("a", "b", "c"),
    at=0.0,
    channel="http",
    variant="t",
    surface="home",
    window=60.0,
):
    return {
        "kind": "list",
        "list_id": list_id,
        "request_id": f"r-{list_id}",
        "user_id": user,
        "surface": surface,
        "channel": channel,
        "served_at": at,
        "deadline": at + window,
        "experiment": "x",
        "run": "1",
        "variant": variant,
        "model_version": "v1",
        "latency": 0.02,
        "error": False,
        "items": [[item, ["cooccurrence"], 1.0 - i / 10, None] for i, item in enumerate(items)],
    }


def engaged(event_id, item, etype="click", user="u", request_id=None, value=None):
    event = {"user_id": user, "item_id": item, "type": etype, "ts": 1.0, "event_id": event_id}
    if request_id:
        event["context"] = {"request_id": request_id}
    if value is not None:
        event["value"] = value
    return engagement_record(event)


def test_matching_late_duplicate_unknown_and_missing_engagements():
    p = Partition()
    records = [
        served("L1", items=("a", "b")),
        served("L2", items=("b", "c"), at=10.0),
        engaged("e1", "b"),  # no request id: the latest list showing b (L2)
        engaged("e1", "b"),  # the same event again: changes nothing
        engaged("e2", "a", "cart", request_id="r-L1"),
        engaged("e3", "a", "purchase", request_id="r-L1", value=25.0),
        engaged("e4", "b", "click", request_id="r-L1"),  # named list: L1's b
        engaged("e5", "z"),  # never shown
        engaged("e6", "a", request_id="r-nope"),  # a request id that never existed
        {**engaged("e7", "a"), "type": "view"},  # not a joined type
        {"kind": "tick", "now": 65.0},  # L1 closes (deadline 60), L2 not yet (70)
        engaged("e8", "a", request_id="r-L1"),  # after L1 closed: late
        engaged("e9", "c", "favorite"),
        {"kind": "tick", "now": 71.0},
    ]
    kinds, outcomes = p.fold_all(records)
    assert kinds == [
        "list",
        "list",
        "matched",
        "duplicate",
        "matched",
        "matched",
        "matched",
        "unmatched",
        "unknown_request",
        "ignored",
        "tick",
        "late",
        "matched",
        "tick",
    ]
    labels = {(o["list_id"], o["item_id"]): o for o in outcomes}
    assert len(outcomes) == 4  # one per impression, no more
    a1 = labels[("L1", "a")]
    assert (a1["y_click"], a1["y_cart"], a1["y_purchase"], a1["value"]) == (0, 1, 1, 25.0)
    assert labels[("L1", "b")]["y_click"] == 1
    assert labels[("L2", "b")]["y_click"] == 1 and labels[("L2", "c")]["y_favorite"] == 1
    assert [o["position"] for o in outcomes if o["list_id"] == "L2"] == [0, 1]
    assert {o["event_id"] for o in outcomes} == {"L1:0", "L1:1", "L2:0", "L2:1"}
    sums = p.aggregates.moments("x", "1", "t").sums
    assert sums[:5] == [2.0, 0.0, 0.04, 4.0, 2.0]  # requests, errors, latency, impressions, clicks
    assert sums[5:] == [1.0, 1.0, 1.0, 25.0]  # favourites, carts, purchases, revenue
    assert not p.users["u"].pending and not p.due


def test_redis_copies_supersede_each_other_and_stay_out_of_the_statistics():
    p = Partition()
    kinds, outcomes = p.fold_all(
        [served("R1", channel="redis", at=0.0), served("R2", channel="redis", at=5.0)]
    )
    assert kinds == ["list", "list"]
    assert {o["closed"] for o in outcomes} == {"superseded"} and len(outcomes) == 3
    assert p.aggregates.runs == {}  # a Redis copy may never be shown: not counted


def test_only_joined_types_are_forwarded():
    assert engaged("e", "a", "view") is None
    assert engaged("e", "a", "impression") is None  # a client's own slate, not our list
    assert engaged("e", "a", "impression", request_id="r")["request_id"] == "r"


def test_overflow_closes_the_oldest_lists_early():
    p = Partition()
    _, outcomes = p.fold_all([served(f"L{i}", at=float(i)) for i in range(5)])
    assert [o["list_id"] for o in outcomes if o["position"] == 0] == ["L0", "L1"]
    assert {o["closed"] for o in outcomes} == {"overflow"}
    assert len(p.users["u"].pending) == 3


def test_folding_a_partition_again_from_a_checkpoint_gives_the_same_outcomes():
    records = [
        served("L1"),
        engaged("e1", "a"),
        served("L2", user="v", at=1.0),
        engaged("e2", "b", user="v"),
        {"kind": "tick", "now": 61.5},
        engaged("e3", "c", "cart"),
        {"kind": "tick", "now": 62.0},
    ]
    whole = Partition()
    _, expected = whole.fold_all(records)
    # a crash after record 3: the checkpoint holds the state after records[:3] (packed, as the
    # changelog does); everything after the committed offset (record 2) is delivered again
    crashed = Partition()
    crashed.fold_all(records[:3])
    restored = Partition()
    for user, state in crashed.users.items():
        restored.users[user] = unpack(state.pack())
    restored.aggregates.runs = copy.deepcopy(unpack(crashed.aggregates.pack()).runs)
    restored.due.update(
        {u: d for u, st in restored.users.items() if (d := st.earliest_deadline()) is not None}
    )
    _, again = restored.fold_all(records[2:])
    assert again == expected
    assert restored.aggregates.pack() == whole.aggregates.pack()
    assert all(restored.users[u].pack() == whole.users[u].pack() for u in whole.users)


def test_without_a_request_id_a_list_asked_for_wins_over_a_later_redis_copy():
    p = Partition()
    kinds, _ = p.fold_all(
        [served("H1", at=0.0), served("R1", channel="redis", at=1.0), engaged("e1", "a")]
    )
    assert kinds == ["list", "list", "matched"]
    _, outcomes = p.fold_all([{"kind": "tick", "now": 100.0}])
    clicked = {o["list_id"] for o in outcomes if o["y_click"]}
    assert clicked == {"H1"}


def test_features_logged_with_a_list_become_the_rankers_examples():
    from models.ranking.features import FEATURE_NAMES
    from models.ranking.ranker import LearnedRanker, examples_of

    width = len(FEATURE_NAMES)
    part = Partition()
    record = served("L1", items=("a", "b"))
    record["items"] = [
        [item, ["popularity"], 1.0, [float(i)] * width] for i, item in enumerate(("a", "b"))
    ]
    record["ranker_weights"] = {"click": 1.0, "purchase": 5.0}
    kinds, outcomes = part.fold_all(
        [
            record,
            engaged("e1", "b", "cart", request_id="r-L1"),
            engaged("e1", "b", "cart", request_id="r-L1"),  # duplicate: counted once
            engaged("e2", "zz", "click", request_id="r-never"),  # unknown request
            {"kind": "tick", "now": 61.0},
            engaged("e3", "a", "purchase", request_id="r-L1"),  # late: no label
        ]
    )
    assert kinds == ["list", "matched", "duplicate", "unknown_request", "tick", "late"]
    x, y, ids = examples_of(outcomes)
    assert x.tolist() == [[0.0] * width, [1.0] * width]
    assert y[:, 2].tolist() == [0, 1] and y[:, 3].tolist() == [0, 0]
    assert ids == ["L1:0", "L1:1"] and outcomes[0]["ranker_weights"]["purchase"] == 5.0
    ranker = LearnedRanker()
    # Outcomes of lists logged without features (another surface) are skipped, not learned.
    assert ranker.learn_outcomes([*outcomes, {**outcomes[0], "features": None}]) == 2
    assert ranker.skipped == 1 and ranker.examples == 2
