"""The one per-user fold: redelivery guard, history bounds, pair numbering, packing."""

from __future__ import annotations

import random

import msgpack
import pytest

from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.stream_state import StreamState
from models.token_state import TokenState
from models.user_state import StateConfig, UserState, fold_message
from streams.events import validate_event


def sim_events(n: int, seed: int = 3) -> list[dict]:
    sim = ClickstreamSimulator(SimulatorConfig(users=60, items=300, seed=seed))
    return [validate_event(e) for e in sim.events(n)]


def test_a_redelivered_event_changes_nothing_even_after_packing():
    config = StateConfig()
    events = sim_events(400)
    users: dict[str, UserState] = {}
    fold_message(events, lambda u: users.setdefault(u, UserState(config)), 0, 0)
    packed = {u: s.pack() for u, s in users.items()}
    restored = {u: UserState.unpack(b, config) for u, b in packed.items()}
    accepted, records = fold_message(events, restored.__getitem__, 0, 0)
    assert accepted == [] and records == []
    assert {u: s.pack() for u, s in restored.items()} == packed


def test_history_is_capped_by_count_and_by_bytes():
    config = StateConfig(history_length=50, history_max_bytes=4096)
    user = UserState(config)
    for i in range(300):
        user.fold_one(
            {
                "user_id": "u" * 100,
                "item_id": "💥" * 120,
                "type": "click",
                "ts": float(i),
                "event_id": f"e{i}",
            }
        )
    assert 1 <= len(user) <= 50
    assert sum(map(len, user.history)) <= 4096
    # Ids are bounded by the contract, so the whole value stays far below a 1 MB record.
    assert len(user.pack()) < 512 * 1024
    newest = user.events(limit=1)[0]
    assert newest["event_id"] == "e299"


def test_fold_numbers_pair_records_by_source_and_order():
    config = StateConfig()
    events = sim_events(300)
    users: dict[str, UserState] = {}
    _, records = fold_message(events, lambda u: users.setdefault(u, UserState(config)), 2, 41)
    assert records, "the simulator's sessions count pairs"
    assert [r[6] for r in records] == list(range(len(records)))
    assert {(r[4], r[5]) for r in records} == {(2, 41)}


def test_message_boundaries_do_not_change_the_state():
    events = sim_events(1500)
    one = StreamState()
    one.apply(events, message_size=1500)
    many = StreamState()
    many.apply(events, message_size=7)
    assert one.users.keys() == many.users.keys()
    assert all(one.users[u] == many.users[u] for u in one.users)
    assert one.tokens.keys() == many.tokens.keys()
    assert all(one.tokens[t].neighbours == many.tokens[t].neighbours for t in one.tokens)


def test_token_fold_is_exactly_once_under_redelivery_and_reordering_of_messages():
    """Pair records delivered twice (any chunks, any repeats) count once."""
    events = sim_events(800)
    users: dict[str, UserState] = {}
    config = StateConfig()
    all_records = []
    for offset, start in enumerate(range(0, len(events), 50)):
        _, records = fold_message(
            events[start : start + 50], lambda u: users.setdefault(u, UserState(config)), 1, offset
        )
        all_records += records
    once: dict[str, TokenState] = {}
    twice: dict[str, TokenState] = {}
    rng = random.Random(0)

    def apply(table, chunk):
        for r in chunk:
            key = r[1] if r[0] is None else r[0]
            table.setdefault(key, TokenState()).fold([r])

    apply(once, all_records)
    position = 0
    while position < len(all_records):
        step = rng.randint(1, 40)
        chunk = all_records[position : position + step]
        apply(twice, chunk)
        replay_from = max(0, position - rng.randint(0, 30))  # redeliver a tail
        apply(twice, all_records[replay_from : position + step])
        position += step
    assert once.keys() == twice.keys()
    assert all(once[k] == twice[k] for k in once)


def test_unpack_refuses_another_layout_version():
    state = UserState(StateConfig()).to_state()
    state[0] = 99
    with pytest.raises(ValueError, match="version 99"):
        UserState.unpack(msgpack.packb(state), StateConfig())
