"""Learning-rate schedules."""

from __future__ import annotations

import optax

__all__ = ["warmup_cosine"]


def warmup_cosine(
    peak: float, total_steps: int, warmup_steps: int = 0, end: float = 0.0
) -> optax.Schedule:
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then cosine decay to ``end`` at
    ``total_steps`` (Loshchilov & Hutter 2017; Goyal et al. 2017 for the warm-up).

    Raises:
        ValueError: ``total_steps < 1`` or ``warmup_steps`` outside ``[0, total_steps]``.
    """
    if total_steps < 1:
        raise ValueError(f"schedule total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, {total_steps}], got {warmup_steps}")
    if warmup_steps == 0:
        return optax.cosine_decay_schedule(peak, total_steps, alpha=end / peak if peak else 0.0)
    return optax.warmup_cosine_decay_schedule(
        0.0, peak, warmup_steps, max(total_steps, warmup_steps + 1), end_value=end
    )
