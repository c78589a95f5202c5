"""2D projections: PCA finds the plane the data lies on; items get one vector each."""

from __future__ import annotations

import numpy as np
import pytest

from models.projection import (
    fit_graph_layout,
    fit_pca,
    fit_projection,
    item_vectors,
    umap_available,
)


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
    assert fit_projection(X, method="graph").method == "graph"
    assert fit_projection(X).method == ("umap" if umap_available() else "graph")
    assert fit_projection(X[:10]).method == "pca"  # too few points for a neighbourhood graph
    with pytest.raises(ValueError, match="auto, umap, graph, pca"):
        fit_projection(X, method="tsne")


def clusters(rng, n_clusters=12, per=30, dim=32, noise=0.7):
    centres = rng.normal(size=(n_clusters, dim))
    labels = np.repeat(np.arange(n_clusters), per)
    return centres[labels] + rng.normal(scale=noise, size=(len(labels), dim)), labels


def neighbour_purity(coords, labels, k=10):
    distance = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distance, np.inf)
    nearest = np.argpartition(distance, k, axis=1)[:, :k]
    return (labels[nearest] == labels[:, None]).mean()


@pytest.mark.parametrize("method", ["graph", "umap"] if umap_available() else ["graph"])
def test_neighbourhood_maps_keep_groups_together_where_pca_mixes_them(method):
    # twelve groups in 32 dimensions: PCA's best plane cannot show them all apart
    X, labels = clusters(np.random.default_rng(3))
    fitted = fit_projection(X, method=method, seed=0)
    assert fitted.method == method
    pca = neighbour_purity(fit_pca(X).coords, labels)
    layout = neighbour_purity(fitted.coords, labels)
    assert layout > 0.9 and layout > pca + 0.15, (layout, pca)
    # nothing is clamped or collapsed: distinct points keep distinct places
    assert len(np.unique(fitted.coords.round(6), axis=0)) == len(X)


def test_graph_layout_is_seeded_and_places_new_points_among_their_neighbours():
    rng = np.random.default_rng(4)
    X, labels = clusters(rng, n_clusters=3, noise=0.3)
    a, b = fit_graph_layout(X, seed=5), fit_graph_layout(X.copy(), seed=5)
    assert np.array_equal(a.coords, b.coords)
    # a new point near group 1's members lands nearer group 1's middle than the others'
    new = X[labels == 1][:5].mean(axis=0, keepdims=True)
    where = a.transform(new)[0]
    middles = [a.coords[labels == g].mean(axis=0) for g in range(3)]
    assert np.argmin([np.linalg.norm(where - m) for m in middles]) == 1
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_graph_layout(X[:2])


def test_item_vectors_average_unit_token_vectors_and_keep_the_most_frequent():
    vocab = [("a", "click"), ("b", "click"), ("a", "cart"), ("c", "view"), ("b", "cart")]
    vectors = np.array([[10.0, 0.0], [0.0, 2.0], [0.0, 5.0], [1.0, 1.0], [0.0, 1.0]])
    items, matrix = item_vectors(vocab, vectors, limit=2)
    assert items == ["a", "b"]  # "c" is third in vocabulary order: over the limit
    assert matrix.tolist() == [[0.5, 0.5], [0.0, 1.0]]  # b's cart token still counts
    untyped, _ = item_vectors(["x", "y"], np.eye(2))
    assert untyped == ["x", "y"]
