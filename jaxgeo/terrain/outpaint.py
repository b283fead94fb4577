"""Sliding-window outpainting: latent canvases larger than one training patch.

Windows of the training latent size (8 × 8) sweep the canvas in raster order with a stride
below the window, so each new window overlaps what is already generated. The overlap is held
fixed while the window is sampled (:func:`jaxgeo.terrain.flow.sample` with ``known``/``mask``),
so the new part continues the old one instead of meeting it at a seam. The finished latent
canvas is decoded in one call (the decoder is fully convolutional), so decoding adds no seams.

A window's outermost ``trim`` rows and columns on its far sides (bottom, right) are not kept
unless they lie on the canvas edge: there the velocity network sees its zero padding, and what
it generates at a window's border is biased (measured: a 4–5 m dip along every seam of a 32×32
model's canvas). The next window, whose interior they are, generates them instead.

:func:`tile_independently` is the baseline without overlap: windows sampled and decoded on
their own, side by side.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

__all__ = ["default_trim", "outpaint", "seam_lines", "tile_independently", "window_origins"]

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


def default_trim(window: int, stride: int) -> int:
    """The ``trim`` used unless one is given: 1 where windows overlap by more than one cell
    (so one known row is left after trimming), else 0."""
    return 1 if window - stride > 1 else 0


def _kept_end(start: int, n: int, window: int, trim: int) -> int:
    """End (exclusive) of what a window at ``start`` keeps along an axis of length ``n``."""
    end = start + window
    return end if end >= n else end - trim


def seam_lines(n: int, window: int, stride: int, trim: int | None = None) -> list[int]:
    """Indices where a window's new (unconstrained) part begins along one axis: the lines an
    outpainted canvas could show seams at (between index ``s - 1`` and ``s``). ``trim`` as
    for :func:`outpaint` (default :func:`default_trim`)."""
    if trim is None:
        trim = default_trim(window, stride)
    starts = window_origins(n, window, stride)
    return [_kept_end(prev, n, window, trim) for prev in starts[:-1]]


def outpaint(
    sample_window: WindowSampler,
    key: jax.Array,
    shape: tuple[int, int, int],
    *,
    window: int = 8,
    stride: int = 4,
    trim: int | None = None,
) -> np.ndarray:
    """Fill an ``(m, n, c)`` canvas window by window.

    Args:
        sample_window: ``(key, known, mask, i0, j0) -> x``: one ``(window, window, c)`` sample
            for the window at ``(i0, j0)`` that keeps ``known`` where ``mask`` (``(window,
            window, 1)``, 1 = already generated); it slices its own conditions by ``i0, j0``.
        key: Randomness (folded with the window's index).
        shape: Canvas ``(m, n, c)``.
        window, stride: Window side and step, in canvas cells.
        trim: Border rows/columns on a window's far sides left to the next window (see the
            module docstring); 0, or below ``window - stride`` so that windows still overlap;
            default :func:`default_trim`.

    Returns:
        The canvas, float32.

    Raises:
        ValueError: a ``trim`` that leaves no overlap between windows.
    """
    m, n, c = shape
    if trim is None:
        trim = default_trim(window, stride)
    if trim < 0 or (trim > 0 and trim >= window - stride):
        raise ValueError(f"trim must be in [0, {window - stride}) for window {window} and "
                         f"stride {stride}, got {trim}")  # fmt: skip
    canvas = np.zeros((m, n, c), np.float32)
    filled = np.zeros((m, n, 1), np.float32)
    idx = 0
    for i0 in window_origins(m, window, stride):
        for j0 in window_origins(n, window, stride):
            sl = (slice(i0, i0 + window), slice(j0, j0 + window))
            known, mask = canvas[sl], filled[sl]
            x = np.asarray(sample_window(jax.random.fold_in(key, idx), known, mask, i0, j0))
            ki, kj = _kept_end(i0, m, window, trim) - i0, _kept_end(j0, n, window, trim) - j0
            keep = (slice(i0, i0 + ki), slice(j0, j0 + kj))
            canvas[keep] = np.where(mask[:ki, :kj] > 0, known[:ki, :kj], x[:ki, :kj])
            filled[keep] = 1.0
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
