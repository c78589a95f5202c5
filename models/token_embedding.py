"""Interaction-token skip-gram: one vector per (item, interaction type) token.

Etsy's item-interaction embeddings (DESIGN.md, source 3): every (item, type)
pair is a token, a session is a sentence, and skip-gram with negative sampling
learns one vector per token, so "clicked A" and "carted A" get different
neighbours (clicks lead to substitutes, carts to complements).
``EmbeddingParams(typed=False)`` is the baseline with one token per item.

Two trainers (``EmbeddingParams.backend``) learn the same model from the same
sessions and regularisation pairs. ``"gensim"`` (the default) hands them to
gensim's Cython word2vec with one worker thread; on 300k simulated events it
trained 1.7-3.1x faster than numpy with regularisation and 3.3-3.5x without,
with a higher novel click-to-cart hit rate (63.8% vs 61.3% regularised:
``python benchmarks/quality.py --compare-backends``). ``"numpy"`` is the
dependency-free reference, described next.

The numpy trainer is word2vec's SGNS written in vectorised numpy: every epoch the
(centre, context) pairs of the whole corpus are generated with array
operations, shuffled, and trained in minibatches (gather rows, compute,
scatter-add the gradients, damped for rows repeated within a minibatch; see
``EmbeddingParams.damping``). Details that follow word2vec/gensim:

* dynamic window: each centre occurrence draws a window ``b`` in
  ``1..window`` and pairs with tokens at distance ``<= b`` on both sides;
* negatives from the unigram^0.75 distribution, a negative equal to the
  positive context is ignored;
* learning rate decays linearly from ``lr`` to ``lr * min_lr_ratio`` over
  all epochs;
* optional frequent-token subsampling (``sample``, word2vec's formula);
* input vectors start uniform in ``±0.5/dim``, output vectors at zero.

Co-occurrence regularisation (``cooc_k > 0``)
---------------------------------------------
For every token ``p`` we count, over all sessions, which token immediately
follows it (directional, ``p -> q`` with ``q != p``) and keep the
``cooc_k`` most frequent followers (ties broken by vocabulary order).
Etsy appended these followers to the sequences so that they fall in ``p``'s
window. We do the equivalent without shifting the real context: after each
occurrence of ``p`` its followers are inserted as a side branch that lies
inside ``p``'s window only, i.e. each occurrence adds the training pairs
``(p, f)`` and ``(f, p)`` for each follower ``f``, exactly the pairs a
window would create between ``p`` and an appended neighbour. Real
neighbours stay at their real distance, so a window of 5 still reaches 5
real tokens (inserting 3 tokens after every token would push all but the
next real token out of the window). :func:`skipgram_pairs` builds both
kinds of pairs; :func:`top_followers` computes the followers.

Examples
--------
>>> sessions = [[("a", "click"), ("b", "click"), ("c", "cart")]] * 20
>>> model = TokenEmbedding(EmbeddingParams(dim=8, epochs=2, seed=1)).fit(sessions)
>>> len(model.vocab), model.vectors.shape
(3, (3, 8))
>>> model.followers[("a", "click")]
[('b', 'click')]
>>> sorted((item, kind) for item, kind, _ in model.most_similar(("a", "click"), 5))
[('b', 'click'), ('c', 'cart')]
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

Token = tuple[str, str]
Progress = Callable[[dict[str, Any]], None] | None
#: Trainers :class:`TokenEmbedding` can use (``EmbeddingParams.backend``).
BACKENDS: tuple[str, ...] = ("numpy", "gensim")
#: Sentence kinds :func:`models.training.sentences` makes (``EmbeddingParams.sentences``).
SENTENCES: tuple[str, ...] = ("user", "session")
#: Token type of the item-level tokens (``EmbeddingParams.item_tokens``): the
#: type :class:`~models.ann_index.TokenIndex` keeps item-level vectors under.
ITEM_TOKEN = "item"
#: gensim trains on at most this many words of a sentence.
GENSIM_MAX_WORDS = 10_000


@dataclass
class EmbeddingParams:
    """Hyper-parameters of :class:`TokenEmbedding`.

    Parameters
    ----------
    dim
        Vector dimension.
    window
        Maximum distance between a centre and a context token.
    negatives
        Negative samples per positive pair.
    epochs
        Passes over the sessions.
    lr
        Initial learning rate; decays linearly to ``lr * min_lr_ratio``.
    min_count
        Tokens seen fewer times are dropped from the vocabulary.
    cooc_k
        Top followers added as extra positives per token (0 disables).
    typed
        ``True``: one token per (item, type); ``False``: one per item.
    seed
        Seed of every random draw; same seed and data give identical vectors.
    sample
        Subsampling threshold for frequent tokens (0 disables, word2vec uses 1e-3).
    batch_size
        Positive pairs per minibatch.
    min_lr_ratio
        Final learning rate as a fraction of ``lr``.
    ns_exponent
        Exponent of the unigram distribution negatives are drawn from.
    damping
        A row that repeats ``n`` times in a minibatch moves by its summed
        update divided by ``n ** damping``. 0 is the plain sum (what ``n``
        sequential SGD steps would add, but it diverges on tokens that fill a
        large share of a batch), 1 the mean (stable but far too slow on small
        vocabularies); 0.25 was stable and converged on every test we ran.
        Numpy backend only.
    backend
        ``"numpy"``: the vectorised trainer of this module (no dependency
        beyond numpy/scipy, the reference); ``"gensim"``: gensim's Cython
        word2vec fed the same sessions and regularisation pairs (see
        :func:`gensim_sentences`). Both are deterministic for a seed (gensim
        runs with one worker thread).
    sentences
        What one sentence is when training from events
        (:func:`models.training.sentences`): ``"user"``, each user's whole
        sequence (real shop logs: a next-day cart is often of an item browsed
        in an earlier session), or ``"session"``.
    item_tokens
        Typed models: each event also puts its item-level token
        ``(item_id, "item")`` in the sentence, right before its typed token, so
        one model learns a vector per item beside the typed ones
        (:meth:`TokenEmbedding.item_vectors`; the window counts both).
    """

    dim: int = 64
    window: int = 20
    negatives: int = 10
    epochs: int = 20
    lr: float = 0.025
    min_count: int = 1
    cooc_k: int = 3
    typed: bool = True
    seed: int = 0
    sample: float = 0.0
    batch_size: int = 2048
    min_lr_ratio: float = 1e-4
    ns_exponent: float = 0.75
    damping: float = 0.25
    backend: str = "gensim"
    sentences: str = "user"
    item_tokens: bool = True


def scatter_add_rows(
    matrix: np.ndarray, rows: np.ndarray, updates: np.ndarray, damping: float = 0.0
) -> None:
    """``matrix[rows] += updates`` with repeated rows summed (like ``np.add.at``, faster).

    A sparse (unique rows x batch) matrix times the updates sums the
    duplicates in one call, several times faster than ``np.add.at``.
    ``damping`` divides a row's summed update by ``count ** damping`` where
    ``count`` is how often the row repeats in the batch: 0 sums (``np.add.at``),
    1 averages.

    Examples
    --------
    >>> m = np.zeros((3, 2), np.float32)
    >>> scatter_add_rows(m, np.array([2, 0, 2]), np.ones((3, 2), np.float32))
    >>> m.tolist()
    [[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]]
    """
    unique, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    indptr = np.zeros(len(unique) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    weights = np.ones(len(unique), dtype=updates.dtype)
    if damping:
        weights = (counts.astype(updates.dtype) ** -damping).astype(updates.dtype)
    data = np.repeat(weights, counts)
    summer = sp.csr_matrix((data, order, indptr), shape=(len(unique), len(rows)))
    matrix[unique] += summer @ updates


def top_followers(ids: np.ndarray, starts: np.ndarray, n_tokens: int, k: int) -> np.ndarray:
    """The ``k`` most frequent immediate followers of each token id.

    Parameters
    ----------
    ids
        All sessions' token ids concatenated.
    starts
        Index in ``ids`` where each session starts (sorted, first is 0).
    n_tokens
        Vocabulary size.
    k
        Followers kept per token.

    Returns
    -------
    np.ndarray
        ``(n_tokens, k)`` int64 follower ids, ``-1`` where a token has fewer
        than ``k`` distinct followers. Ties go to the smaller (more frequent) id.

    Examples
    --------
    >>> ids = np.array([0, 1, 0, 1, 0, 2, 2, 1])
    >>> top_followers(ids, np.array([0, 6]), 3, 2).tolist()
    [[1, 2], [0, -1], [1, -1]]
    """
    result = np.full((n_tokens, k), -1, dtype=np.int64)
    if k <= 0 or len(ids) < 2:
        return result
    same_session = np.ones(len(ids) - 1, dtype=bool)
    boundaries = starts[(starts > 0) & (starts < len(ids))]
    same_session[boundaries - 1] = False
    src, dst = ids[:-1][same_session], ids[1:][same_session]
    keep = src != dst
    codes = src[keep].astype(np.int64) * n_tokens + dst[keep]
    pairs, counts = np.unique(codes, return_counts=True)
    src_u, dst_u = pairs // n_tokens, pairs % n_tokens
    # Sort by source, then count descending, then follower id ascending.
    order = np.lexsort((dst_u, -counts, src_u))
    src_u, dst_u = src_u[order], dst_u[order]
    first = np.searchsorted(src_u, src_u, side="left")
    rank = np.arange(len(src_u)) - first
    top = rank < k
    result[src_u[top], rank[top]] = dst_u[top]
    return result


def skipgram_pairs(
    ids: np.ndarray,
    starts: np.ndarray,
    window: int,
    rng: np.random.Generator,
    followers: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """All (centre, context) pairs of one epoch, with the regularisation pairs.

    Parameters
    ----------
    ids
        All sessions' token ids concatenated.
    starts
        Index in ``ids`` where each session starts.
    window
        Maximum window; each centre draws its own in ``1..window``.
    rng
        Source of the window draws.
    followers
        Output of :func:`top_followers`; each occurrence of ``p`` adds
        ``(p, f)`` and ``(f, p)`` for each follower ``f``.

    Returns
    -------
    tuple of np.ndarray
        Centre ids and context ids (unshuffled). Pairs of a token with an
        identical token are dropped.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> c, o = skipgram_pairs(np.array([0, 1, 2]), np.array([0]), 1, rng)
    >>> sorted(zip(c.tolist(), o.tolist()))
    [(0, 1), (1, 0), (1, 2), (2, 1)]
    """
    n = len(ids)
    session_of = np.zeros(n, dtype=np.int64)
    inner = starts[(starts > 0) & (starts < n)]
    session_of[inner] = 1
    session_of = np.cumsum(session_of)
    reach = rng.integers(1, window + 1, size=n)
    centres, contexts = [], []
    for distance in range(1, window + 1):
        left, right = np.arange(n - distance), np.arange(distance, n)
        same = session_of[left] == session_of[right]
        # The left token sees the right one if its window reaches, and vice versa.
        forward = same & (reach[left] >= distance)
        backward = same & (reach[right] >= distance)
        centres += [ids[left[forward]], ids[right[backward]]]
        contexts += [ids[right[forward]], ids[left[backward]]]
    if followers is not None and followers.shape[1] > 0:
        extra = followers[ids]  # (n, k)
        anchor = np.repeat(ids, extra.shape[1])
        extra = extra.ravel()
        present = extra >= 0
        centres += [anchor[present], extra[present]]
        contexts += [extra[present], anchor[present]]
    centre = np.concatenate(centres) if centres else np.empty(0, np.int64)
    context = np.concatenate(contexts) if contexts else np.empty(0, np.int64)
    distinct = centre != context
    return centre[distinct], context[distinct]


def gensim_sentences(
    ids: np.ndarray,
    starts: np.ndarray,
    followers: np.ndarray | None = None,
    order: Sequence[int] | np.ndarray | None = None,
) -> list[list[str]]:
    """Sessions as gensim sentences of token-id strings, with the regularisation pairs.

    Each session (taken in ``order``) is followed by one two-token sentence
    ``[p, f]`` per occurrence of a token ``p`` and per follower ``f`` of ``p``:
    inside a two-token sentence any window pairs ``p`` with ``f`` both ways and
    nothing else, so gensim sees exactly the pairs :func:`skipgram_pairs` adds,
    while the real neighbours keep their real distances. Putting the pairs
    right after their session spreads them over the whole learning-rate decay.

    Examples
    --------
    >>> followers = np.array([[1], [-1], [0]])
    >>> gensim_sentences(np.array([0, 1, 2]), np.array([0, 2]), followers)
    [['0', '1'], ['0', '1'], ['2'], ['2', '0']]
    """
    words = [str(i) for i in range(int(ids.max()) + 1 if len(ids) else 0)]
    bounds = np.append(starts, len(ids)).tolist()
    id_list = ids.tolist()
    follower_lists: list[list[str]] = []
    if followers is not None:
        follower_lists = [[words[f] for f in row if f >= 0] for row in followers.tolist()]
    sentences = []
    for s in range(len(starts)) if order is None else order:
        session = id_list[bounds[s] : bounds[s + 1]]
        sentences.append([words[i] for i in session])
        if follower_lists:
            for i in session:
                word = words[i]
                sentences.extend([word, f] for f in follower_lists[i])
    return sentences


def expected_pairs(lengths: Sequence[int] | np.ndarray, window: int) -> float:
    """Expected skip-gram pairs of sentences of these lengths under a dynamic window.

    A centre draws its window ``b`` uniformly in ``1..window`` and pairs with
    each token at distance ``d <= b`` on either side, so two tokens ``d`` apart
    pair with probability ``(window - d + 1) / window`` in each direction.

    Examples
    --------
    >>> expected_pairs([3], 1)  # (0,1), (1,0), (1,2), (2,1)
    4.0
    >>> expected_pairs([2], 5)
    2.0
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    total = 0.0
    for d in range(1, window + 1):
        total += 2 * (window - d + 1) / window * np.maximum(lengths - d, 0).sum()
    return float(total)


