"""Baselines: k-NN with the haversine metric, boosted trees, prompt features, MLP."""

from __future__ import annotations

import numpy as np
import pytest

from jaxgeo.errors import ConfigError
from jaxgeo.geollm.baselines import (
    evaluate_baselines,
    fit_predict,
    gbt_coordinates,
    knn_haversine,
    mlp_embedding,
    prompt_features,
)
from jaxgeo.geollm.dataset import GeoDataset


def test_knn_uses_great_circle_neighbours_across_the_antimeridian() -> None:
    # Query at lon 179.9: in degrees the nearest would be (0, 170); on the sphere it is
    # (0, -179.9) and (0, -179.8), across the antimeridian.
    train = np.array([[0.0, -179.9], [0.0, -179.8], [0.0, 170.0], [0.0, 160.0]])
    y = np.array([1.0, 3.0, 100.0, 200.0])
    pred = knn_haversine(train, y, np.array([[0.0, 179.9]]), k=2)
    assert pred[0] == pytest.approx(2.0)
    # k larger than the training set: the mean of all
    assert knn_haversine(train, y, np.array([[0.0, 0.0]]), k=5)[0] == pytest.approx(y.mean())


def test_boosted_trees_learn_a_smooth_field_of_coordinates() -> None:
    rng = np.random.default_rng(0)
    ll = np.stack([rng.uniform(-60, 60, 1200), rng.uniform(-180, 180, 1200)], 1)
    f = np.sin(np.radians(ll[:, 0]) * 3) + np.cos(np.radians(ll[:, 1]) * 2)
    pred = gbt_coordinates(ll[:1000], f[:1000], ll[1000:])
    assert np.corrcoef(pred, f[1000:])[0, 1] ** 2 > 0.9


def test_prompt_features_read_the_prompt_numbers() -> None:
    km = np.array([[1.0, 2.5, np.nan], [np.nan, np.nan, np.nan]])
    sec = np.array([[0, 2, -1], [-1, -1, -1]])
    x = prompt_features(np.array([[10.0, 20.0], [-5.0, 7.0]]), km, sec, radius_km=100.0)
    assert x.shape == (2, 2 + 3 + 1 + 8)
    np.testing.assert_array_equal(x[0, :6], [10.0, 20.0, 1.0, 2.5, 150.0, 2.0])
    np.testing.assert_array_equal(x[0, 6:], [1, 0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(x[1, 2:6], [150.0, 150.0, 150.0, 0.0])


def test_mlp_fits_a_linear_map_of_embeddings() -> None:
    rng = np.random.default_rng(1)
    e = rng.normal(size=(600, 16)).astype(np.float32)
    y = e @ rng.normal(size=16)
    pred = mlp_embedding(e[:500], y[:500], e[500:])
    assert np.corrcoef(pred, y[500:])[0, 1] ** 2 > 0.9


def test_evaluate_baselines_on_a_small_dataset(small_pop: GeoDataset) -> None:
    res = evaluate_baselines(small_pop, (40, 10), ("knn", "xgboost", "xgboost_ft"))
    assert set(res["r2"]) == {"knn", "xgboost", "xgboost_ft"}
    for by_size in res["r2"].values():
        assert set(by_size) == {40, 10} and all(0.0 <= v <= 1.0 for v in by_size.values())
    assert res["predictions"]["knn"][10].shape == (20,)
    with pytest.raises(ConfigError, match="baseline"):
        fit_predict("random_forest", {}, {}, np.zeros(2))
    with pytest.raises(ConfigError, match="unknown baselines"):
        evaluate_baselines(small_pop, (10,), ("svm",))


def test_plots_are_written(small_pop: GeoDataset, tmp_path) -> None:
    from jaxgeo.geollm.plots import plot_predictions

    t = small_pop.test_indices
    files = plot_predictions(
        tmp_path, small_pop.lat[t], small_pop.lon[t], small_pop.label[t], small_pop.label[t][::-1],
        title="check", stem="x", history={"epoch": [1, 2], "loss": [1.0, 0.5]},
    )  # fmt: skip
    assert [f.name for f in files] == ["x_scatter.png", "x_residual_map.png", "x_loss.png"]
    assert all(f.stat().st_size > 10_000 for f in files)
