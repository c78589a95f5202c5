"""Co-occurrence: which interaction tokens follow which, within a session (Etsy).

A token is ``(item_id, type)`` with ``type`` in view/click/favorite/cart/purchase.
Within one session of one user (the rule of :func:`models.sessions.same_session`:
same ``session_id``, else at most a 30-minute gap), every token ``q`` counts a
directional pair ``p -> q`` for each earlier token ``p`` among the last 20 tokens.
An occurrence of ``p`` counts a given ``q`` at most once, so ``P(q|p)`` below is
the (decayed) fraction of occurrences of ``p`` followed by ``q`` within the window.

Counts decay exponentially (half-life 7 days by default) with *forward decay*:
a weight ``w`` seen at time ``t`` is stored as ``w * 2**((t - ref) / half_life)``
against a per-object reference time ``ref``; reading at ``now`` multiplies by
``2**(-(now - ref) / half_life)``. Every stored value scales by the same factor,
so nothing is swept per tick, orderings never change with time, and ``ref`` is
only moved (one pass over the object) when the exponent would grow large.

Per source token, :class:`TokenNeighbours` keeps the decayed number of
occurrences of the token and, per target type, a :class:`SpaceSaving` sketch of
its top targets in bounded memory.

Space-Saving error bound (Metwally et al., 2005, weighted form). With capacity
``m`` and decayed total weight ``W`` added to a sketch (the sketch's counters
always sum to exactly ``W``):

* a monitored item's estimate never underestimates its true decayed count and
  overestimates it by at most its recorded ``error``: the value of the minimum
  counter when the item took that counter's place (itself at most ``W / m``);
* every item whose true decayed count exceeds ``W / m`` is monitored.

Forward decay multiplies every counter, every error and ``W`` by the same factor,
so both guarantees hold at any read time, for out-of-order timestamps too.

Examples
--------
>>> events = [
...     {"user_id": "u", "item_id": "A", "type": "click", "ts": 0.0},
...     {"user_id": "u", "item_id": "B", "type": "cart", "ts": 60.0},
...     {"user_id": "u", "item_id": "C", "type": "click", "ts": 120.0},
... ]
>>> table = build_neighbours(events)
>>> [(item, round(p, 3)) for item, _, p in table[("A", "click")].top("cart", 5, now=120.0)]
[('B', 1.0)]
>>> sorted(table[("A", "click")].top("click", 5, now=120.0))[0][0]
'C'
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator, Mapping
from heapq import heapify, heapreplace, nlargest
from operator import itemgetter
from typing import Any

from models.sessions import DEFAULT_GAP_SECONDS, INTERACTION_TYPES, Token, same_session

DAY = 86_400.0
#: Default half-life of every decayed count (seconds).
DEFAULT_HALF_LIFE = 7 * DAY
#: Default number of most recent session tokens a new token pairs with.
DEFAULT_WINDOW = 20
#: Default Space-Saving capacity per (source token, target type).
DEFAULT_CAPACITY = 200

LN2 = math.log(2.0)
# Move the reference time once stored values would exceed 2**REBASE_HALF_LIVES
# times their decayed value: far from float64 overflow (2**1023), and rare
# (once per 64 half-lives of activity, i.e. about once a year at 7 days).
REBASE_HALF_LIVES = 64.0

_TYPE_CODE = {name: code for code, name in enumerate(INTERACTION_TYPES)}
_intern = sys.intern


def decay_rate(half_life: float | None) -> float:
    """Exponential decay rate per second for a half-life (``None``/0/inf: no decay).

    >>> decay_rate(None), round(decay_rate(1.0), 4)
    (0.0, 0.6931)
    """
    if not half_life or math.isinf(half_life):
        return 0.0
    if half_life < 0:
        raise ValueError(f"half_life must be positive, got {half_life!r}")
    return LN2 / half_life


class SpaceSaving:
    """Top items by decayed weight in bounded memory (weighted Space-Saving).

    Parameters
    ----------
    capacity
        Counters kept; items with decayed count above ``total / capacity`` are
        guaranteed to be among them.
    half_life
        Seconds for a count to halve; ``None`` for no decay.

    Examples
    --------
    >>> sketch = SpaceSaving(capacity=2, half_life=10.0)
    >>> for item in "aabac":
    ...     sketch.add(item, 1.0, ts=0.0)
    >>> sketch.top(2, now=0.0)
    [('a', 3.0), ('c', 2.0)]
    >>> sketch.estimate("c", now=0.0)  # overestimated by at most its error
    (2.0, 1.0)
    >>> sketch.top(1, now=10.0)  # one half-life later
    [('a', 1.5)]
    """

    __slots__ = ("_heap", "capacity", "counts", "errors", "half_life", "rate", "ref")

    def __init__(
        self, capacity: int = DEFAULT_CAPACITY, half_life: float | None = DEFAULT_HALF_LIFE
    ):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.capacity = capacity
        self.half_life = half_life
        self.rate = decay_rate(half_life)
        self.ref: float | None = None
        self.counts: dict[str, float] = {}
        # Only items that replaced an evicted counter have a non-zero error.
        self.errors: dict[str, float] = {}
        # Lazy min-heap of (stored value at push, item), one entry per monitored
        # item, built at the first eviction (sketches that never fill never pay).
        # Increments do not touch it: counts only grow, so an entry is a lower
        # bound, and a stale top is re-pushed with its current value.
        self._heap: list[tuple[float, str]] | None = None

    def __len__(self) -> int:
        return len(self.counts)

    def __contains__(self, item: object) -> bool:
        return item in self.counts

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpaceSaving):
            return NotImplemented
        return (
            self.capacity == other.capacity
            and self.half_life == other.half_life
            and self.to_state() == other.to_state()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SpaceSaving(capacity={self.capacity}, half_life={self.half_life}, n={len(self)})"

    # -- decay -----------------------------------------------------------------
    def _scale(self, ts: float) -> float:
        """Forward-decay multiplier for a weight seen at ``ts`` (rebases if needed)."""
        ref = self.ref
        if ref is None:
            self.ref = ts
            return 1.0
        exponent = (ts - ref) * self.rate
        if exponent > REBASE_HALF_LIVES * LN2:
            self._rebase(ts)
            return 1.0
        return math.exp(exponent)

    def _rebase(self, ts: float) -> None:
        factor = math.exp(-(ts - self.ref) * self.rate)  # type: ignore[operator]
        self.counts = {k: v * factor for k, v in self.counts.items()}
        if self.errors:
            self.errors = {k: v * factor for k, v in self.errors.items()}
        if self._heap is not None:
            # Scaling by a positive factor is monotone: the heap order holds.
            self._heap = [(v * factor, k) for v, k in self._heap]
        self.ref = ts

    def decay_factor(self, now: float) -> float:
        """Multiplier turning stored values into decayed counts at ``now``."""
        if self.ref is None:
            return 1.0
        return math.exp(-(now - self.ref) * self.rate)

    # -- updates ---------------------------------------------------------------
    def add(self, item: str, weight: float = 1.0, ts: float = 0.0) -> None:
        """Add ``weight`` to ``item`` at time ``ts``."""
        stored = weight * self._scale(ts)
        counts = self.counts
        current = counts.get(item)
        if current is not None:
            counts[item] = current + stored
        elif len(counts) < self.capacity:
            counts[_intern(item)] = stored
        else:
            self._replace_min(item, stored)

    def _replace_min(self, item: str, stored: float) -> None:
        counts = self.counts
        heap = self._heap
        if heap is None:
            heap = self._heap = [(v, k) for k, v in counts.items()]
            heapify(heap)
        # The victim is the smallest (count, item): independent of the heap's
        # history, so a sketch rebuilt by from_state evicts the same item.
        while True:
            value, victim = heap[0]
            current = counts[victim]
            if current == value:
                break
            heapreplace(heap, (current, victim))
        floor = counts.pop(victim)
        self.errors.pop(victim, None)
        item = _intern(item)
        counts[item] = floor + stored
        heapreplace(heap, (floor + stored, item))
        if floor > 0.0:
            self.errors[item] = floor

    def add_many(self, items: Iterable[str], weights: Iterable[float], ts: Iterable[float]) -> None:
        """Add a batch: ``items[i]`` gets ``weights[i]`` at time ``ts[i]``."""
        counts = self.counts
        capacity = self.capacity
        scale = self._scale
        for item, weight, t in zip(items, weights, ts, strict=True):
            stored = weight * scale(t)
            counts = self.counts  # a rebase replaces the dict
            current = counts.get(item)
            if current is not None:
                counts[item] = current + stored
            elif len(counts) < capacity:
                counts[_intern(item)] = stored
            else:
                self._replace_min(item, stored)

    def merge(self, other: SpaceSaving) -> None:
        """Fold another sketch in (mergeable summaries, Agarwal et al. 2012).

        Counts add; the result keeps the ``capacity`` largest and the error
        bound becomes the sum of both sketches' bounds.
        """
        if other.ref is None:
            return
        if self.ref is None:
            self.ref = other.ref
        elif other.ref > self.ref:
            self._rebase(other.ref)  # keeps the shift below 1: no overflow
        shift = math.exp((other.ref - self.ref) * self.rate)
        min_self = min(self.counts.values()) if len(self.counts) >= self.capacity else 0.0
        min_other = (
            min(other.counts.values()) * shift if len(other.counts) >= other.capacity else 0.0
        )
        merged: dict[str, float] = {}
        errors: dict[str, float] = {}
        for item in self.counts.keys() | other.counts.keys():
            mine = self.counts.get(item)
            theirs = other.counts.get(item)
            # An unmonitored item may have had up to the other sketch's min count.
            merged[item] = (mine if mine is not None else min_self) + (
                theirs * shift if theirs is not None else min_other
            )
            err = (self.errors.get(item, 0.0) if mine is not None else min_self) + (
                other.errors.get(item, 0.0) * shift if theirs is not None else min_other
            )
            if err > 0.0:
                errors[item] = err
        keep = sorted(merged, key=lambda k: (-merged[k], k))[: self.capacity]
        self.counts = {_intern(k): merged[k] for k in keep}
        self._heap = None
        self.errors = {k: errors[k] for k in self.counts if k in errors}

    # -- reads -----------------------------------------------------------------
    def top(self, k: int, now: float) -> list[tuple[str, float]]:
        """The ``k`` items with the largest decayed counts at ``now``, largest first."""
        factor = self.decay_factor(now)
        best = nlargest(k, self.counts.items(), key=itemgetter(1))
        return [(item, stored * factor) for item, stored in best]

    def estimate(self, item: str, now: float) -> tuple[float, float]:
        """``(decayed count, max overestimate)`` of ``item``; ``(0, 0)`` if unmonitored."""
        stored = self.counts.get(item)
        if stored is None:
            return 0.0, 0.0
        factor = self.decay_factor(now)
        return stored * factor, self.errors.get(item, 0.0) * factor

    def total(self, now: float) -> float:
        """Decayed total weight ever added (the counters always sum to it)."""
        return math.fsum(self.counts.values()) * self.decay_factor(now)

    def min_count(self, now: float) -> float:
        """Smallest counter once full (the bound on any unmonitored count), else 0."""
        if len(self.counts) < self.capacity:
            return 0.0
        return min(self.counts.values()) * self.decay_factor(now)

    # -- serialisation -----------------------------------------------------------
    def to_state(self) -> list[Any]:
        """``[ref, {item: stored}, {item: stored_error}]``: plain, msgpack-able."""
        return [self.ref, dict(self.counts), dict(self.errors)]

    @classmethod
    def from_state(
        cls,
        state: list[Any] | tuple[Any, ...],
        capacity: int = DEFAULT_CAPACITY,
        half_life: float | None = DEFAULT_HALF_LIFE,
    ) -> SpaceSaving:
        """Rebuild from :meth:`to_state` output (configuration is not stored in it)."""
        sketch = cls(capacity, half_life)
        ref, counts, errors = state
        sketch.ref = ref
        sketch.counts = {_intern(k): v for k, v in counts.items()}
        sketch.errors = {_intern(k): v for k, v in errors.items()}
        return sketch


class TokenNeighbours:
    """Per source token: its decayed occurrence count and top targets per type.

    Callers count an occurrence of token ``p`` with :meth:`add_total` when ``p``
    is seen, and each pair ``p -> q`` with :meth:`add` on ``p``'s object, so
    ``P(q|p) = count(p -> q) / count(p)``.

    Examples
    --------
    >>> a_click = TokenNeighbours(capacity=10, half_life=None)
    >>> for _ in range(4):
    ...     a_click.add_total(1.0, ts=0.0)
    >>> a_click.add(("B", "cart"), 1.0, ts=0.0)
    >>> a_click.top("cart", 3, now=0.0)
    [('B', 1.0, 0.25)]
    """

    __slots__ = ("capacity", "half_life", "rate", "ref", "sketches", "total_stored")

    def __init__(
        self, capacity: int = DEFAULT_CAPACITY, half_life: float | None = DEFAULT_HALF_LIFE
    ):
        self.capacity = capacity
        self.half_life = half_life
        self.rate = decay_rate(half_life)
        self.ref: float | None = None
        self.total_stored = 0.0
        self.sketches: dict[str, SpaceSaving] = {}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenNeighbours):
            return NotImplemented
        return (
            self.capacity == other.capacity
            and self.half_life == other.half_life
            and self.to_state() == other.to_state()
        )

    __hash__ = None  # type: ignore[assignment]

    def add(self, target: Token, weight: float, ts: float) -> None:
        """Count ``weight`` for the pair (this token) -> ``target`` at ``ts``."""
        item_id, target_type = target
        sketch = self.sketches.get(target_type)
        if sketch is None:
            if target_type not in _TYPE_CODE:
                raise ValueError(f"unknown interaction type {target_type!r}")
            sketch = self.sketches[target_type] = SpaceSaving(self.capacity, self.half_life)
        sketch.add(item_id, weight, ts)

    def add_many(self, pairs: Iterable[tuple[Token, float, float]]) -> None:
        """Count a batch of ``(target, weight, ts)`` pairs."""
        add = self.add
        for target, weight, ts in pairs:
            add(target, weight, ts)

    def add_total(self, weight: float, ts: float) -> None:
        """Count ``weight`` occurrences of this token at ``ts``."""
        if self.ref is None:
            self.ref = ts
        exponent = (ts - self.ref) * self.rate
        if exponent > REBASE_HALF_LIVES * LN2:
            self.total_stored *= math.exp(-exponent)
            self.ref = ts
            exponent = 0.0
        self.total_stored += weight * math.exp(exponent)

    def total(self, now: float) -> float:
        """Decayed number of occurrences of this token at ``now``."""
        if self.ref is None:
            return 0.0
        return self.total_stored * math.exp(-(now - self.ref) * self.rate)

    def top(self, target_type: str, k: int, now: float) -> list[tuple[str, float, float]]:
        """Top ``k`` targets of one type: ``(item_id, decayed count, P(q|p))``."""
        sketch = self.sketches.get(target_type)
        if sketch is None:
            return []
        total = self.total(now)
        return [
            (item, count, count / total if total > 0.0 else 0.0)
            for item, count in sketch.top(k, now)
        ]

    def to_state(self) -> list[Any]:
        """``[ref, total_stored, {type: SpaceSaving state}]``."""
        return [
            self.ref,
            self.total_stored,
            {kind: sketch.to_state() for kind, sketch in self.sketches.items()},
        ]

    @classmethod
    def from_state(
        cls,
        state: list[Any] | tuple[Any, ...],
        capacity: int = DEFAULT_CAPACITY,
        half_life: float | None = DEFAULT_HALF_LIFE,
    ) -> TokenNeighbours:
        """Rebuild from :meth:`to_state` output with the same configuration."""
        ref, total_stored, sketches = state
        obj = cls(capacity, half_life)
        obj.ref = ref
        obj.total_stored = total_stored
        obj.sketches = {
            kind: SpaceSaving.from_state(s, capacity, half_life) for kind, s in sketches.items()
        }
        return obj


class SessionWindow:
    """One user's most recent tokens in the current session (at most ``size``).

    Examples
    --------
    >>> window = SessionWindow()
    >>> window.push("A", "click", 0.0)
    []
    >>> window.push("B", "cart", 60.0)
    [(('A', 'click'), 1.0)]
    >>> window.push("C", "click", 60.0 + 31 * 60)  # 31-minute gap: new session
    []
    """

    __slots__ = ("gap_seconds", "items", "last_ts", "session_id", "size", "types")

    def __init__(self, size: int = DEFAULT_WINDOW, gap_seconds: float = DEFAULT_GAP_SECONDS):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size!r}")
        self.size = size
        self.gap_seconds = gap_seconds
        self.items: list[str] = []
        self.types: list[str] = []
        self.last_ts: float | None = None
        self.session_id: str | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionWindow):
            return NotImplemented
        return (
            self.size == other.size
            and self.gap_seconds == other.gap_seconds
            and self.to_state() == other.to_state()
        )

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def tokens(self) -> list[Token]:
        """The window's tokens, oldest first."""
        return list(zip(self.items, self.types, strict=True))

    def push(
        self, item_id: str, type: str, ts: float, session_id: str | None = None
    ) -> list[tuple[Token, float]]:
        """Add a token; return the pairs ``(p, weight)`` meaning ``p -> new token``.

        Starts a new session first if :func:`~models.sessions.same_session` says
        so. Impressions (any type that is not an interaction) are ignored. Each
        earlier occurrence in the window counts once, and not at all if the new
        token already followed it (so ``P(q|p) <= 1``); identical tokens do not
        pair with themselves; repeated sources merge into one weight.
        """
        if type not in _TYPE_CODE:
            return []
        items, types = self.items, self.types
        last_ts = self.last_ts
        if not same_session(last_ts, self.session_id, ts, session_id, self.gap_seconds):
            items.clear()
            types.clear()
            last_ts = None
        # Sources are the tokens after the last earlier occurrence of the new token.
        start = 0
        if item_id in items:  # C-speed check first: most pushes skip the scan
            for j in range(len(items) - 1, -1, -1):
                if items[j] == item_id and types[j] == type:
                    start = j + 1
                    break
        sources = list(zip(items[start:], types[start:], strict=True))
        if len(set(sources)) == len(sources):
            pairs = [(p, 1.0) for p in sources]
        else:
            weights: dict[Token, float] = {}
            for p in sources:
                weights[p] = weights.get(p, 0.0) + 1.0
            pairs = list(weights.items())
        items.append(_intern(item_id))
        types.append(_intern(type))
        if len(items) > self.size:
            del items[0]
            del types[0]
        self.last_ts = ts if last_ts is None else max(last_ts, ts)
        self.session_id = session_id
        return pairs

    def push_many(
        self, events: Iterable[Mapping[str, Any]]
    ) -> list[tuple[Token, Token, float, float]]:
        """Push one user's events in order; return ``(p, q, weight, ts)`` pairs."""
        out: list[tuple[Token, Token, float, float]] = []
        push = self.push
        for e in events:
            item_id, etype, ts = e["item_id"], e["type"], e["ts"]
            pairs = push(item_id, etype, ts, e.get("session_id"))
            if pairs:
                q = (item_id, etype)
                out.extend([(p, q, w, ts) for p, w in pairs])
        return out

    def to_state(self) -> list[Any]:
        """``[last_ts, session_id, [item ids], [type codes]]``."""
        return [
            self.last_ts,
            self.session_id,
            list(self.items),
            [_TYPE_CODE[t] for t in self.types],
        ]

    @classmethod
    def from_state(
        cls,
        state: list[Any] | tuple[Any, ...],
        size: int = DEFAULT_WINDOW,
        gap_seconds: float = DEFAULT_GAP_SECONDS,
    ) -> SessionWindow:
        """Rebuild from :meth:`to_state` output."""
        last_ts, session_id, items, codes = state
        window = cls(size, gap_seconds)
        window.last_ts = last_ts
        window.session_id = session_id
        window.items = [_intern(i) for i in items]
        window.types = [INTERACTION_TYPES[c] for c in codes]
        return window