def train_gensim(
    ids: np.ndarray,
    starts: np.ndarray,
    followers: np.ndarray | None,
    params: EmbeddingParams,
    rng: np.random.Generator,
    progress: Progress = None,
) -> np.ndarray:
    """Skip-gram vectors from gensim's word2vec, rows in token-id order.

    The sessions are shuffled once with ``rng`` (gensim does not shuffle) and
    fed with their regularisation pairs (:func:`gensim_sentences`). One worker
    thread and ``params.seed`` make the result reproducible: gensim 4 seeds its
    initial vectors and its sampling from ``seed`` alone (not from Python's
    randomised ``hash``). ``progress`` gets the keys the numpy trainer reports;
    ``pairs`` is the *expected* number of positive pairs of an epoch (gensim
    draws its own windows, :func:`expected_pairs`) and ``loss`` the epoch's
    summed SGNS loss over it (approximate: gensim sums it in float32).
    """
    from gensim.models import Word2Vec  # optional: only this backend needs it
    from gensim.models.callbacks import CallbackAny2Vec

    p = params
    n_tokens = int(ids.max()) + 1
    sentences = gensim_sentences(ids, starts, followers, rng.permutation(len(starts)))
    # gensim ignores the words of a sentence beyond its 10,000th: cut long ones.
    sentences = [
        s[i : i + GENSIM_MAX_WORDS] for s in sentences for i in range(0, len(s), GENSIM_MAX_WORDS)
    ]
    begin = time.perf_counter()

    pairs = expected_pairs([len(s) for s in sentences], p.window)

    class EpochReport(CallbackAny2Vec):  # type: ignore[misc]
        def __init__(self) -> None:
            self.epoch = 0

        def on_epoch_begin(self, model: Any) -> None:
            # gensim sums the loss in float32 over the whole run, where small terms
            # stop counting after ~1e7; summing one epoch at a time keeps it usable.
            model.running_training_loss = 0.0

        def on_epoch_end(self, model: Any) -> None:
            self.epoch += 1
            if progress is not None:
                progress(
                    {
                        "epoch": self.epoch,
                        "epochs": p.epochs,
                        "loss": float(model.get_latest_training_loss()) / max(1.0, pairs),
                        "pairs": round(pairs),
                        "lr": float(model.min_alpha_yet_reached),
                        "elapsed": time.perf_counter() - begin,
                    }
                )

    model = Word2Vec(
        vector_size=p.dim,
        window=p.window,
        negative=p.negatives,
        ns_exponent=p.ns_exponent,
        sg=1,
        hs=0,
        min_count=1,
        sample=p.sample,
        alpha=p.lr,
        min_alpha=p.lr * p.min_lr_ratio,
        seed=p.seed,
        workers=1,  # more threads race on the vectors: results would vary run to run
        epochs=p.epochs,
    )
    model.build_vocab(sentences)
    model.train(
        sentences,
        total_examples=len(sentences),
        epochs=p.epochs,
        compute_loss=progress is not None,  # train() resets the constructor's flag
        callbacks=[EpochReport()],
    )
    rows = [model.wv.key_to_index[str(i)] for i in range(n_tokens)]
    return np.ascontiguousarray(model.wv.vectors[rows], dtype=np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings, float32 stays float32


class TokenEmbedding:
    """Skip-gram with negative sampling over interaction tokens.

    Parameters
    ----------
    params
        Hyper-parameters; ``EmbeddingParams()`` gives Etsy's set-up at dim 64.

    Attributes
    ----------
    vocab
        Tokens in vector order: ``(item_id, type)`` tuples, or item ids when
        ``params.typed`` is false. Sorted by count, most frequent first.
    vectors
        ``(len(vocab), dim)`` float32 input vectors.
    counts
        Occurrences of each vocabulary token in the training sessions.
    followers
        Each token's top ``cooc_k`` followers (the regularisation positives).

    Examples
    --------
    >>> sessions = [[("a", "click"), ("b", "cart")], [("a", "click"), ("b", "click")]]
    >>> model = TokenEmbedding(EmbeddingParams(dim=4, epochs=1, typed=False)).fit(sessions)
    >>> model.vocab, model.vector("a").shape
    (['a', 'b'], (4,))
    """

    def __init__(self, params: EmbeddingParams | None = None) -> None:
        self.params = params or EmbeddingParams()
        self.vocab: list[Hashable] = []
        self.vectors = np.zeros((0, self.params.dim), dtype=np.float32)
        self.counts = np.zeros(0, dtype=np.int64)
        self.followers: dict[Hashable, list[Hashable]] = {}
        self._index: dict[Hashable, int] = {}
        self._normalized: np.ndarray | None = None

    # ----------------------------------------------------------------- data
    def _key(self, token: Any) -> Hashable:
        """The vocabulary key of a token: itself when typed, its item when not."""
        if self.params.typed:
            return tuple(token)
        return token[0] if isinstance(token, tuple | list) else token

    def _encode(self, sessions: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Build the vocabulary; return concatenated token ids and session starts."""
        keyed = []
        for session in sessions:
            tokens = getattr(session, "tokens", session)
            keyed.append([self._key(t) for t in tokens])
        counter = Counter(key for session in keyed for key in session)
        kept = [key for key, c in counter.items() if c >= self.params.min_count]
        kept.sort(key=lambda key: (-counter[key], key))
        self.vocab = kept
        self._index = {key: i for i, key in enumerate(kept)}
        self.counts = np.array([counter[key] for key in kept], dtype=np.int64)
        ids, starts = [], []
        total = 0
        for session in keyed:
            session_ids = [self._index[key] for key in session if key in self._index]
            if len(session_ids) < 1:
                continue
            starts.append(total)
            ids.extend(session_ids)
            total += len(session_ids)
        return np.array(ids, dtype=np.int64), np.array(starts, dtype=np.int64)

    def _subsample(
        self, ids: np.ndarray, starts: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Drop frequent-token occurrences with word2vec's keep probability."""
        threshold = self.params.sample * self.counts.sum()
        keep_prob = np.minimum(
            1.0, (np.sqrt(self.counts / threshold) + 1) * threshold / self.counts
        )
        keep = rng.random(len(ids)) < keep_prob[ids]
        session_of = np.zeros(len(ids), dtype=np.int64)
        session_of[starts[starts > 0]] = 1
        session_of = np.cumsum(session_of)[keep]
        new_starts = np.flatnonzero(np.r_[True, session_of[1:] != session_of[:-1]])
        return ids[keep], new_starts if len(session_of) else np.empty(0, np.int64)

    # ---------------------------------------------------------------- train
    def fit(self, sessions: Iterable[Sequence[Token]], progress: Progress = None) -> TokenEmbedding:
        """Learn the token vectors from sessions.

        Parameters
        ----------
        sessions
            An iterable of token lists (``(item_id, type)`` tuples, in time
            order), or of :class:`models.sessions.Session` objects.
        progress
            Called after each epoch with ``epoch``, ``epochs``, ``loss`` (mean
            SGNS loss per positive pair), ``pairs``, ``lr`` and ``elapsed`` seconds.

        Returns
        -------
        TokenEmbedding
            ``self``, fitted.
        """
        p = self.params
        if p.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {p.backend!r}")
        rng = np.random.default_rng(p.seed)
        ids, starts = self._encode(sessions)
        n, dim = len(self.vocab), p.dim
        self._normalized = None
        self.vectors = ((rng.random((n, dim), dtype=np.float32) - 0.5) / dim).astype(np.float32)
        out = np.zeros((n, dim), dtype=np.float32)
        follower_ids = top_followers(ids, starts, n, p.cooc_k) if p.cooc_k > 0 else None
        self.followers = {}
        if follower_ids is not None:
            for i, row in enumerate(follower_ids):
                self.followers[self.vocab[i]] = [self.vocab[j] for j in row if j >= 0]
        if n == 0:
            return self
        if p.backend == "gensim":
            self.vectors = train_gensim(ids, starts, follower_ids, p, rng, progress)
            return self
        noise = self.counts.astype(np.float64) ** p.ns_exponent
        noise_cdf = np.cumsum(noise / noise.sum())
        noise_cdf[-1] = 1.0
        planned = 1  # pairs over all epochs, for the linear lr decay: set from epoch 1
        done = 0
        begin = time.perf_counter()
        for epoch in range(p.epochs):
            epoch_ids, epoch_starts = (ids, starts)
            if p.sample > 0:
                epoch_ids, epoch_starts = self._subsample(ids, starts, rng)
            centre, context = skipgram_pairs(epoch_ids, epoch_starts, p.window, rng, follower_ids)
            if epoch == 0:
                planned = max(1, len(centre) * p.epochs)
            order = rng.permutation(len(centre))
            centre, context = centre[order], context[order]
            loss_sum = 0.0
            lr = p.lr
            for lo in range(0, len(centre), p.batch_size):
                c = centre[lo : lo + p.batch_size]
                o = context[lo : lo + p.batch_size]
                lr = p.lr * max(p.min_lr_ratio, 1.0 - done / planned)
                negatives = np.searchsorted(noise_cdf, rng.random((len(c), p.negatives)))
                loss_sum += self._step(c, o, negatives, out, np.float32(lr))
                done += len(c)
            if progress is not None:
                progress(
                    {
                        "epoch": epoch + 1,
                        "epochs": p.epochs,
                        "loss": loss_sum / max(1, len(centre)),
                        "pairs": len(centre),
                        "lr": lr,
                        "elapsed": time.perf_counter() - begin,
                    }
                )
        return self

    def _step(
        self, c: np.ndarray, o: np.ndarray, negatives: np.ndarray, out: np.ndarray, lr: np.float32
    ) -> float:
        """One SGNS minibatch; returns the summed loss of its pairs."""
        hidden = self.vectors[c]  # (B, d)
        targets = np.concatenate([o[:, None], negatives], axis=1)  # (B, 1 + K)
        target_vecs = out[targets]  # (B, 1 + K, d)
        scores = np.einsum("bd,bkd->bk", hidden, target_vecs)
        labels = np.zeros_like(scores)
        labels[:, 0] = 1.0
        prob = _sigmoid(scores)
        active = np.ones_like(scores)
        active[:, 1:] = negatives != o[:, None]  # a negative equal to the positive is skipped
        grad = (labels - prob) * active * lr  # (B, 1 + K)
        eps = np.float32(1e-7)
        loss = (
            -np.log(prob[:, 0] + eps).sum() - (np.log(1 - prob[:, 1:] + eps) * active[:, 1:]).sum()
        )
        hidden_update = np.einsum("bk,bkd->bd", grad, target_vecs)
        target_update = grad[:, :, None] * hidden[:, None, :]
        damping = self.params.damping
        flat_update = target_update.reshape(-1, hidden.shape[1])
        scatter_add_rows(out, targets.ravel(), flat_update, damping)
        scatter_add_rows(self.vectors, c, hidden_update, damping)
        return float(loss)

    # ---------------------------------------------------------------- query
    @property
    def normalized_vectors(self) -> np.ndarray:
        """L2-normalised copy of :attr:`vectors` (cached)."""
        if self._normalized is None or len(self._normalized) != len(self.vectors):
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._normalized = (self.vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        return self._normalized

    def index_of(self, token: Any) -> int | None:
        """Row of ``token`` in :attr:`vectors`, or ``None`` if unknown."""
        try:
            return self._index.get(self._key(token))
        except TypeError:
            return None

    def vector(self, token: Any) -> np.ndarray | None:
        """The token's vector; untyped models also accept ``(item, type)``."""
        row = self.index_of(token)
        return None if row is None else self.vectors[row]

    def types(self) -> list[str]:
        """Interaction types present in the vocabulary (empty when untyped)."""
        if not self.params.typed:
            return []
        return sorted({key[1] for key in self.vocab})

    def most_similar(
        self, token: Any, k: int = 10, target_type: str | None = None
    ) -> list[tuple[str, str | None, float]]:
        """Exact cosine neighbours of ``token`` (brute force; for tests and small data).

        Parameters
        ----------
        token
            ``(item_id, type)``, or an item id for untyped models.
        k
            Neighbours to return.
        target_type
            Only tokens of this type (typed models); ``None`` means any type.

        Returns
        -------
        list of (item_id, type, score)
            Best first, the token itself excluded; ``type`` is ``None`` when untyped.
        """
        row = self.index_of(token)
        if row is None or k <= 0:
            return []
        unit = self.normalized_vectors
        scores = unit @ unit[row]
        candidates = np.arange(len(self.vocab))
        if self.params.typed and target_type is not None:
            candidates = np.array(
                [i for i, key in enumerate(self.vocab) if key[1] == target_type], dtype=np.int64
            )
        candidates = candidates[candidates != row]
        if len(candidates) == 0:
            return []
        cand_scores = scores[candidates]
        order = np.lexsort((candidates, -cand_scores))[:k]
        result = []
        for i in candidates[order]:
            key = self.vocab[i]
            item, kind = (key[0], key[1]) if self.params.typed else (key, None)
            result.append((item, kind, float(scores[i])))
        return result

    def item_vectors(self) -> tuple[list[str], np.ndarray]:
        """One vector per item: its item-level token's, else the sum of its tokens' unit vectors.

        An item-level neighbour search ("more like this item", whatever was
        done with it) needs one point per item. A model trained with
        ``item_tokens`` has one token per item for it; otherwise the sum of an
        item's typed unit vectors keeps every interaction's direction.

        Returns
        -------
        items, vectors
            Item ids (in order of first appearance in :attr:`vocab`) and a
            ``(len(items), dim)`` float32 array; untyped models return their own.

        Examples
        --------
        >>> m = TokenEmbedding(EmbeddingParams(dim=2))
        >>> m.vocab = [("a", "click"), ("a", "cart"), ("b", "click")]
        >>> m.vectors = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 2.0]], np.float32)
        >>> items, vectors = m.item_vectors()
        >>> items, vectors.tolist()
        (['a', 'b'], [[1.0, 1.0], [0.0, 1.0]])
        """
        if not self.params.typed:
            return [str(key) for key in self.vocab], self.vectors.copy()
        own = [n for n, key in enumerate(self.vocab) if key[1] == ITEM_TOKEN]
        if own:
            return [self.vocab[n][0] for n in own], self.vectors[own].copy()
        rows: dict[str, int] = {}
        for key in self.vocab:
            rows.setdefault(key[0], len(rows))
        which = np.array([rows[key[0]] for key in self.vocab], dtype=np.int64)
        summed = np.zeros((len(rows), self.vectors.shape[1]), dtype=np.float32)
        np.add.at(summed, which, self.normalized_vectors)
        return list(rows), summed

    # ------------------------------------------------------------------- io
    def save(self, directory: str | Path) -> None:
        """Write ``vectors.npy``, ``counts.npy`` and ``model.json`` (no pickle)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "vectors.npy", self.vectors, allow_pickle=False)
        np.save(path / "counts.npy", self.counts, allow_pickle=False)
        encode = (lambda key: list(key)) if self.params.typed else (lambda key: key)
        meta = {
            "params": asdict(self.params),
            "vocab": [encode(key) for key in self.vocab],
            "followers": [[encode(f) for f in self.followers.get(key, [])] for key in self.vocab],
        }
        (path / "model.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: str | Path) -> TokenEmbedding:
        """Read a model written by :meth:`save`."""
        path = Path(directory)
        meta = json.loads((path / "model.json").read_text())
        model = cls(EmbeddingParams(**meta["params"]))
        decode = tuple if model.params.typed else (lambda key: key)
        model.vocab = [decode(key) for key in meta["vocab"]]
        model._index = {key: i for i, key in enumerate(model.vocab)}
        model.vectors = np.load(path / "vectors.npy", allow_pickle=False)
        model.counts = np.load(path / "counts.npy", allow_pickle=False)
        model.followers = {
            key: [decode(f) for f in fs]
            for key, fs in zip(model.vocab, meta["followers"], strict=True)
        }
        return model

    def __len__(self) -> int:
        return len(self.vocab)
