"""One user's streaming state and the one fold that updates it.

Everything the stream keeps per user lives in one value, with one redelivery
guard, updated in one pass per event (:meth:`UserState.fold_one`):

* the recent history (the last ``history_length`` canonical events, each kept
  msgpack-encoded, also capped in bytes so no value outgrows a changelog record);
* the redelivery guard: 8-byte digests of the last ``dedupe_window`` event ids,
  so an event delivered twice (at-least-once delivery after a crash or a
  rebalance) changes nothing the second time;
* the trajectory (:class:`~models.trajectory.UserTrajectory`: seeds, engagement
  weights, purchases), the session window
  (:class:`~models.cooccurrence.SessionWindow`) and the Thompson-sampling bandit
  (:class:`~models.bandit.UserBandit`).

Folding an event also yields the co-occurrence **pair records** it counts: an
occurrence of its token ``q`` (``(None, q)``) and each pair ``p -> q`` with the
earlier tokens of its session window. Pair records go to the token's owner
(the ``cooccurrence-pairs`` topic in the worker, a dict in
:class:`~models.stream_state.StreamState`) where :mod:`models.token_state`
folds them.

:func:`fold_message` is the per-message entry point the worker, replay,
evaluation and benchmarks all call: it numbers each pair record by
``(source partition, source offset, sequence)``, which is what makes the token
side exactly-once (a message folded again from the same user state yields the
same numbers, and :class:`~models.token_state.TokenState` skips numbers it has
applied).

Examples
--------
>>> config = StateConfig(half_life=None)
>>> users = {}
>>> get = lambda uid: users.setdefault(uid, UserState(config))
>>> events = [
...     {"user_id": "u", "item_id": "a", "type": "click", "ts": 0.0, "event_id": "e1"},
...     {"user_id": "u", "item_id": "b", "type": "cart", "ts": 60.0, "event_id": "e2"},
...     {"user_id": "u", "item_id": "b", "type": "cart", "ts": 60.0, "event_id": "e2"},
... ]
>>> accepted, pairs = fold_message(events, get, partition=0, offset=7)
>>> [e["event_id"] for e in accepted]
['e1', 'e2']
>>> [(p, q) for p, q, *_ in pairs]
[(None, 'click:a'), (None, 'cart:b'), ('click:a', 'cart:b')]
>>> [r[4:] for r in pairs]
[(0, 7, 0), (0, 7, 1), (0, 7, 2)]
>>> again = UserState.unpack(users["u"].pack(), config)
>>> again == users["u"], again.fold_one(events[0]) is None
(True, True)
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from models.bandit import UserBandit
from models.cooccurrence import DEFAULT_HALF_LIFE, SessionWindow
from models.sessions import DEFAULT_GAP_SECONDS, INTERACTION_TYPES
from models.trajectory import UserTrajectory

#: Version of :meth:`UserState.pack`'s layout (the first element of the packed array).
PACK_VERSION = 2

#: The optional fields of a canonical event, in the order a history entry keeps them.
_OPTIONAL = ("session_id", "value", "context", "item")
_TYPES = ("view", "click", "favorite", "cart", "purchase", "impression")
_TYPE_CODE = {name: code for code, name in enumerate(_TYPES)}


def compact_event(event: Mapping[str, Any]) -> bytes:
    """One history entry: the event without its user id, as a positional msgpack array.

    About half the size of the event's map (no key names, no repeated user id).

    >>> e = {"user_id": "u", "item_id": "i", "type": "cart", "ts": 5.0, "event_id": "x"}
    >>> expand_event(compact_event(e), "u") == e
    True
    """
    entry = [event["item_id"], _TYPE_CODE[event["type"]], event["ts"], event["event_id"]]
    extra = [event.get(name) for name in _OPTIONAL]
    while extra and extra[-1] is None:
        extra.pop()
    return _packb(entry + extra)


def expand_event(entry: bytes, user_id: str) -> dict[str, Any]:
    """The canonical event a :func:`compact_event` entry stands for."""
    fields = msgpack.unpackb(entry, raw=False, strict_map_key=False)
    event = {"user_id": user_id, "item_id": fields[0], "type": _TYPES[fields[1]], "ts": fields[2]}
    for name, value in zip(_OPTIONAL, fields[4:], strict=False):
        if value is not None:
            event[name] = value
    event["event_id"] = fields[3]
    return event


_INTERACTIONS = frozenset(INTERACTION_TYPES)
_packb = msgpack.Packer(use_bin_type=True).pack

#: A pair record: (source token key or None for an occurrence, target token key,
#: weight, ts, source partition, source offset, sequence within that message).
PairRecord = tuple[str | None, str, float, float, int, int, int]


def token_key(item_id: str, etype: str) -> str:
    """Key of an interaction token: ``type:item_id`` (types hold no colon).

    >>> token_key("sku-1", "cart"), split_token_key("cart:sku-1")
    ('cart:sku-1', ('sku-1', 'cart'))
    """
    return f"{etype}:{item_id}"


def split_token_key(key: str) -> tuple[str, str]:
    """``(item_id, type)`` of a :func:`token_key`."""
    etype, _, item_id = key.partition(":")
    return item_id, etype


@dataclass(frozen=True, slots=True)
class StateConfig:
    """How much each user's state keeps and how fast it forgets.

    The worker builds it from its settings (``agents.settings.Settings``);
    replay and evaluation use the same values, so they fold identically.
    """

    #: Events kept in the user's history (newest first when read).
    history_length: int = 200
    #: Bytes of encoded events kept in the history at most (oldest dropped first).
    history_max_bytes: int = 128 * 1024
    #: Bytes of one packed user state at most: far below a 1 MB changelog record,
    #: whatever the ids (the oldest history, then the oldest tokens, go first).
    max_state_bytes: int = 512 * 1024
    #: Event ids remembered to drop redeliveries.
    dedupe_window: int = 1000
    #: Half-life of engagement weights, bandit evidence and co-occurrence counts.
    half_life: float | None = DEFAULT_HALF_LIFE
    #: Events without a session_id start a new session after this gap (seconds).
    session_gap: float = DEFAULT_GAP_SECONDS
    #: Earlier session tokens a new token pairs with.
    cooccurrence_window: int = 20
    #: Space-Saving capacity per (source token, target type).
    cooccurrence_capacity: int = 200
    #: An impression without engagement within this many seconds is a bandit failure.
    impression_window: float = 1800.0
    #: Half-life of the popularity counts (the new-user fallback).
    popularity_half_life: float | None = 86_400.0

    def __post_init__(self) -> None:
        if self.history_length < 1 or self.dedupe_window < 1:
            raise ValueError("history_length and dedupe_window must be at least 1")
        if self.history_max_bytes < 1024:
            raise ValueError("history_max_bytes must be at least 1024")


def event_digest(event_id: str) -> bytes:
    """8-byte digest of an event id: what the redelivery guard remembers."""
    return hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()


class SeenIds:
    """The digests of the last ``capacity`` event ids applied, oldest first.

    Kept as one ``bytearray`` of 8-byte digests (8 bytes an id; a set of bytes
    objects would cost ~100): a look-up is a C-speed ``find`` over at most
    ``8 * capacity`` bytes, counted only at 8-byte boundaries.

    >>> seen = SeenIds(2)
    >>> [seen.admit(d) for d in (b"a" * 8, b"b" * 8, b"a" * 8, b"c" * 8)]
    [True, True, False, True]
    >>> b"a" * 8 in seen, len(seen)  # the oldest was forgotten
    (False, 2)
    """

    __slots__ = ("blob", "capacity")

    def __init__(self, capacity: int, packed: bytes = b"") -> None:
        self.capacity = capacity
        self.blob = bytearray(packed[-8 * capacity :] if packed else b"")

    def __len__(self) -> int:
        return len(self.blob) // 8

    def __contains__(self, digest: bytes) -> bool:
        blob = self.blob
        start = 0
        while True:
            found = blob.find(digest, start)
            if found < 0:
                return False
            if not found & 7:
                return True
            start = found + 1

    def admit(self, digest: bytes) -> bool:
        """True (and remembered) the first time ``digest`` is offered."""
        if digest in self:
            return False
        blob = self.blob
        blob += digest
        if len(blob) > 8 * self.capacity:
            del blob[:8]
        return True

    def pack(self) -> bytes:
        return bytes(self.blob)


class UserState:
    """Everything the stream keeps for one user; see the module docstring."""

    __slots__ = (
        "bandit",
        "config",
        "history",
        "history_bytes",
        "seen",
        "trajectory",
        "user_id",
        "window",
    )

    def __init__(self, config: StateConfig, user_id: str = "") -> None:
        self.config = config
        #: Whose state this is (history entries leave the user id out).
        self.user_id = user_id
        #: Compact history entries (:func:`compact_event`), oldest first.
        self.history: deque[bytes] = deque()
        self.history_bytes = 0
        self.seen = SeenIds(config.dedupe_window)
        self.trajectory = UserTrajectory(half_life=config.half_life)
        self.window = SessionWindow(config.cooccurrence_window, config.session_gap)
        self.bandit = UserBandit(half_life=config.half_life, window=config.impression_window)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UserState):
            return NotImplemented
        return self.config == other.config and self.pack() == other.pack()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"UserState(events={len(self.history)}, seen={len(self.seen)})"

    # -- the fold --------------------------------------------------------------
    def fold_one(
        self, event: Mapping[str, Any]
    ) -> list[tuple[str | None, str, float, float]] | None:
        """Apply one canonical event; ``None`` if it was applied before.

        Returns the co-occurrence records it counts: ``(None, q, 1.0, ts)`` for
        the occurrence of its token ``q``, then ``(p, q, weight, ts)`` per pair.
        Impressions count nothing (they only feed the bandit and ``last_seen``).
        """
        digest = event_digest(event["event_id"])
        if digest in self.seen:
            return None
        encoded = compact_event(event)  # first: an event that cannot be encoded changes nothing
        if not self.user_id:
            self.user_id = event["user_id"]
        self.seen.admit(digest)
        self._remember(encoded)
        self.trajectory.update(event)
        self.bandit.update(event)
        etype = event["type"]
        if etype not in _INTERACTIONS:
            return []
        item_id = event["item_id"]
        ts = event["ts"]
        q = token_key(item_id, etype)
        records: list[tuple[str | None, str, float, float]] = [(None, q, 1.0, ts)]
        for (p_item, p_type), weight in self.window.push(
            item_id, etype, ts, event.get("session_id")
        ):
            records.append((token_key(p_item, p_type), q, weight, ts))
        return records

    def _remember(self, encoded: bytes) -> None:
        history = self.history
        history.append(encoded)
        self.history_bytes += len(encoded)
        limit_n = self.config.history_length
        limit_bytes = self.config.history_max_bytes
        while len(history) > limit_n or (self.history_bytes > limit_bytes and len(history) > 1):
            self.history_bytes -= len(history.popleft())

    # -- reads -----------------------------------------------------------------
    def events(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The kept events, newest first (at most ``limit``)."""
        n = len(self.history) if limit is None else min(limit, len(self.history))
        out = []
        for i in range(1, n + 1):
            out.append(expand_event(self.history[-i], self.user_id))
        return out

    def __len__(self) -> int:
        return len(self.history)

    # -- serialisation ---------------------------------------------------------
    def to_state(self) -> list[Any]:
        """A plain msgpack-able list (configuration not included)."""
        return [
            PACK_VERSION,
            self.user_id,
            list(self.history),
            self.seen.pack(),
            self.trajectory.to_state(),
            self.window.to_state(),
            self.bandit.to_state(),
        ]

    def pack(self) -> bytes:
        """The state as one msgpack value (what changelogs and snapshots store).

        A value over ``max_state_bytes`` (only reachable with very long ids)
        is shrunk first: the older half of the history, then of the recent
        tokens, then pending impressions, until it fits.
        """
        packed = _packb(self.to_state())
        while len(packed) > self.config.max_state_bytes and self._shrink():
            packed = _packb(self.to_state())
        return packed

    def _shrink(self) -> bool:
        """Drop the oldest half of the biggest droppable part; False if nothing is left."""
        if len(self.history) > 1:
            for _ in range(len(self.history) // 2):
                self.history_bytes -= len(self.history.popleft())
            return True
        trajectory = self.trajectory
        if len(trajectory) > 1:
            half = len(trajectory) // 2
            del trajectory.items[:half]
            del trajectory.type_codes[:half]
            del trajectory.timestamps[:half]
            return True
        bandit = self.bandit
        if bandit.pending_items or bandit.pending_sellers:
            bandit.pending_items.clear()
            bandit.pending_sellers.clear()
            return True
        if len(trajectory.purchased) > 1:
            for item in list(trajectory.purchased)[: len(trajectory.purchased) // 2]:
                del trajectory.purchased[item]
            return True
        # Last resort: the weakest half of every bounded sketch of weights and arms.
        shrunk = False
        for sketch in (trajectory.item_weights, trajectory.seller_weights):
            if len(sketch.counts) > 1:
                for item in sorted(sketch.counts, key=sketch.counts.get)[: len(sketch.counts) // 2]:
                    del sketch.counts[item]
                    sketch.errors.pop(item, None)
                sketch._heap = None
                shrunk = True
        for arms in (bandit.items, bandit.sellers):
            if len(arms) > 1:
                for arm in sorted(arms, key=lambda a: sum(arms[a]))[: len(arms) // 2]:
                    del arms[arm]
                shrunk = True
        return shrunk

    @classmethod
    def from_state(cls, state: list[Any], config: StateConfig) -> UserState:
        if state[0] != PACK_VERSION:
            raise ValueError(f"user state version {state[0]!r}; this code reads {PACK_VERSION}")
        _, user_id, history, seen, trajectory, window, bandit = state
        user = cls(config, user_id)
        user.history = deque(history)
        user.history_bytes = sum(map(len, history))
        user.seen = SeenIds(config.dedupe_window, seen)
        user.trajectory = UserTrajectory.from_state(trajectory, half_life=config.half_life)
        user.window = SessionWindow.from_state(
            window, config.cooccurrence_window, config.session_gap
        )
        user.bandit = UserBandit.from_state(
            bandit, half_life=config.half_life, window=config.impression_window
        )
        return user

    @classmethod
    def unpack(cls, data: bytes, config: StateConfig) -> UserState:
        """Rebuild from :meth:`pack` output."""
        return cls.from_state(msgpack.unpackb(data, raw=False, strict_map_key=False), config)


def fold_message(
    events: Iterable[Mapping[str, Any]],
    get_user: Callable[[str], UserState],
    partition: int,
    offset: int,
    on_accept: Callable[[str], Any] | None = None,
) -> tuple[list[Mapping[str, Any]], list[PairRecord]]:
    """Fold one message's canonical events, in order, into their users' states.

    Parameters
    ----------
    events
        Validated events (one message's worth), in the order they arrived.
    get_user
        User id -> that user's live state (created when new).
    partition, offset
        Where the message came from: they number the pair records, so folding
        the same message again from the same state yields the same numbers.
    on_accept
        Called with the user id of every event applied (e.g. to mark it dirty).

    Returns
    -------
    accepted, pair_records
        The events applied now (redeliveries dropped) and the co-occurrence
        records they count, each ``(p, q, weight, ts, partition, offset, seq)``.
    """
    accepted: list[Mapping[str, Any]] = []
    records: list[PairRecord] = []
    seq = 0
    for event in events:
        user_id = event["user_id"]
        counted = get_user(user_id).fold_one(event)
        if counted is None:
            continue
        accepted.append(event)
        if on_accept is not None:
            on_accept(user_id)
        for p, q, weight, ts in counted:
            records.append((p, q, weight, ts, partition, offset, seq))
            seq += 1
    return accepted, records