def iter_pairs(
    events: Iterable[Mapping[str, Any]],
    windows: dict[str, SessionWindow] | None = None,
    size: int = DEFAULT_WINDOW,
    gap_seconds: float = DEFAULT_GAP_SECONDS,
) -> Iterator[tuple[Token | None, Token, float, float]]:
    """Yield what an event stream counts, in the given order.

    Each interaction yields ``(None, q, 1.0, ts)`` (one occurrence of ``q``, for
    :meth:`TokenNeighbours.add_total`) and then its pairs ``(p, q, weight, ts)``.
    ``windows`` (user id -> window) is updated in place when given, so a stream
    can be processed in chunks.
    """
    if windows is None:
        windows = {}
    for e in events:
        etype = e["type"]
        if etype not in _TYPE_CODE:
            continue
        user = e["user_id"]
        window = windows.get(user)
        if window is None:
            window = windows[user] = SessionWindow(size, gap_seconds)
        q = (e["item_id"], etype)
        ts = e["ts"]
        yield None, q, 1.0, ts
        for p, w in window.push(q[0], etype, ts, e.get("session_id")):
            yield p, q, w, ts


def build_neighbours(
    events: Iterable[Mapping[str, Any]],
    capacity: int = DEFAULT_CAPACITY,
    half_life: float | None = DEFAULT_HALF_LIFE,
    size: int = DEFAULT_WINDOW,
    gap_seconds: float = DEFAULT_GAP_SECONDS,
    table: dict[Token, TokenNeighbours] | None = None,
) -> dict[Token, TokenNeighbours]:
    """Co-occurrence state of a whole event stream (replays, trainer, tests).

    Events are processed in the given order (sort by ``ts`` for a replay);
    ``table`` is updated in place if given.
    """
    if table is None:
        table = {}
    for p, q, weight, ts in iter_pairs(events, None, size, gap_seconds):
        key = q if p is None else p
        neighbours = table.get(key)
        if neighbours is None:
            neighbours = table[key] = TokenNeighbours(capacity, half_life)
        if p is None:
            neighbours.add_total(weight, ts)
        else:
            neighbours.add(q, weight, ts)
    return table
