"""ChangelogStore's write-behind cache: no change is lost however many keys one checkpoint holds."""

from __future__ import annotations

from pathlib import Path

from agents.store import ChangelogStore, Recovered


class Counter:
    def __init__(self, value: int = 0) -> None:
        self.value = value

    def pack(self) -> bytes:
        return str(self.value).encode()

    @classmethod
    def unpack(cls, data: bytes) -> Counter:
        return cls(int(data))


def make_store(tmp_path: Path, capacity: int) -> ChangelogStore:
    store = ChangelogStore(
        "users", "changelog", Counter, Counter.unpack, tmp_path, live_capacity=capacity
    )
    store.install(Recovered(0, {"old": b"5"}, end_offset=0, incarnation=None))
    return store


def test_more_keys_changed_in_one_checkpoint_than_the_cache_holds_are_all_written(tmp_path):
    store = make_store(tmp_path, capacity=2)
    keys = ["old"] + [f"k{i}" for i in range(50)]
    for round_ in range(3):
        for key in keys:
            store.get_for_update(key, 0).value += 1
        records = store.take_changes()  # raised KeyError once the cache dropped a dirty key
        assert records[0], round_
        values = store.values[0]
        assert values["old"] == str(5 + round_ + 1).encode()
        assert all(values[k] == str(round_ + 1).encode() for k in keys[1:])
        assert len(store.live) <= 2 * 2 + 1


def test_a_clean_key_read_back_after_a_trim_keeps_its_value(tmp_path):
    store = make_store(tmp_path, capacity=1)
    for i in range(10):
        store.get_for_update(f"k{i}", 0).value = i
    store.take_changes()
    assert len(store.live) <= 1
    assert [store.get(f"k{i}", 0).value for i in range(10)] == list(range(10))
