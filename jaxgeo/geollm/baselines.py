"""The paper's baselines (Manvi et al. 2024, §4.2), each trained on rank labels:

- ``knn``: k-nearest neighbours on coordinates with the haversine distance, k = 5;
- ``xgboost``: gradient-boosted trees on (lat, lon);
- ``xgboost_ft``: gradient-boosted trees on features read off the prompt: coordinates, the
  distance (0.1 km) of each of the 10 nearby places, how many there are, and how many lie in
  each compass sector. Because this dataset's population target and nearby places come from
  one gazetteer, this is the baseline the language model has to beat;
- ``mlp_bert``: a multilayer perceptron on the frozen, mean-pooled prompt embedding of the
  pretrained encoder.

The paper's rows "XGBoost" and "XGBoost-FT" are played by scikit-learn's
``HistGradientBoostingRegressor`` (histogram gradient boosting, the LightGBM algorithm); the
MLP by scikit-learn's ``MLPRegressor`` (Adam, early stopping where the training set allows).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxgeo.errors import ConfigError

from .dataset import GeoDataset
from .labels import pearson_r2

__all__ = [
    "BASELINES",
    "evaluate_baselines",
    "fit_predict",
    "gbt_coordinates",
    "gbt_prompt_features",
    "knn_haversine",
    "mlp_embedding",
    "prompt_features",
]


def knn_haversine(
    train_latlon: np.ndarray, y: np.ndarray, test_latlon: np.ndarray, *, k: int = 5
) -> np.ndarray:
    """Mean label of the ``k`` nearest training points by great-circle distance."""
    from sklearn.neighbors import KNeighborsRegressor

    model = KNeighborsRegressor(
        n_neighbors=min(k, len(y)), metric="haversine", algorithm="ball_tree"
    )
    model.fit(np.radians(train_latlon), y)
    return model.predict(np.radians(test_latlon))


def _gbt(seed: int):  # noqa: ANN202
    from sklearn.ensemble import HistGradientBoostingRegressor

    # Early stopping holds out 10 % of the training set: only where that leaves enough.
    return HistGradientBoostingRegressor(random_state=seed, early_stopping="auto")


def _fit_predict_gbt(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    from threadpoolctl import threadpool_limits

    # One OpenMP thread: on a shared, loaded machine the histogram builder's spinning threads
    # made a 1,000-sample fit take a minute instead of a fraction of a second.
    with threadpool_limits(limits=1, user_api="openmp"):
        return _gbt(seed).fit(x, y).predict(x_test)


def gbt_coordinates(
    train_latlon: np.ndarray, y: np.ndarray, test_latlon: np.ndarray, *, seed: int = 0
) -> np.ndarray:
    """Gradient-boosted trees on (lat, lon) ("XGBoost")."""
    return _fit_predict_gbt(train_latlon, y, test_latlon, seed)


def prompt_features(
    latlon: np.ndarray, nearby_km: np.ndarray, nearby_sector: np.ndarray, radius_km: float = 100.0
) -> np.ndarray:
    """Numbers the prompt states: lat, lon, nearby distances (missing: ``1.5 radius``), the
    number of nearby places and their count per compass sector. Shape ``(n, 2 + k + 1 + 8)``."""
    d = np.where(np.isfinite(nearby_km), nearby_km, 1.5 * radius_km)
    count = np.isfinite(nearby_km).sum(axis=1, keepdims=True)
    sectors = np.stack([(nearby_sector == s).sum(axis=1) for s in range(8)], axis=1)
    return np.concatenate([latlon, d, count, sectors], axis=1).astype(np.float64)


def gbt_prompt_features(
    train_x: np.ndarray, y: np.ndarray, test_x: np.ndarray, *, seed: int = 0
) -> np.ndarray:
    """Gradient-boosted trees on :func:`prompt_features` ("XGBoost-FT")."""
    return _fit_predict_gbt(train_x, y, test_x, seed)


def mlp_embedding(
    train_emb: np.ndarray, y: np.ndarray, test_emb: np.ndarray, *, seed: int = 0
) -> np.ndarray:
    """An MLP (one hidden layer of 256, ReLU) on standardised frozen embeddings ("MLP-BERT")."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    mu, sd = train_emb.mean(0), train_emb.std(0) + 1e-6
    model = MLPRegressor(
        hidden_layer_sizes=(256,),
        alpha=1e-2,
        learning_rate_init=1e-3,
        max_iter=300,
        early_stopping=len(y) >= 500,
        random_state=seed,
    )
    with warnings.catch_warnings():
        # A small training set may stop at max_iter: that is the setting, not a fault.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit((train_emb - mu) / sd, y)
    return model.predict((test_emb - mu) / sd)


