"""Sliding-window outpainting: latent canvases larger than one training patch.

Windows of the training latent size (8 × 8) sweep the canvas in raster order with a stride
below the window, so each new window overlaps what is already generated. The overlap is held
fixed while the window is sampled (:func:`jaxgeo.terrain.flow.sample` with ``known``/``mask``),
so the new part continues the old one instead of meeting it at a seam. The finished latent
canvas is decoded in one call (the decoder is fully convolutional), so decoding adds no seams.

:func:`tile_independently` is the baseline without overlap: windows sampled and decoded on
their own, side by side.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

__all__ = ["outpaint", "seam_lines", "tile_independently", "window_origins"]

WindowSampler = Callable[[jax.Array, np.ndarray, np.ndarray, int, int], np.ndarray]


def window_origins(n: int, window: int, stride: int) -> list[int]:
    """Start indices covering ``[0, n)`` with windows of ``window`` every ``stride`` (the last
    window flush with the end).

    Raises:
        ValueError: ``n < window`` or a stride outside ``[1, window]``.
    """
    if n < window:
        raise ValueError(f"canvas side {n} is smaller than the window {window}")
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be in [1, {window}], got {stride}")
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] != n - window:
        starts.append(n - window)
    return starts


def seam_lines(n: int, window: int, stride: int) -> list[int]:
    """Indices where a window's new (unconstrained) part begins along one axis: the lines an
    outpainted canvas could show seams at (between index ``s - 1`` and ``s``)."""
    starts = window_origins(n, window, stride)
    return [prev + window for prev in starts[:-1]]


def outpaint(
    sample_window: WindowSampler,
    key: jax.Array,
    shape: tuple[int, int, int],
    *,
    window: int = 8,
    stride: int = 4,
) -> np.ndarray:
    """Fill an ``(m, n, c)`` canvas window by window.

    Args:
        sample_window: ``(key, known, mask, i0, j0) -> x``: one ``(window, window, c)`` sample
            for the window at ``(i0, j0)`` that keeps ``known`` where ``mask`` (``(window,
            window, 1)``, 1 = already generated); it slices its own conditions by ``i0, j0``.
        key: Randomness (folded with the window's index).
        shape: Canvas ``(m, n, c)``.
        window, stride: Window side and step, in canvas cells.

    Returns:
        The canvas, float32.
    """
    m, n, c = shape
    canvas = np.zeros((m, n, c), np.float32)
    filled = np.zeros((m, n, 1), np.float32)
    idx = 0
    for i0 in window_origins(m, window, stride):
        for j0 in window_origins(n, window, stride):
            sl = (slice(i0, i0 + window), slice(j0, j0 + window))
            known, mask = canvas[sl], filled[sl]
            x = np.asarray(sample_window(jax.random.fold_in(key, idx), known, mask, i0, j0))
            canvas[sl] = np.where(mask > 0, known, x)
            filled[sl] = 1.0
            idx += 1
    return canvas


def tile_independently(
    sample_window: WindowSampler, key: jax.Array, shape: tuple[int, int, int], *, window: int = 8
) -> np.ndarray:
    """The no-overlap baseline: every window sampled on its own (``m``, ``n`` multiples of
    ``window``)."""
    m, n, c = shape
    canvas = np.zeros((m, n, c), np.float32)
    free = np.zeros((window, window, 1), np.float32)
    idx = 0
    for i0 in range(0, m, window):
        for j0 in range(0, n, window):
            x = sample_window(jax.random.fold_in(key, idx), np.zeros((window, window, c),
                              np.float32), free, i0, j0)  # fmt: skip
            canvas[i0 : i0 + window, j0 : j0 + window] = np.asarray(x)
            idx += 1
    return canvas
