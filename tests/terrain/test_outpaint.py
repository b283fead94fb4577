"""Sliding-window outpainting: coverage, seams, the known part held."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxgeo.terrain.metrics import seam_discontinuity
from jaxgeo.terrain.outpaint import (
    default_trim,
    outpaint,
    seam_lines,
    tile_independently,
    window_origins,
)


def test_window_origins_cover_and_end_flush() -> None:
    assert window_origins(16, 8, 4) == [0, 4, 8]
    assert window_origins(18, 8, 4) == [0, 4, 8, 10]
    assert window_origins(8, 8, 4) == [0]
    assert seam_lines(16, 8, 4, trim=0) == [8, 12]
    assert seam_lines(16, 8, 4, trim=1) == [7, 11]  # the last window reaches the edge
    assert seam_lines(16, 8, 4) == seam_lines(16, 8, 4, trim=default_trim(8, 4))
    assert default_trim(8, 4) == 1 and default_trim(8, 7) == 0 and default_trim(8, 8) == 0
    with pytest.raises(ValueError, match="smaller"):
        window_origins(4, 8, 4)


def test_outpaint_reproduces_a_field_the_sampler_knows() -> None:
    # A sampler that returns the window of one smooth global field: the canvas is that field
    # and has no seams.
    y, x = np.mgrid[0:20, 0:28].astype(np.float32)
    field = (0.01 * x**2 + 0.2 * y)[..., None]

    def sampler(key, known, mask, i0, j0):  # noqa: ANN001, ANN202
        return field[i0 : i0 + 8, j0 : j0 + 8]

    canvas = outpaint(sampler, jax.random.key(0), (20, 28, 1), window=8, stride=4)
    assert np.allclose(canvas, field)
    assert seam_discontinuity(canvas[..., 0], seam_lines(28, 8, 4), axis=1) < 1e-4


def test_outpaint_holds_what_is_already_generated() -> None:
    calls = []

    def sampler(key, known, mask, i0, j0):  # noqa: ANN001, ANN202
        calls.append(float(mask.mean()))
        return np.full((8, 8, 1), float(len(calls)), np.float32)

    canvas = outpaint(sampler, jax.random.key(0), (8, 16, 1), window=8, stride=4, trim=0)
    # Windows at columns 0, 4, 8: each writes only its new half.
    assert calls == [0.0, 0.5, 0.5]
    assert np.allclose(canvas[:, :8], 1.0) and np.allclose(canvas[:, 8:12], 2.0)
    assert np.allclose(canvas[:, 12:], 3.0)
    tiles = tile_independently(sampler, jax.random.key(0), (8, 16, 1), window=8)
    assert np.allclose(tiles[:, :8], 4.0) and np.allclose(tiles[:, 8:], 5.0)


def test_outpaint_leaves_window_borders_to_the_next_window() -> None:
    # trim = 1: a window's last column is not kept unless it is the canvas edge, so the next
    # window holds three known columns and generates from there.
    calls = []

    def sampler(key, known, mask, i0, j0):  # noqa: ANN001, ANN202
        calls.append(mask[0, :, 0].tolist())
        return np.full((8, 8, 1), float(len(calls)), np.float32)

    canvas = outpaint(sampler, jax.random.key(0), (8, 16, 1), window=8, stride=4, trim=1)
    assert calls[1] == [1, 1, 1, 0, 0, 0, 0, 0] and calls[2] == [1, 1, 1, 0, 0, 0, 0, 0]
    assert np.allclose(canvas[:, :7], 1.0) and np.allclose(canvas[:, 7:11], 2.0)
    assert np.allclose(canvas[:, 11:], 3.0)  # the last window keeps its border: canvas edge
    # Rows too: the first row of windows leaves its last row to the second.
    rows = outpaint(sampler, jax.random.key(0), (12, 8, 1), window=8, stride=4, trim=1)
    assert np.all(rows[:7] == rows[0, 0]) and np.all(rows[7:] == rows[7, 0])
    assert rows[0, 0] != rows[7, 0]
    with pytest.raises(ValueError, match="trim"):
        outpaint(sampler, jax.random.key(0), (8, 16, 1), window=8, stride=4, trim=4)
