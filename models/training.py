"""Train one model version from contract events: embeddings, HNSW indexes, MF.

What a version holds (DESIGN.md sources 1 and 3):

* the interaction-token embedding (Etsy), trained on each user's whole
  sequence of tokens as one sentence (:func:`sentences`; sessions cut by
  :func:`models.sessions.sessionise` with ``EmbeddingParams(sentences="session")``);
* one HNSW index per token type over those vectors (M 64, ef_construction
  128, ef 256), for "nearest cart tokens to this click token", and one over
  item-level vectors (the item tokens learnt beside the typed ones,
  :meth:`~models.token_embedding.TokenEmbedding.item_vectors`, type
  :data:`~models.ann_index.UNTYPED`) for "items like this one";
* matrix factorisation with BPR over weighted implicit feedback (Whatnot).

Pure and CPU-heavy: call it from a CLI process or a thread, never inside an
event loop. Same events and same ``seed`` give identical vectors and factors
(the HNSW graphs are built with ``index_threads`` threads and may differ in
insertion order when that is above 1; their answers do not, in practice).

Examples
--------
>>> from models.simulator import ClickstreamSimulator, SimulatorConfig
>>> sim = ClickstreamSimulator(SimulatorConfig(users=30, items=60, categories=4, sellers=6))
>>> params = TrainingParams(min_events=10, embedding=EmbeddingParams(dim=8, epochs=1),
...                         factorization=FactorizationParams(factors=4, epochs=1))
>>> trained = train_version(sim.events(3000), params)
>>> trained.data_range["events"], sorted(trained.index.types())
(3000, ['cart', 'click', 'favorite', 'item', 'purchase', 'view'])
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.ann_index import TokenIndex
from models.factorization import FactorizationParams, MatrixFactorization
from models.sessions import DEFAULT_GAP_SECONDS, INTERACTION_TYPES, Token, sessionise
from models.token_embedding import ITEM_TOKEN, SENTENCES, EmbeddingParams, TokenEmbedding

#: ``progress`` receives dicts with ``stage`` plus the stage's own keys
#: (``epoch``, ``epochs``, ``loss``, ``elapsed`` for the two trainers).
Progress = Callable[[dict[str, Any]], None] | None


class NotEnoughData(ValueError):
    """Too few events or sessions to train a useful model; the message says how many."""


@dataclass
class TrainingParams:
    """Everything that decides a version, recorded in its manifest.

    Parameters
    ----------
    seed
        Seed for every trainer (overrides the sub-params' seeds).
    embedding, factorization
        The trainers' hyper-parameters (Etsy's set-up at dim 64; BPR).
    index_M, index_ef_construction, index_ef, index_threads
        HNSW settings (Etsy's 64 / 128 / 256) and build threads.
    min_events
        Fewer events than this is an error, not a model.
    min_session_tokens
        Sentences (sessions or user sequences) shorter than this carry no
        co-occurrence and are dropped.
    session_gap_seconds
        Inactivity gap that splits sessions without a ``session_id``.
    """

    seed: int = 0
    embedding: EmbeddingParams = field(default_factory=EmbeddingParams)
    factorization: FactorizationParams = field(
        default_factory=lambda: FactorizationParams(loss="bpr")
    )
    index_M: int = 64
    index_ef_construction: int = 128
    index_ef: int = 256
    index_threads: int = 2
    min_events: int = 100
    min_session_tokens: int = 2
    session_gap_seconds: float = DEFAULT_GAP_SECONDS


@dataclass
class TrainedModels:
    """The output of :func:`train_version`, ready for :func:`models.model_version.write_version`."""

    embedding: TokenEmbedding
    index: TokenIndex
    factorization: MatrixFactorization | None
    params: TrainingParams
    data_range: dict[str, Any]
    metrics: dict[str, Any]

    def params_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.params)


def data_range(events: list[dict[str, Any]]) -> dict[str, Any]:
    """First and last ``ts``, event count, distinct users and items.

    Examples
    --------
    >>> data_range([{"ts": 5.0, "user_id": "u", "item_id": "a"},
    ...             {"ts": 2.0, "user_id": "u", "item_id": "b"}])
    {'first_ts': 2.0, 'last_ts': 5.0, 'events': 2, 'users': 1, 'items': 2}
    """
    stamps = [e["ts"] for e in events]
    return {
        "first_ts": min(stamps) if stamps else None,
        "last_ts": max(stamps) if stamps else None,
        "events": len(events),
        "users": len({e["user_id"] for e in events}),
        "items": len({e["item_id"] for e in events}),
    }


def _stage(progress: Progress, stage: str) -> Callable[[dict[str, Any]], None] | None:
    if progress is None:
        return None
    return lambda info: progress({"stage": stage, **info})


def sentences(
    events: list[dict[str, Any]],
    kind: str = "user",
    gap_seconds: float = DEFAULT_GAP_SECONDS,
    item_tokens: bool = False,
) -> list[list[Token]]:
    """The embedding's sentences: each user's tokens in time order, or each session's.

    With ``item_tokens`` each event's ``(item_id, "item")`` token comes right
    before its typed token (see ``EmbeddingParams.item_tokens``).

    Examples
    --------
    >>> evs = [{"user_id": "u", "item_id": i, "type": "click", "ts": t}
    ...        for i, t in (("b", 5000.0), ("a", 0.0))]
    >>> sentences(evs, "user"), sentences(evs, "session")
    ([[('a', 'click'), ('b', 'click')]], [[('a', 'click')], [('b', 'click')]])
    >>> sentences(evs, "session", item_tokens=True)[0]
    [('a', 'item'), ('a', 'click')]
    """
    if kind not in SENTENCES:
        raise ValueError(f"sentences must be one of {', '.join(SENTENCES)}, not {kind!r}")
    if kind == "session":
        found = [s.tokens for s in sessionise(events, gap_seconds)]
    else:
        by_user: dict[str, list[tuple[float, int, Token]]] = {}
        for n, e in enumerate(events):
            if e["type"] in INTERACTION_TYPES:
                token = (e["item_id"], e["type"])
                by_user.setdefault(e["user_id"], []).append((e["ts"], n, token))
        found = [[token for _, _, token in sorted(rows)] for _, rows in sorted(by_user.items())]
    if item_tokens:
        found = [[t for token in s for t in ((token[0], ITEM_TOKEN), token)] for s in found]
    return found


def train_version(
    events: Iterable[dict[str, Any]],
    params: TrainingParams | None = None,
    progress: Progress = None,
) -> TrainedModels:
    """Train embeddings, per-type indexes and MF from contract events.

    Parameters
    ----------
    events
        Canonical events (numeric ``ts``), in any order.
    params
        :class:`TrainingParams`; defaults are the production set-up.
    progress
        Called per epoch of each trainer and once per finished stage.

    Raises
    ------
    NotEnoughData
        Fewer than ``min_events`` events, or no session with at least
        ``min_session_tokens`` interactions.
    """
    p = params or TrainingParams()
    events = list(events)
    if len(events) < p.min_events:
        raise NotEnoughData(
            f"{len(events)} events; at least {p.min_events} are needed to train a model"
        )
    begin = time.perf_counter()
    with_items = p.embedding.typed and p.embedding.item_tokens
    per_event = 2 if with_items else 1  # an item token rides with each typed one
    sessions = [
        s
        for s in sentences(events, p.embedding.sentences, p.session_gap_seconds, with_items)
        if len(s) >= p.min_session_tokens * per_event
    ]
    if not sessions:
        raise NotEnoughData(
            f"{len(events)} events but no {p.embedding.sentences} sequence with "
            f"{p.min_session_tokens}+ interactions"
        )
    metrics: dict[str, Any] = {"sessions": len(sessions), "tokens": sum(map(len, sessions))}

    last: dict[str, Any] = {}

    def remember(stage: str) -> Callable[[dict[str, Any]], None]:
        forward = _stage(progress, stage)

        def callback(info: dict[str, Any]) -> None:
            last[stage] = info
            if forward is not None:
                forward(info)

        return callback

    started = time.perf_counter()
    embedding = TokenEmbedding(dataclasses.replace(p.embedding, seed=p.seed)).fit(
        sessions, remember("embedding")
    )
    metrics["embedding_seconds"] = round(time.perf_counter() - started, 3)
    metrics["embedding_loss"] = _finite(last.get("embedding", {}).get("loss"))
    metrics["vocab"] = len(embedding.vocab)
    metrics["tokens_by_type"] = dict(sorted(Counter(t[1] for t in embedding.vocab).items()))

    started = time.perf_counter()
    tokens, vectors = list(embedding.vocab), embedding.vectors
    has_item_tokens = (
        any(token[1] == ITEM_TOKEN for token in tokens) if embedding.params.typed else True
    )
    if not has_item_tokens:  # item-level vectors from the typed ones
        items, item_vectors = embedding.item_vectors()
        tokens, vectors = [*tokens, *items], np.vstack([vectors, item_vectors])
    index = TokenIndex.build(
        tokens,
        vectors,
        M=p.index_M,
        ef_construction=p.index_ef_construction,
        ef=p.index_ef,
        num_threads=p.index_threads,
        seed=p.seed + 100,
    )
    metrics["index_seconds"] = round(time.perf_counter() - started, 3)
    if progress is not None:
        progress({"stage": "index", "tokens": len(index), "elapsed": metrics["index_seconds"]})

    started = time.perf_counter()
    factorization = MatrixFactorization(dataclasses.replace(p.factorization, seed=p.seed)).fit(
        events, remember("factorization")
    )
    metrics["factorization_seconds"] = round(time.perf_counter() - started, 3)
    metrics["factorization_loss"] = _finite(last.get("factorization", {}).get("loss"))
    metrics["users"] = len(factorization.users)
    metrics["items"] = len(factorization.items)
    metrics["seconds"] = round(time.perf_counter() - begin, 3)
    return TrainedModels(
        embedding=embedding,
        index=index,
        factorization=factorization,
        params=p,
        data_range=data_range(events),
        metrics=metrics,
    )


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


__all__ = ["NotEnoughData", "TrainedModels", "TrainingParams", "data_range", "train_version"]
