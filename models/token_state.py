"""One token's co-occurrence state and the fold that applies pair records to it exactly once.

A token's value is its :class:`~models.cooccurrence.TokenNeighbours` (decayed
occurrence count and Space-Saving sketches of its top targets per type) plus a
guard: per source partition, the ``(offset, seq)`` number of the last pair
record applied. :func:`models.user_state.fold_message` numbers records by the
source message's partition and offset and their order within it, so records of
one source partition reach a token in increasing number order, and a record
that comes again (a redelivered pairs message, or the same source message
folded again after a crash) has a number at or below the guard: it is skipped.

Examples
--------
>>> state = TokenState(capacity=10, half_life=None)
>>> records = [(None, "click:a", 1.0, 0.0, 0, 5, 0), ("click:a", "cart:b", 1.0, 0.0, 0, 5, 1)]
>>> state.fold([records[0]]), state.fold([("click:a", "cart:b", 1.0, 0.0, 0, 5, 1)])
(1, 1)
>>> state.fold(records)  # both again: nothing changes
0
>>> state.neighbours.top("cart", 5, now=0.0)
[('b', 1.0, 1.0)]
>>> TokenState.unpack(state.pack(), capacity=10, half_life=None) == state
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgpack

from models.cooccurrence import DEFAULT_CAPACITY, DEFAULT_HALF_LIFE, TokenNeighbours
from models.user_state import PairRecord

_packb = msgpack.Packer(use_bin_type=True).pack


class TokenState:
    """A token's neighbours and its exactly-once guard."""

    __slots__ = ("applied", "neighbours")

    def __init__(
        self, capacity: int = DEFAULT_CAPACITY, half_life: float | None = DEFAULT_HALF_LIFE
    ) -> None:
        self.neighbours = TokenNeighbours(capacity, half_life)
        #: source partition -> (offset, seq) of the last record applied from it
        self.applied: dict[int, tuple[int, int]] = {}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenState):
            return NotImplemented
        return self.neighbours == other.neighbours and self.applied == other.applied

    __hash__ = None  # type: ignore[assignment]

    def fold(self, records: Iterable[PairRecord]) -> int:
        """Apply this token's records (in arrival order); return how many were new."""
        neighbours = self.neighbours
        sketches = neighbours.sketches
        applied = self.applied
        n = 0
        for p, q, weight, ts, partition, offset, seq in records:
            last = applied.get(partition)
            if last is not None and (offset < last[0] or (offset == last[0] and seq <= last[1])):
                continue
            applied[partition] = (offset, seq)
            n += 1
            if p is None:
                neighbours.add_total(weight, ts)
                continue
            # Inlined TokenNeighbours.add (this loop is the hottest of the worker).
            etype, _, item = q.partition(":")
            sketch = sketches.get(etype)
            if sketch is None:
                neighbours.add((item, etype), weight, ts)
            else:
                sketch.add(item, weight, ts)
        return n

    def to_state(self) -> list[Any]:
        return [self.neighbours.to_state(), [[p, o, s] for p, (o, s) in self.applied.items()]]

    def pack(self) -> bytes:
        return _packb(self.to_state())

    @classmethod
    def from_state(
        cls,
        state: list[Any],
        capacity: int = DEFAULT_CAPACITY,
        half_life: float | None = DEFAULT_HALF_LIFE,
    ) -> TokenState:
        neighbours, applied = state
        token = cls(capacity, half_life)
        token.neighbours = TokenNeighbours.from_state(neighbours, capacity, half_life)
        token.applied = {p: (o, s) for p, o, s in applied}
        return token

    @classmethod
    def unpack(
        cls,
        data: bytes,
        capacity: int = DEFAULT_CAPACITY,
        half_life: float | None = DEFAULT_HALF_LIFE,
    ) -> TokenState:
        return cls.from_state(
            msgpack.unpackb(data, raw=False, strict_map_key=False), capacity, half_life
        )
