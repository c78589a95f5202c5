"""One offline comparison of every candidate generator on a time split of an event log.

:func:`evaluate_models` trains each model on the events before the cut and
scores it on the next ``test_hours`` with the metrics of :mod:`models.evaluation`
(Etsy's purchase-intent hit rate and its novel variant per task, Whatnot's ROC
AUC, catalogue coverage, same- vs cross-category cosine, train time). The
result is plain JSON; :func:`report_text` renders it as Markdown with the
regularised embedding compared to each baseline.

Models (``models=``)
--------------------
``regularised``
    Interaction-token skip-gram (one token per (item, type)) with co-occurrence
    regularisation (each token's top ``cooc_k`` followers, Etsy's k = 3).
``embedding``
    The same without regularisation.
``item2vec``
    One token per item, no regularisation (the untyped baseline).
``bpr`` / ``warp``
    Matrix factorisation of weighted user x item feedback; per-seed candidates
    are the items whose factors are nearest (cosine) to the seed item's, and the
    row also gets the user-level hit rate (top k per user) and Whatnot's
    user -> item AUC.
``cooccurrence``
    The target-type tokens that most often followed the seed token in a session.
``popularity``
    The most frequent items of the target type, whatever the seed.

Candidates from embeddings are exact (brute-force cosine over the target type's
tokens, the seed token itself left out), so the table measures the models, not an
index. Typed models answer a seed token with tokens of the target type; untyped
ones (item2vec, matrix factorisation) with nearest items, whatever the type.

AUC (every model, one set of positives)
    Positives are test-window ``(last click/view seed item, later cart or purchase
    item)`` pairs (:func:`models.evaluation.seed_positives`, at most
    ``max_auc_positives`` drawn with ``seed``); each is ranked against
    ``auc_negatives`` random catalogue items. A model scores the relation
    "clicked A, then carts B": typed embeddings by the cosine of A's click (else
    view) token with B's cart token, untyped ones by item cosine, co-occurrence by
    how often B's cart followed A's click or view, popularity by B's cart count.
    Items a model does not know score ``-inf``.

The catalogue (coverage, AUC negatives) is every item with an interaction in the
train or the test window.

Examples
--------
>>> from models.simulator import ClickstreamSimulator, SimulatorConfig
>>> sim = ClickstreamSimulator(SimulatorConfig(users=50, items=300, categories=6, sellers=20))
>>> events = list(sim.events(4000))
>>> result = evaluate_models(events, models=("popularity", "cooccurrence"), test_hours=24)
>>> sorted(result["models"]), 0.0 <= result["models"]["popularity"]["coverage"] <= 1.0
(['cooccurrence', 'popularity'], True)
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from models.evaluation import (
    CLICK_TYPES,
    DEFAULT_K,
    TARGET_TYPES,
    category_cosine,
    cooccurrence_candidates,
    cooccurrence_counts,
    evaluate,
    popularity_candidates,
    report_markdown,
    roc_auc,
    seed_positives,
    split_by_time,
    timed,
    user_positives,
)
from models.factorization import FactorizationParams, MatrixFactorization
from models.sessions import INTERACTION_TYPES, sessionise
from models.token_embedding import EmbeddingParams, TokenEmbedding

#: Rows of a default report, in report order.
DEFAULT_MODELS: tuple[str, ...] = (
    "regularised",
    "embedding",
    "item2vec",
    "bpr",
    "cooccurrence",
    "popularity",
)
EMBEDDING_MODELS: tuple[str, ...] = ("regularised", "embedding", "item2vec")
#: Every model name :func:`evaluate_models` knows.
KNOWN_MODELS: tuple[str, ...] = (*DEFAULT_MODELS, "warp")
#: The model the report compares with every other one, and on which task.
REFERENCE_MODEL = "regularised"
HEADLINE_TASK = "click-to-cart"
#: Baselines the regularised embedding is expected to beat (the issue's quality bar).
EXPECTED_TO_BEAT: tuple[str, ...] = ("embedding", "cooccurrence", "popularity")

Message = Callable[[str], None] | None
Candidates = Callable[[str, str, str, int], list[str]]
Scorer = Callable[[str, Sequence[str]], Sequence[float]]


# ---------------------------------------------------------------- vector candidates


class VectorCandidates:
    """Exact cosine candidates and click-to-cart scores from vectors keyed by token or item.

    Parameters
    ----------
    keys
        Row keys: ``(item_id, type)`` tokens (``typed``) or item ids.
    vectors
        ``(len(keys), dim)`` array.
    typed
        Whether keys are tokens; untyped keys answer every seed and target type.

    Examples
    --------
    >>> vc = VectorCandidates([("a", "click"), ("b", "cart"), ("c", "cart")],
    ...                       np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]]), typed=True)
    >>> vc("a", "click", "cart", 1)
    ['b']
    >>> [round(s, 3) for s in vc.score("a", ["b", "c", "zz"])]
    [0.995, 0.0, -inf]
    """

    def __init__(self, keys: Sequence[Any], vectors: np.ndarray, typed: bool) -> None:
        self.typed = typed
        matrix = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.unit = matrix / np.maximum(norms, 1e-12)
        self.row = {key: n for n, key in enumerate(keys)}
        groups: dict[str | None, list[int]] = defaultdict(list)
        for n, key in enumerate(keys):
            groups[key[1] if typed else None].append(n)
        # Per target type: the rows of that type, their item ids and their unit vectors.
        self.groups = {
            kind: (np.array(rows, dtype=np.int64), [self._item(keys[r]) for r in rows])
            for kind, rows in groups.items()
        }
        self.group_unit = {kind: self.unit[rows] for kind, (rows, _) in self.groups.items()}

    def _item(self, key: Any) -> str:
        return key[0] if self.typed else key

    def _key(self, item_id: str, kind: str) -> Any:
        return (item_id, kind) if self.typed else item_id

    def __call__(self, item_id: str, seed_type: str, target_type: str, k: int) -> list[str]:
        row = self.row.get(self._key(item_id, seed_type))
        kind = target_type if self.typed else None
        group = self.groups.get(kind)
        if row is None or group is None or k <= 0:
            return []
        rows, items = group
        scores = self.group_unit[kind] @ self.unit[row]
        scores[rows == row] = -np.inf  # the seed token itself is no candidate
        k = min(k, len(rows))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        top = top[np.isfinite(scores[top])]
        return [items[i] for i in top.tolist()]

    def vector_of_seed(self, item_id: str) -> np.ndarray | None:
        """The unit vector of the item's click token, else its view token (any when untyped)."""
        for kind in CLICK_TYPES[::-1]:
            row = self.row.get(self._key(item_id, kind))
            if row is not None:
                return self.unit[row]
        return None

    def score(self, seed_item: str, item_ids: Sequence[str]) -> list[float]:
        """Cosine of the seed's click token with each item's cart token; ``-inf`` if unknown."""
        seed = self.vector_of_seed(seed_item)
        out = []
        for item in item_ids:
            row = self.row.get(self._key(item, "cart"))
            out.append(-math.inf if seed is None or row is None else float(self.unit[row] @ seed))
        return out

    def item_vectors(self, kind: str | None) -> dict[str, np.ndarray]:
        """Unit vectors by item id, of tokens of ``kind`` (all rows when untyped)."""
        rows, items = self.groups.get(kind if self.typed else None, (np.zeros(0, int), []))
        return {item: self.unit[r] for item, r in zip(items, rows.tolist(), strict=True)}


