"""Checksums of streaming state: equal when two runs hold the same state.

One checksum per store and partition, over every key's value, so that a
replay, a rebuild and a live worker can be compared without shipping the state:

* **user states** are bit-identical whenever the same events reached each user
  in the same order (a user's events all go through one partition): the
  checksum is a SHA-256 over the sorted keys and their packed bytes
  (:meth:`~models.user_state.UserState.pack`);
* **token states** cannot be: the pair records of one token come from every
  source partition, and the order in which they meet differs between runs, so
  the float sums differ in the last bits; the forward-decay reference time is
  the first record that arrived; and the redelivery guard names source offsets,
  which differ between a broker and a replay. A token is therefore checksummed
  over its neighbours only: the occurrence count and every kept target's count
  (and Space-Saving error), each **decayed to a common time** (the log of the
  value at time 0, which no reference time changes) and **rounded to 1e-6
  relative** (six decimals of the natural log), without the guard. Two values
  a few ulps apart round alike except with odds of about 1e-7 per value. When a
  sketch is full (more targets than its capacity), the order of arrival also
  decides which targets are kept: tokens that evicted are equal across runs
  only when their records arrived in the same order.

Examples
--------
>>> from models.token_state import TokenState
>>> a, b = TokenState(10, 3600.0), TokenState(10, 3600.0)
>>> records = [(None, "click:x", 1.0, 100.0, 0, 1, 0),
...            ("click:x", "cart:y", 0.1, 100.0, 1, 1, 0),
...            ("click:x", "cart:y", 0.2, 4000.0, 2, 9, 0),
...            ("click:x", "cart:y", 0.7, 9.0, 3, 3, 0)]
>>> _ = a.fold(records)  # from four source partitions: they may meet in any order
>>> _ = b.fold(records[::-1])  # another order: another ref, other last bits, other guard
>>> a.pack() == b.pack()
False
>>> token_fingerprint(a) == token_fingerprint(b)
True
>>> users = {"u1": b"packed-1", "u2": b"packed-2"}
>>> user_checksum(users) == user_checksum(dict(reversed(users.items())))
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from models.cooccurrence import SpaceSaving, TokenNeighbours
from models.token_state import TokenState

#: Decimals of the natural log kept per decayed value: 1e-6 relative.
LOG_DECIMALS = 6


def _log_at_zero(stored: float, ref: float | None, rate: float) -> float | str:
    """``log`` of a forward-decayed value brought back to time 0, rounded (``"0"`` for none)."""
    if stored <= 0.0:
        return "0"
    return round(math.log(stored) + (ref or 0.0) * rate, LOG_DECIMALS)


def _sketch_fingerprint(sketch: SpaceSaving) -> list[Any]:
    ref, rate = sketch.ref, sketch.rate
    counts = [[item, _log_at_zero(v, ref, rate)] for item, v in sorted(sketch.counts.items())]
    errors = [[item, _log_at_zero(v, ref, rate)] for item, v in sorted(sketch.errors.items())]
    return [counts, errors]


def neighbours_fingerprint(neighbours: TokenNeighbours) -> list[Any]:
    """A token's neighbours as order-free values: decayed to time 0, logged, rounded."""
    return [
        _log_at_zero(neighbours.total_stored, neighbours.ref, neighbours.rate),
        [[kind, _sketch_fingerprint(s)] for kind, s in sorted(neighbours.sketches.items())],
    ]


def token_fingerprint(token: TokenState) -> bytes:
    """What a token's checksum covers: its neighbours (see the module docstring), packed."""
    return msgpack.packb(neighbours_fingerprint(token.neighbours), use_bin_type=True)


def _digest(values: Mapping[str, bytes], transform: Callable[[bytes], bytes]) -> str:
    digest = hashlib.sha256()
    for key in sorted(values):
        encoded = key.encode("utf-8", "surrogatepass")
        value = transform(values[key])
        digest.update(len(encoded).to_bytes(4, "big") + encoded)
        digest.update(len(value).to_bytes(4, "big") + value)
    return digest.hexdigest()


def user_checksum(values: Mapping[str, bytes]) -> str:
    """SHA-256 over the sorted user ids and their packed states, exactly."""
    return _digest(values, lambda packed: packed)


def token_checksum(values: Mapping[str, bytes], capacity: int, half_life: float | None) -> str:
    """SHA-256 over the sorted token keys and :func:`token_fingerprint` of their packed states."""
    return _digest(
        values, lambda packed: token_fingerprint(TokenState.unpack(packed, capacity, half_life))
    )


def store_checksum(
    store: str, values: Mapping[str, bytes], capacity: int, half_life: float | None
) -> dict[str, Any]:
    """``{"keys": n, "sha256": hex}`` of one partition of ``store`` (``users`` or ``tokens``).

    ``capacity`` and ``half_life`` are the fold's (``StateConfig.cooccurrence_capacity``
    and ``half_life``): they unpack token states.
    """
    if store == "users":
        checksum = user_checksum(values)
    elif store == "tokens":
        checksum = token_checksum(values, capacity, half_life)
    else:
        raise ValueError(f"unknown store {store!r}; expected users or tokens")
    return {"keys": len(values), "sha256": checksum}
