"""2D projections: PCA finds the plane the data lies on; items get one vector each."""

from __future__ import annotations

import numpy as np
import pytest

from models.projection import fit_pca, fit_projection, item_vectors, umap_available


def test_pca_recovers_a_plane_embedded_in_many_dimensions():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(300, 2)) * [3.0, 1.0]
    basis, _ = np.linalg.qr(rng.normal(size=(20, 2)))  # an orthonormal 2D plane in 20D
    X = plane @ basis.T + 5.0 + rng.normal(scale=0.01, size=(300, 20))
    pca = fit_pca(X)
    coords = pca.transform(X)
    # distances in the map are the distances in the space (up to the noise)
    d_space = np.linalg.norm(X[:50, None] - X[None, :50], axis=-1)
    d_map = np.linalg.norm(coords[:50, None] - coords[None, :50], axis=-1)
    assert np.abs(d_space - d_map).max() < 0.1
    assert pca.explained.sum() > 0.999 and pca.explained[0] > pca.explained[1]
    # the first axis is the long one
    assert coords[:, 0].std() > 2 * coords[:, 1].std()


def test_pca_is_deterministic_and_transforms_new_points_consistently():
    X = np.random.default_rng(1).normal(size=(40, 8))
    a, b = fit_pca(X), fit_pca(X.copy())
    assert np.array_equal(a.components, b.components)
    # a new point is placed where the fitted rows' mean of it would be (linear map)
    mean_point = a.transform(X[:5].mean(axis=0))
    assert np.allclose(mean_point, a.transform(X[:5]).mean(axis=0))


def test_pca_on_degenerate_data():
    one = fit_pca(np.array([[1.0, 2.0, 3.0]]))
    assert one.transform(np.array([[1.0, 2.0, 3.0]])).tolist() == [[0.0, 0.0]]
    line = fit_pca(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]))
    assert line.explained[0] == pytest.approx(1.0) and line.explained[1] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="non-empty"):
        fit_pca(np.zeros((0, 3)))


def test_fit_projection_chooses_what_is_available():
    X = np.random.default_rng(2).normal(size=(30, 6))
    assert fit_projection(X, method="pca").method == "pca"
    assert fit_projection(X).method == ("umap" if umap_available() else "pca")
    with pytest.raises(ValueError, match="auto, pca or umap"):
        fit_projection(X, method="tsne")


def test_item_vectors_average_unit_token_vectors_and_keep_the_most_frequent():
    vocab = [("a", "click"), ("b", "click"), ("a", "cart"), ("c", "view"), ("b", "cart")]
    vectors = np.array([[10.0, 0.0], [0.0, 2.0], [0.0, 5.0], [1.0, 1.0], [0.0, 1.0]])
    items, matrix = item_vectors(vocab, vectors, limit=2)
    assert items == ["a", "b"]  # "c" is third in vocabulary order: over the limit
    assert matrix.tolist() == [[0.5, 0.5], [0.0, 1.0]]  # b's cart token still counts
    untyped, _ = item_vectors(["x", "y"], np.eye(2))
    assert untyped == ["x", "y"]