def _cooccurrence_scorer(train: Sequence[dict[str, Any]]) -> Scorer:
    """How often each item's cart token followed the seed item's click or view token."""
    follows = cooccurrence_counts(train)

    def score(seed_item: str, item_ids: Sequence[str]) -> list[float]:
        counters = [follows.get((seed_item, kind), Counter()) for kind in CLICK_TYPES]
        return [float(sum(c[(item, "cart")] for c in counters)) for item in item_ids]

    return score


def _popularity_scorer(train: Sequence[dict[str, Any]]) -> Scorer:
    carts = Counter(e["item_id"] for e in train if e["type"] == "cart")

    def score(seed_item: str, item_ids: Sequence[str]) -> list[float]:
        return [float(carts[item]) for item in item_ids]

    return score


# ---------------------------------------------------------------- helpers


def _categories(events: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Item id -> category, from events that carry ``item.category`` (last one wins)."""
    found: dict[str, str] = {}
    for event in events:
        category = (event.get("item") or {}).get("category")
        if category is not None:
            found[event["item_id"]] = category
    return found


def _auc_positives(
    test: Sequence[dict[str, Any]], limit: int, rng: np.random.Generator
) -> list[tuple[str, str]]:
    pairs = seed_positives(test, seed_types=CLICK_TYPES, target_types=TARGET_TYPES)
    if len(pairs) > limit:
        keep = np.sort(rng.choice(len(pairs), size=limit, replace=False))
        pairs = [pairs[i] for i in keep]
    return pairs


def _safe_auc(
    score: Scorer,
    positives: Sequence[tuple[str, str]],
    catalogue: Sequence[str],
    negatives: int,
    seed: int,
    seen: Mapping[str, Iterable[str]] | None = None,
) -> float | None:
    if not positives:
        return None
    try:
        return roc_auc(score, positives, catalogue, negatives, rng=seed, seen=seen)
    except ValueError:  # no key had an unseen item to compare with
        return None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- main entry


def evaluate_models(
    events: Iterable[dict[str, Any]],
    *,
    test_hours: float = 24.0,
    k: int = DEFAULT_K,
    models: Sequence[str] = DEFAULT_MODELS,
    embedding_params: EmbeddingParams | None = None,
    factorization_params: FactorizationParams | None = None,
    cooc_k: int = 3,
    auc_negatives: int = 10,
    max_auc_positives: int = 5000,
    max_seeds: int | None = None,
    seed: int = 0,
    progress: Message = None,
) -> dict[str, Any]:
    """Train every model on the events before the cut and score it on the test window.

    Parameters
    ----------
    events
        Canonical events (as :func:`streams.events.validate_event` returns them).
    test_hours
        Test window after the cut; the cut is the last timestamp minus this.
    k
        Candidates per seed (Etsy: 200).
    models
        Names from :data:`KNOWN_MODELS`, in report order.
    embedding_params
        Base parameters of the three embeddings (default ``EmbeddingParams(seed=seed)``);
        ``cooc_k``/``typed`` are set per model.
    factorization_params
        Base parameters of ``bpr``/``warp`` (default ``FactorizationParams(seed=seed)``).
    cooc_k
        Followers per token of the regularised embedding when ``embedding_params``
        has ``cooc_k == 0``.
    auc_negatives
        Random catalogue items per AUC positive.
    max_auc_positives
        AUC positives used at most (a seeded sample).
    max_seeds
        Hit rate: only the most recent distinct seeds before a target (``None``: all).
    seed
        Seed of the AUC and category-cosine draws, and of default model parameters.
    progress
        Called with one line of text per step (training, epochs, scoring).

    Returns
    -------
    dict
        ``{"config": {...}, "data": {...}, "models": {name: row}, "comparison": {...}}``;
        a row is :func:`models.evaluation.evaluate`'s plus ``auc``, ``train_seconds``,
        ``eval_seconds``, ``category_cosine`` (when events carry categories) and, for
        matrix factorisation, ``user_auc``.
    """
    unknown = [m for m in models if m not in KNOWN_MODELS]
    if unknown:
        raise ValueError(f"unknown models {unknown}; expected some of {', '.join(KNOWN_MODELS)}")
    say = progress or (lambda message: None)
    events = sorted((e for e in events if e["type"] in INTERACTION_TYPES), key=lambda e: e["ts"])
    if not events:
        raise ValueError("no interaction events to evaluate")
    train, test, cut = split_by_time(events, test_hours)
    if not train or not test:
        raise ValueError(
            f"the time split left {len(train)} train and {len(test)} test events: "
            "the log must span more than --test-hours"
        )
    catalogue = sorted({e["item_id"] for e in events})
    categories = _categories(events)
    rng = np.random.default_rng(seed)
    positives = _auc_positives(test, max_auc_positives, rng)
    sessions = list(sessionise(train))
    base = embedding_params or EmbeddingParams(seed=seed)
    mf_base = factorization_params or FactorizationParams(seed=seed)
    say(
        f"split at {_iso(cut)}: {len(train):,} train / {len(test):,} test interactions, "
        f"{len(sessions):,} train sessions, {len(catalogue):,} items"
    )

    if base.backend == "gensim" and any(m in EMBEDDING_MODELS for m in models):
        importlib.import_module("gensim.models")  # seconds of import: not the first model's
    rows: dict[str, dict[str, Any]] = {}
    for name in models:
        say(f"{name}: training")
        started = time.perf_counter()
        row = _evaluate_one(
            name,
            train=train,
            test=test,
            sessions=sessions,
            catalogue=catalogue,
            categories=categories,
            positives=positives,
            base=base,
            mf_base=mf_base,
            cooc_k=cooc_k,
            k=k,
            auc_negatives=auc_negatives,
            max_seeds=max_seeds,
            seed=seed,
            say=say,
        )
        rows[name] = row
        novel = row["novel_hit_rate"].get(HEADLINE_TASK)
        say(
            f"{name}: trained in {row['train_seconds']:.1f}s, scored in "
            f"{time.perf_counter() - started - row['train_seconds']:.1f}s; novel click→cart "
            + ("-" if novel is None else f"{100 * novel:.2f}%")
        )

    config = {
        "test_hours": test_hours,
        "k": k,
        "max_seeds": max_seeds,
        "cooc_k": base.cooc_k or cooc_k,
        "dim": base.dim,
        "epochs": base.epochs,
        "backend": base.backend,
        "mf_epochs": mf_base.epochs,
        "seed": seed,
    }
    data = {
        "events": len(events),
        "train_events": len(train),
        "test_events": len(test),
        "train_sessions": len(sessions),
        "users": len({e["user_id"] for e in events}),
        "test_users": len({e["user_id"] for e in test}),
        "items": len(catalogue),
        "cut": cut,
        "cut_iso": _iso(cut),
        "first_iso": _iso(events[0]["ts"]),
        "last_iso": _iso(events[-1]["ts"]),
        "auc_positives": len(positives),
        "has_categories": bool(categories),
    }
    result = {"config": config, "data": data, "models": rows}
    result["comparison"] = compare(result)
    return result


def _evaluate_one(
    name: str,
    *,
    train: Sequence[dict[str, Any]],
    test: Sequence[dict[str, Any]],
    sessions: Sequence[Any],
    catalogue: Sequence[str],
    categories: Mapping[str, str],
    positives: Sequence[tuple[str, str]],
    base: EmbeddingParams,
    mf_base: FactorizationParams,
    cooc_k: int,
    k: int,
    auc_negatives: int,
    max_seeds: int | None,
    seed: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    def epochs(report: dict[str, Any]) -> None:
        loss = report.get("loss")
        say(
            f"{name}: epoch {report['epoch']}/{report['epochs']}"
            + ("" if loss is None else f" loss {loss:.4f}")
            + f" {report['elapsed']:.1f}s"
        )

    user_candidates = None
    user_auc = None
    vectors_for_cosine: dict[str, np.ndarray] | None = None
    cosine_kind: str | None = None
    params: dict[str, Any] = {}
    if name in EMBEDDING_MODELS:
        variant = {
            "regularised": {"cooc_k": base.cooc_k or cooc_k, "typed": True},
            "embedding": {"cooc_k": 0, "typed": True},
            "item2vec": {"cooc_k": 0, "typed": False},
        }[name]
        p = dataclasses.replace(base, **variant)
        params = dataclasses.asdict(p)
        model, seconds = timed(lambda: TokenEmbedding(p).fit(sessions, progress=epochs))
        vc = VectorCandidates(model.vocab, model.vectors, typed=p.typed)
        candidates: Candidates = vc
        score: Scorer = vc.score
        if p.typed:
            # Etsy's Table 2 per token type; the most frequent type has the most items.
            kinds = Counter(key[1] for key in model.vocab)
            cosine_kind = kinds.most_common(1)[0][0] if kinds else None
        vectors_for_cosine = vc.item_vectors(cosine_kind)
    elif name in ("bpr", "warp"):
        p_mf = dataclasses.replace(mf_base, loss=name)
        params = dataclasses.asdict(p_mf)
        mf, seconds = timed(lambda: MatrixFactorization(p_mf).fit(train, progress=epochs))
        vc = VectorCandidates(mf.items, mf.item_factors, typed=False)
        candidates, score = vc, vc.score
        vectors_for_cosine = vc.item_vectors(None)

        def user_candidates(user_id: str, k: int) -> list[str]:
            return [item for item, _ in mf.recommend(user_id, k)]

        seen: dict[str, set[str]] = defaultdict(set)
        for event in train:
            seen[event["user_id"]].add(event["item_id"])
        user_auc = _safe_auc(
            mf.score, user_positives(test), catalogue, auc_negatives, seed, seen=seen
        )
    elif name == "cooccurrence":
        candidates, seconds = timed(lambda: cooccurrence_candidates(train))
        score = _cooccurrence_scorer(train)
    else:  # popularity
        candidates, seconds = timed(lambda: popularity_candidates(train))
        score = _popularity_scorer(train)

    say(f"{name}: scoring")
    started = time.perf_counter()
    row = evaluate(
        test,
        candidates,
        user_candidates=user_candidates,
        catalogue=catalogue,
        k=k,
        max_seeds=max_seeds,
    )
    row["auc"] = _safe_auc(score, positives, catalogue, auc_negatives, seed)
    if user_auc is not None:
        row["user_auc"] = user_auc
    if vectors_for_cosine is not None and categories:
        cosine = category_cosine(vectors_for_cosine, categories, rng=seed)
        row["category_cosine"] = {**cosine, "token_type": cosine_kind}
    row["train_seconds"] = seconds
    row["eval_seconds"] = time.perf_counter() - started
    if params:
        params.pop("type_weights", None)
        row["params"] = params
    return row


# ---------------------------------------------------------------- comparison and report


def compare(
    result: Mapping[str, Any], reference: str = REFERENCE_MODEL, task: str = HEADLINE_TASK
) -> dict[str, Any]:
    """The reference model's novel hit rate on ``task`` against every other row.

    Returns ``{"reference", "task", "rows": {name: {...}}}`` where each row has the
    baseline's ``novel_rate``, the ``difference`` in rate points (reference minus
    baseline), the ``ratio`` (``None`` when the baseline is 0 or missing) and ``beats``.

    Examples
    --------
    >>> rows = {"regularised": {"novel_hit_rate": {"click-to-cart": 0.3}},
    ...         "popularity": {"novel_hit_rate": {"click-to-cart": 0.1}}}
    >>> out = compare({"models": rows})["rows"]["popularity"]
    >>> round(out["ratio"], 6), out["beats"]
    (3.0, True)
    """
    models: Mapping[str, Mapping[str, Any]] = result.get("models", {})
    out: dict[str, Any] = {"reference": reference, "task": task, "rows": {}}
    if reference not in models:
        return out
    ref = models[reference].get("novel_hit_rate", {}).get(task)
    out["reference_novel_rate"] = ref
    for name, row in models.items():
        if name == reference:
            continue
        rate = row.get("novel_hit_rate", {}).get(task)
        both = ref is not None and rate is not None
        out["rows"][name] = {
            "novel_rate": rate,
            "difference": ref - rate if both else None,
            "ratio": ref / rate if both and rate > 0 else None,
            "beats": bool(ref > rate) if both else None,
        }
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def report_text(result: Mapping[str, Any], title: str = "Offline evaluation") -> str:
    """Markdown: the data, the table of :func:`models.evaluation.report_markdown`, the comparison.

    Examples
    --------
    >>> rows = {"regularised": {"novel_hit_rate": {"click-to-cart": 0.3}, "hit_rate": {}},
    ...         "popularity": {"novel_hit_rate": {"click-to-cart": 0.1}, "hit_rate": {}}}
    >>> text = report_text({"models": rows, "comparison": compare({"models": rows})})
    >>> "| popularity | 10.00 | +20.00 | 3.00x | yes |" in text
    True
    """
    lines = [f"# {title}", ""]
    data = result.get("data")
    if data:
        lines += [
            f"Events {data['events']:,} ({data['first_iso']} to {data['last_iso']}), "
            f"{data['users']:,} users, {data['items']:,} items. "
            f"Train: {data['train_events']:,} interactions before {data['cut_iso']} "
            f"({data['train_sessions']:,} sessions); test: {data['test_events']:,} "
            f"interactions of {data['test_users']:,} users in the next "
            f"{result['config']['test_hours']:g} h.",
            "",
        ]
    lines += [report_markdown(result).rstrip(), ""]
    lines += [
        "Hit % is Etsy's purchase-intent hit rate |P ∩ S| / |P| (targets: test carts and "
        "purchases; S: the top-k candidates of every earlier seed of the task); novel % "
        "leaves out targets whose item was itself an earlier seed. AUC: last click/view "
        "item -> later cart/purchase item against random catalogue items (Whatnot).",
        "",
    ]
    models: Mapping[str, Mapping[str, Any]] = result.get("models", {})
    user_rows = {n: r for n, r in models.items() if r.get("user_auc") is not None}
    if user_rows:
        lines += [
            "Matrix factorisation per user (top k for the user, Whatnot's user -> item AUC):",
            "",
        ]
        for name, row in user_rows.items():
            lines.append(
                f"- {name}: user hit {_pct(row['hit_rate'].get('user'))}%, novel "
                f"{_pct(row['novel_hit_rate'].get('user'))}%, user AUC {row['user_auc']:.3f}"
            )
        lines.append("")
    comparison = result.get("comparison") or compare(result)
    if comparison.get("rows"):
        ref, task = comparison["reference"], comparison["task"]
        lines += [
            f"## {ref} vs each model: novel {task} hit rate "
            f"({ref}: {_pct(comparison.get('reference_novel_rate'))}%)",
            "",
            f"| model | novel {task} % | {ref} minus it (points) | {ref} / it | {ref} better |",
            "|---|---|---|---|---|",
        ]
        for name, row in comparison["rows"].items():
            diff = "-" if row["difference"] is None else f"{100 * row['difference']:+.2f}"
            ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
            beats = {True: "yes", False: "**no**", None: "-"}[row["beats"]]
            lines.append(f"| {name} | {_pct(row['novel_rate'])} | {diff} | {ratio} | {beats} |")
        lines.append("")
        missed = [
            name
            for name in EXPECTED_TO_BEAT
            if comparison["rows"].get(name, {}).get("beats") is False
        ]
        if missed:
            lines.append(
                f"**{ref} does not beat {', '.join(missed)}** on novel {task}: see the "
                "counts in the JSON report (few targets make the rates noisy)."
            )
            lines.append("")
    return "\n".join(lines)
