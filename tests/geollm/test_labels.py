"""Rank labels and the r² metric."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxgeo.errors import InputError
from jaxgeo.geollm.labels import fractional_rank, pearson_r2, rank_labels


def test_rank_labels_hand_example_with_ties() -> None:
    # ranks 1, 2.5, 2.5, 4, 5 -> r = 0, .375, .375, .75, 1 -> 0.0, 3.7, 3.7, 7.5, 9.9 (capped)
    v = np.array([1.0, 5.0, 5.0, 7.0, 1e6])
    np.testing.assert_allclose(fractional_rank(v), [0.0, 0.375, 0.375, 0.75, 1.0])
    np.testing.assert_array_equal(rank_labels(v), [0.0, 3.7, 3.7, 7.5, 9.9])


def test_rank_labels_of_exact_percentiles_do_not_round_down() -> None:
    # 101 distinct values: r = k / 100 exactly, label = k / 10 (k = 53 must give 5.3, not 5.2)
    labels = rank_labels(np.arange(101.0))
    np.testing.assert_allclose(labels[:100], np.arange(100) / 10.0)
    assert labels[100] == 9.9


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=60))
def test_rank_labels_are_monotone_on_the_grid_and_invariant_to_scaling(xs: list) -> None:
    v = np.array(xs)
    lab = rank_labels(v)
    assert lab.min() >= 0.0 and lab.max() <= 9.9
    np.testing.assert_allclose(lab * 10, np.round(lab * 10), atol=1e-9)  # one decimal
    order = np.argsort(v, kind="stable")
    assert np.all(np.diff(lab[order]) >= 0)
    # strictly increasing and exact in floating point, so ties stay ties
    np.testing.assert_array_equal(rank_labels(4.0 * v), lab)


def test_rank_labels_refuse_bad_input() -> None:
    with pytest.raises(InputError, match="at least 2"):
        rank_labels([1.0])
    with pytest.raises(InputError, match="finite"):
        rank_labels([1.0, np.nan, 2.0])


def test_pearson_r2() -> None:
    x = np.linspace(0, 1, 50)
    assert pearson_r2(3 * x + 1, x) == pytest.approx(1.0)
    assert pearson_r2(np.ones(50), x) == 0.0
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 4000))
    assert pearson_r2(a, b) < 0.01
    # r = 1/sqrt(2) for y = x + independent noise of equal variance: r² = 1/2
    assert pearson_r2(a + b, a) == pytest.approx(0.5, abs=0.03)
