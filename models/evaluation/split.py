"""The time split and what every row and metric reads from it.

:func:`split_by_time` cuts a log at ``cut`` (default: the last timestamp minus
``test_hours``): train holds the events with ``ts < cut``, test those with
``cut <= ts <= cut + test_hours`` (closed, so the newest event is tested).
:class:`EvalData` is that split with the look-ups the rows share: the training
catalogue, item categories, each user's events in time order, and the
protocol's event types (:class:`Protocol`).

Examples
--------
>>> evs = [{"user_id": "u", "item_id": i, "type": "click", "ts": t}
...        for i, t in (("a", 0.0), ("b", 3600.0), ("c", 7200.0))]
>>> data = EvalData.split(evs, test_hours=1)
>>> [e["item_id"] for e in data.train], [e["item_id"] for e in data.test], data.cut
(['a'], ['b', 'c'], 3600.0)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from models.sessions import DEFAULT_GAP_SECONDS, INTERACTION_TYPES

Event = dict[str, Any]

#: Event types that are purchase intent: the targets (Etsy's P).
TARGET_TYPES: tuple[str, ...] = ("cart", "purchase")
#: Event types that count as a "click" seed (Taobao's page view is a click).
CLICK_TYPES: tuple[str, ...] = ("view", "click")


def split_by_time(
    events: Iterable[Event], test_hours: float = 24.0, cut: float | None = None
) -> tuple[list[Event], list[Event], float]:
    """Split events into train (before the cut) and test (the next ``test_hours``).

    Parameters
    ----------
    events
        Canonical events (``ts`` in epoch seconds), in any order.
    test_hours
        Length of the test window.
    cut
        Start of the test window; default: the last timestamp minus ``test_hours``.

    Returns
    -------
    train, test, cut
        Both lists in time order (ties keep input order).

    Examples
    --------
    >>> evs = [{"ts": t} for t in (7200.0, 0.0, 3600.0)]
    >>> train, test, cut = split_by_time(evs, test_hours=1)
    >>> [e["ts"] for e in train], [e["ts"] for e in test], cut
    ([0.0], [3600.0, 7200.0], 3600.0)
    """
    if test_hours <= 0:
        raise ValueError(f"test_hours must be positive, got {test_hours}")
    ordered = sorted(events, key=lambda e: e["ts"])
    window = test_hours * 3600.0
    if cut is None:
        if not ordered:
            raise ValueError("no events to split")
        cut = ordered[-1]["ts"] - window
    end = cut + window
    train = [e for e in ordered if e["ts"] < cut]
    test = [e for e in ordered if cut <= e["ts"] <= end]
    return train, test, float(cut)


@dataclass(frozen=True)
class Protocol:
    """Which events seed and which are targets, and the numbers of BASELINES.md.

    Parameters
    ----------
    seed_types
        Event types of "click" seeds (item-to-item, click-to-cart). A log with
        one interaction type (MovieLens ratings) uses that type for both.
    target_types
        Event types that are targets.
    k
        Candidates per seed (Etsy: 200).
    seeds
        Seeds per target: the most recent distinct ones.
    home_k
        The lengths of home lists scored (hit@20, hit@100).
    gap_seconds
        A longer gap between a user's events starts a new session (unless the
        events carry a ``session_id``).
    """

    seed_types: tuple[str, ...] = CLICK_TYPES
    target_types: tuple[str, ...] = TARGET_TYPES
    k: int = 200
    seeds: int = 4
    home_k: tuple[int, ...] = (20, 100)
    gap_seconds: float = DEFAULT_GAP_SECONDS

    def __post_init__(self) -> None:
        for name in ("seed_types", "target_types"):
            types = getattr(self, name)
            unknown = [t for t in types if t not in INTERACTION_TYPES]
            if not types or unknown:
                raise ValueError(
                    f"{name}: {', '.join(unknown) or 'empty'}; "
                    f"expected some of {', '.join(INTERACTION_TYPES)}"
                )
        if self.k <= 0 or self.seeds <= 0 or not self.home_k or min(self.home_k) <= 0:
            raise ValueError("k, seeds and home_k must be positive")


@dataclass
class EvalData:
    """A time split and the look-ups rows share (built once per run).

    Attributes
    ----------
    train, test
        Interaction events (impressions dropped) before and after the cut, in time order.
    cut
        Start of the test window: the time at which home lists are asked.
    protocol
        Seed and target types, k, seeds per target.
    raw_train
        Every event before the cut, impressions included (what the served
        state folds: the bandits learn from impressions); ``train`` if not given.
    """

    train: list[Event]
    test: list[Event]
    cut: float
    protocol: Protocol = field(default_factory=Protocol)
    raw_train: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.raw_train:
            self.raw_train = self.train

    @classmethod
    def split(
        cls,
        events: Iterable[Event],
        test_hours: float = 24.0,
        protocol: Protocol | None = None,
        cut: float | None = None,
    ) -> EvalData:
        """Split ``events`` at ``cut`` or ``test_hours`` back (train and test: interactions)."""
        events = list(events)
        interactions = [e for e in events if e["type"] in INTERACTION_TYPES]
        train, test, cut = split_by_time(interactions, test_hours, cut)
        raw_train = sorted((e for e in events if e["ts"] < cut), key=lambda e: e["ts"])
        return cls(train, test, cut, protocol or Protocol(), raw_train)

    @cached_property
    def catalogue(self) -> list[str]:
        """Items with a training interaction, sorted: what a model can recommend."""
        return sorted({e["item_id"] for e in self.train})

    @cached_property
    def categories(self) -> dict[str, str]:
        """Item -> category from events carrying ``item.category`` (the latest wins)."""
        found: dict[str, str] = {}
        for event in (*self.train, *self.test):
            category = (event.get("item") or {}).get("category")
            if category is not None:
                found[event["item_id"]] = category
        return found

    @cached_property
    def train_by_user(self) -> dict[str, list[Event]]:
        """Each user's training events in time order."""
        return _by_user(self.train)

    @cached_property
    def all_by_user(self) -> dict[str, list[Event]]:
        """Each user's events (train then test) in time order."""
        return _by_user([*self.train, *self.test])

    @cached_property
    def test_users(self) -> list[str]:
        """Users with a target in the test window, in order of their first target."""
        targets = self.protocol.target_types
        return list(dict.fromkeys(e["user_id"] for e in self.test if e["type"] in targets))

    @cached_property
    def train_types(self) -> frozenset[str]:
        """Interaction types present in the training events."""
        return frozenset(e["type"] for e in self.train)

    def items_of_type(self, etype: str) -> frozenset[str]:
        """Items with a training event of ``etype`` (the tokens of that type a model knows)."""
        return self._items_of_type.get(etype, frozenset())

    @cached_property
    def _items_of_type(self) -> dict[str, frozenset[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for event in self.train:
            found[event["type"]].add(event["item_id"])
        return {etype: frozenset(items) for etype, items in found.items()}

    def summary(self) -> dict[str, Any]:
        """Counts for the report's header."""
        return {
            "train_events": len(self.train),
            "test_events": len(self.test),
            "cut": self.cut,
            "users": len({e["user_id"] for e in (*self.train, *self.test)}),
            "train_items": len(self.catalogue),
            "test_users": len(self.test_users),
            "targets": sum(e["type"] in self.protocol.target_types for e in self.test),
        }


def _by_user(events: Sequence[Event]) -> dict[str, list[Event]]:
    users: dict[str, list[Event]] = defaultdict(list)
    for event in events:  # already in time order
        users[event["user_id"]].append(event)
    return dict(users)
