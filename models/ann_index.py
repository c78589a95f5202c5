"""Approximate nearest-neighbour search over token vectors: one HNSW index per type.

Etsy (DESIGN.md, source 3) serves "the top-k neighbours of a chosen
interaction type" from HNSW (efSearch 256, efConstruction 128, 64 links per
vector). Keeping one hnswlib index per token type makes "nearest cart tokens
to this click token" a single query on the cart index, with no filtering.

Untyped vectors (one per item) can be indexed by passing plain item ids as
tokens; they land in the type :data:`UNTYPED`.

Examples
--------
>>> vectors = np.eye(4, dtype=np.float32) + 0.1
>>> tokens = [("a", "click"), ("b", "click"), ("a", "cart"), ("b", "cart")]
>>> index = TokenIndex.build(tokens, vectors, M=8, ef_construction=16)
>>> index.types(), len(index)
(['cart', 'click'], 4)
>>> [item for item, _ in index.query(vectors[3], "cart", 2)]
['b', 'a']
>>> [item for item, _ in index.neighbours(("a", "click"), "click", 5)]
['b']
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from pathlib import Path

import hnswlib
import numpy as np

#: Type name under which plain (untyped) item-id tokens are indexed.
UNTYPED = "item"


def _split(token: Hashable) -> tuple[str, str]:
    if isinstance(token, tuple | list):
        return str(token[0]), str(token[1])
    return str(token), UNTYPED


class TokenIndex:
    """HNSW indexes of token vectors, one per interaction type.

    Build with :meth:`build`; query with :meth:`query` (by vector) or
    :meth:`neighbours` (by indexed token). Scores are cosine similarity for
    ``space="cosine"``, the inner product for ``"ip"`` and minus the squared
    distance for ``"l2"``.
    """

    def __init__(
        self,
        indexes: dict[str, hnswlib.Index],
        items: dict[str, list[str]],
        *,
        dim: int,
        space: str,
        settings: dict[str, int],
    ) -> None:
        self._indexes = indexes
        self._items = items
        self._rows = {kind: {item: n for n, item in enumerate(ids)} for kind, ids in items.items()}
        self.dim = dim
        self.space = space
        self.settings = settings

    @classmethod
    def build(
        cls,
        tokens: Sequence[Hashable],
        vectors: np.ndarray,
        *,
        M: int = 64,
        ef_construction: int = 128,
        ef: int = 256,
        space: str = "cosine",
        num_threads: int = 1,
        seed: int = 100,
    ) -> TokenIndex:
        """Index ``vectors[i]`` under ``tokens[i]``, one HNSW graph per type.

        Parameters
        ----------
        tokens
            ``(item_id, type)`` tuples, or item ids (indexed as :data:`UNTYPED`).
        vectors
            ``(len(tokens), dim)`` array.
        M, ef_construction, ef
            HNSW links per vector, build-time and query-time beam widths
            (Etsy's 64 / 128 / 256 by default).
        space
            ``"cosine"``, ``"ip"`` or ``"l2"``.
        num_threads
            hnswlib threads for building and querying.
        seed
            hnswlib's level-generation seed, for reproducible graphs.

        Returns
        -------
        TokenIndex
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(tokens):
            raise ValueError("vectors must be (len(tokens), dim)")
        rows_by_type: dict[str, list[int]] = {}
        items: dict[str, list[str]] = {}
        for row, token in enumerate(tokens):
            item, kind = _split(token)
            rows_by_type.setdefault(kind, []).append(row)
            items.setdefault(kind, []).append(item)
        settings = {
            "M": M,
            "ef_construction": ef_construction,
            "ef": ef,
            "num_threads": num_threads,
        }
        indexes = {}
        for kind, rows in rows_by_type.items():
            index = hnswlib.Index(space=space, dim=vectors.shape[1])
            index.init_index(
                max_elements=len(rows), ef_construction=ef_construction, M=M, random_seed=seed
            )
            index.set_num_threads(num_threads)
            index.add_items(vectors[rows], np.arange(len(rows)), num_threads=num_threads)
            index.set_ef(ef)
            indexes[kind] = index
        return cls(indexes, items, dim=vectors.shape[1], space=space, settings=settings)

    def types(self) -> list[str]:
        """The token types that have an index, sorted."""
        return sorted(self._indexes)

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._items.values())

    def __contains__(self, token: Hashable) -> bool:
        item, kind = _split(token)
        return item in self._rows.get(kind, {})

    def _to_score(self, distances: np.ndarray) -> np.ndarray:
        # hnswlib returns 1 - cos for cosine, 1 - dot for ip, squared distance for l2.
        return -distances if self.space == "l2" else 1.0 - distances

    def _search(self, vector: np.ndarray, kind: str, k: int) -> list[tuple[str, float]]:
        index = self._indexes.get(kind)
        if index is None or k <= 0:
            return []
        k = min(k, len(self._items[kind]))
        if index.ef < k:  # hnswlib needs ef >= k to return k results reliably
            index.set_ef(k)
        labels, distances = index.knn_query(
            np.asarray(vector, dtype=np.float32).reshape(1, -1),
            k=k,
            num_threads=1,  # one query: threads cost more than they save
        )
        items = self._items[kind]
        scores = self._to_score(distances[0])
        return [(items[label], float(s)) for label, s in zip(labels[0], scores, strict=True)]

    def query(self, vector: np.ndarray, target_type: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` nearest tokens of ``target_type`` to ``vector``, best first.

        Returns ``(item_id, score)`` pairs; empty for an unknown type.
        """
        return self._search(vector, target_type, k)

    def vector(self, token: Hashable) -> np.ndarray | None:
        """The stored vector of an indexed token (unit length in cosine space)."""
        item, kind = _split(token)
        row = self._rows.get(kind, {}).get(item)
        if row is None:
            return None
        return np.asarray(self._indexes[kind].get_items([row])[0], dtype=np.float32)

    def neighbours(self, token: Hashable, target_type: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` nearest tokens of ``target_type`` to an indexed token, itself excluded.

        Only the token itself is excluded: the click token of item A may
        well have A's cart token among its neighbours.
        """
        vector = self.vector(token)
        if vector is None:
            return []
        item, kind = _split(token)
        same = kind == target_type
        found = self._search(vector, target_type, k + 1 if same else k)
        if same:
            found = [(other, s) for other, s in found if other != item]
        return found[:k]

    # ------------------------------------------------------------------- io
    def save(self, directory: str | Path) -> None:
        """Write one ``index_<n>.bin`` per type plus ``index.json``."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        kinds = self.types()
        for n, kind in enumerate(kinds):
            self._indexes[kind].save_index(str(path / f"index_{n}.bin"))
        meta = {
            "dim": self.dim,
            "space": self.space,
            "settings": self.settings,
            "types": kinds,
            "items": {kind: self._items[kind] for kind in kinds},
        }
        (path / "index.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: str | Path) -> TokenIndex:
        """Read an index written by :meth:`save`."""
        path = Path(directory)
        meta = json.loads((path / "index.json").read_text())
        settings = meta["settings"]
        indexes = {}
        for n, kind in enumerate(meta["types"]):
            index = hnswlib.Index(space=meta["space"], dim=meta["dim"])
            index.load_index(str(path / f"index_{n}.bin"), max_elements=len(meta["items"][kind]))
            index.set_ef(settings["ef"])
            index.set_num_threads(settings["num_threads"])
            indexes[kind] = index
        return cls(indexes, meta["items"], dim=meta["dim"], space=meta["space"], settings=settings)
