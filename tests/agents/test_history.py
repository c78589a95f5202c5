from agents.history import append_events, new_history


def ev(i, user="u"):
    return {
        "event_id": f"e{i}",
        "user_id": user,
        "item_id": f"i{i}",
        "type": "view",
        "ts": float(i),
    }


def test_newest_first_and_bounded():
    state = new_history()
    fresh = append_events(state, [ev(i) for i in range(10)], history_length=4, dedupe_window=100)
    assert len(fresh) == 10
    assert [e["event_id"] for e in state["events"]] == ["e9", "e8", "e7", "e6"]


def test_redelivery_changes_nothing():
    state = new_history()
    append_events(state, [ev(1), ev(2)], history_length=10, dedupe_window=10)
    before = [dict(e) for e in state["events"]], list(state["seen"])
    assert append_events(state, [ev(2), ev(1)], history_length=10, dedupe_window=10) == []
    assert ([dict(e) for e in state["events"]], list(state["seen"])) == before


def test_dedupe_window_is_bounded_and_forgets_oldest():
    state = new_history()
    append_events(state, [ev(i) for i in range(5)], history_length=10, dedupe_window=3)
    assert state["seen"] == ["e2", "e3", "e4"]
    # e0 fell out of the window: it counts as new again (the documented bound).
    assert len(append_events(state, [ev(0)], history_length=10, dedupe_window=3)) == 1
