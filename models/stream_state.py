"""The worker's streaming state in one process: for replay, evaluation, benchmarks and rebuilds.

A worker holds, for the partitions it owns, user states
(:class:`~models.user_state.UserState`), token states
(:class:`~models.token_state.TokenState`), an item catalogue and popularity
counts, and folds every message with :func:`~models.user_state.fold_message`
and :meth:`~models.token_state.TokenState.fold`. :class:`StreamState` holds
the same for every partition at once and folds with the same functions, so
what it computes from a stream of events is what the workers would serve after
the same events: offline evaluation, ``replay`` and the benchmarks read it, and
a worker that lost its broker rebuilds from it.

Examples
--------
>>> state = StreamState(StateConfig(half_life=None))
>>> state.apply([
...     {"user_id": "u", "item_id": "a", "type": "click", "ts": 0.0, "event_id": "1"},
...     {"user_id": "u", "item_id": "b", "type": "cart", "ts": 9.0, "event_id": "2"},
...     {"user_id": "u", "item_id": "b", "type": "cart", "ts": 9.0, "event_id": "2"},
... ])
2
>>> state.user("u").trajectory.seeds("click")
['a']
>>> state.neighbours(("a", "click")).top("cart", 3, now=9.0)
[('b', 1.0, 1.0)]
>>> state.popularity.top(1, now=9.0)[0][0]
'b'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from models.catalogue import ItemCatalogue
from models.cooccurrence import TokenNeighbours
from models.popularity import Popularity
from models.sessions import Token
from models.token_state import TokenState
from models.user_state import StateConfig, UserState, fold_message, token_key

__all__ = ["StateConfig", "StreamState"]


class StreamState:
    """Every user's and token's state, folded exactly as the workers fold them."""

    def __init__(self, config: StateConfig | None = None) -> None:
        self.config = config or StateConfig()
        self.users: dict[str, UserState] = {}
        self.tokens: dict[str, TokenState] = {}
        self.catalogue = ItemCatalogue()
        self.popularity = Popularity(half_life=self.config.popularity_half_life)
        #: Messages folded so far: the offsets that number pair records here.
        self.messages = 0

    def _user(self, user_id: str) -> UserState:
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = UserState(self.config)
        return user

    def _token(self, key: str) -> TokenState:
        token = self.tokens.get(key)
        if token is None:
            config = self.config
            token = self.tokens[key] = TokenState(config.cooccurrence_capacity, config.half_life)
        return token

    def apply(self, events: Iterable[Mapping[str, Any]], message_size: int = 1000) -> int:
        """Fold canonical events in the given order; return how many were new.

        Events are folded in messages of ``message_size`` (the number only
        changes how pair records are numbered, never the state's content).
        """
        accepted_total = 0
        chunk: list[Mapping[str, Any]] = []
        for event in events:
            chunk.append(event)
            if len(chunk) >= message_size:
                accepted_total += self.apply_message(chunk)
                chunk = []
        if chunk:
            accepted_total += self.apply_message(chunk)
        return accepted_total

    def apply_message(self, events: list[Mapping[str, Any]], partition: int = 0) -> int:
        """Fold one message's events, as the worker folds one message of the events topic."""
        offset = self.messages
        self.messages += 1
        accepted, records = fold_message(events, self._user, partition, offset)
        by_token: dict[str, list[Any]] = {}
        for record in records:
            key = record[1] if record[0] is None else record[0]
            by_token.setdefault(key, []).append(record)
        for key, token_records in by_token.items():
            self._token(key).fold(token_records)
        if accepted:
            self.catalogue.update_many(accepted)
            self.popularity.update_many(accepted)
        return len(accepted)

    # -- reads -----------------------------------------------------------------
    def user(self, user_id: str) -> UserState | None:
        """The user's state, or ``None`` for a user never seen."""
        return self.users.get(user_id)

    def neighbours(self, token: Token) -> TokenNeighbours | None:
        """Co-occurrence neighbours of ``(item_id, type)``, or ``None``."""
        state = self.tokens.get(token_key(*token))
        return state.neighbours if state is not None else None
