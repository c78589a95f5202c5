"""Co-occurrence: a token-keyed agent folds pair records into each token's state, exactly once.

The ingest agent sends the pair records that users' events count to
``<prefix>.cooccurrence-pairs``, partitioned by source token (msgpack arrays
of :data:`~models.user_state.PairRecord`). This agent groups a batch's records
by token and folds each token's records once
(:meth:`models.token_state.TokenState.fold`), whose guard skips any record it
has applied before (a redelivered message, or a source message folded again
after a crash).
"""

from __future__ import annotations

import logging
from typing import Any

import msgpack
from faust.types import EventT

from agents.metrics import Metrics
from agents.state import StateService

log = logging.getLogger(__name__)


class Cooccurrence:
    """The co-occurrence domain: folds pair records into token states."""

    def __init__(self, settings: Any, state: StateService, metrics: Metrics) -> None:
        self.settings = settings
        self.state = state
        self.metrics = metrics

    async def process(self, batch: list[EventT]) -> None:
        state = self.state
        tokens = state.tokens
        wanted = {event.message.partition for event in batch}
        while True:
            await state.wait_owned(tokens, wanted)
            async with state.lock:
                if not state.settled.is_set():
                    continue
                owned = wanted & state.assigned["tokens"]
                if not all(tokens.is_ready(p) for p in owned):
                    continue
                self._fold_batch(batch, owned)
                return

    def _fold_batch(self, batch: list[EventT], owned: set[int]) -> None:
        tokens = self.state.tokens
        by_token: dict[tuple[str, int], list[Any]] = {}
        for event in batch:
            msg = event.message
            if msg.partition not in owned:
                continue
            try:
                records = msgpack.unpackb(msg.value, raw=False, strict_map_key=False)
            except Exception as exc:  # only our own agents write here; say so loudly
                log.error("undecodable pair records at %s: %r", msg.offset, exc)
                self.metrics.inc("tastestream_ingest_errors_total")
                continue
            for record in records:
                token = record[1] if record[0] is None else record[0]
                by_token.setdefault((token, msg.partition), []).append(record)
        applied = 0
        for (token, partition), records in by_token.items():
            applied += tokens.get_for_update(token, partition).fold(records)
        self.metrics.inc("tastestream_pairs_applied_total", applied)


def register(app: Any, cooccurrence: Cooccurrence, pairs_topic: Any) -> None:
    settings = cooccurrence.settings

    @app.agent(pairs_topic, name="cooccurrence")
    async def cooccurrence_agent(stream: Any) -> None:
        async for batch in stream.take_events(
            settings.ingest_batch_size, within=settings.ingest_batch_seconds
        ):
            await cooccurrence.process(list(batch))