BASELINES: dict[str, str] = {
    "knn": "k-NN (haversine, k=5)",
    "xgboost": "XGBoost (coordinates)",
    "xgboost_ft": "XGBoost-FT (prompt features)",
    "mlp_bert": "MLP-BERT (frozen MiniLM embedding)",
}


def fit_predict(
    name: str,
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    y: np.ndarray,
    *,
    seed: int = 0,
) -> np.ndarray:
    """Fit baseline ``name`` on ``train`` and predict ``test``; each dict holds ``latlon``,
    ``features`` and (for ``mlp_bert``) ``embedding``.

    Raises:
        ConfigError: Unknown baseline.
    """
    fns: dict[str, Callable[[], np.ndarray]] = {
        "knn": lambda: knn_haversine(train["latlon"], y, test["latlon"]),
        "xgboost": lambda: gbt_coordinates(train["latlon"], y, test["latlon"], seed=seed),
        "xgboost_ft": lambda: gbt_prompt_features(
            train["features"], y, test["features"], seed=seed
        ),
        "mlp_bert": lambda: mlp_embedding(train["embedding"], y, test["embedding"], seed=seed),
    }
    if name not in fns:
        raise ConfigError(f"baseline must be one of {', '.join(fns)}, got {name!r}")
    return fns[name]()


def evaluate_baselines(
    ds: GeoDataset,
    sizes: tuple[int, ...] = (10_000, 1_000, 100),
    methods: tuple[str, ...] = tuple(BASELINES),
    *,
    variant: str = "full",
    seed: int = 0,
    test_limit: int | None = None,
    embedding_batch: int = 64,
) -> dict[str, Any]:
    """Test r² of each baseline at each training size (the rows of the paper's Table 1).

    Returns:
        ``{"r2": {method: {size: r2}}, "predictions": {method: {size: pred}}, "test": idx}``;
        sizes larger than the training pool are skipped.
    """
    unknown = [m for m in methods if m not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baselines {unknown}; choose from {', '.join(BASELINES)}")
    test = ds.test_indices if test_limit is None else ds.test_indices[:test_limit]
    sizes = tuple(s for s in sizes if s <= len(ds.train_pool))
    pool = ds.train_indices(max(sizes))
    rows = np.concatenate([pool, test])
    latlon = np.stack([ds.lat, ds.lon], axis=1)
    feats = prompt_features(latlon, ds.nearby_km, ds.nearby_sector, ds.config.radius_km)
    emb = None
    if "mlp_bert" in methods:
        from .bert import embed_texts

        emb = np.zeros((len(ds), 384), np.float32)
        emb[rows] = embed_texts(
            ds.prompts(rows, variant), batch_size=embedding_batch, progress_desc="embed prompts"
        )
    r2: dict[str, dict[int, float]] = {}
    preds: dict[str, dict[int, np.ndarray]] = {}
    for m in methods:
        r2[m], preds[m] = {}, {}
        for n in sizes:
            tr = pool[:n]

            def part(ix: np.ndarray) -> dict[str, np.ndarray]:
                return {
                    "latlon": latlon[ix],
                    "features": feats[ix],
                    "embedding": emb[ix] if emb is not None else np.zeros((len(ix), 0)),
                }

            p = fit_predict(m, part(tr), part(test), ds.label[tr], seed=seed)
            preds[m][n] = p
            r2[m][n] = pearson_r2(p, ds.label[test])
    return {"r2": r2, "predictions": preds, "test": test}
