"""Sines and cosines that XLA vectorises on CPUs.

XLA's own ``sin``/``cos`` reduce arbitrary arguments element by element in scalar code on a CPU
(~11 ns an element on the 2-core development machine, against ~1.5 ns for ``exp``), which made
them the largest cost of the spherical-harmonic Fourier form and of SIREN layers. Here the
argument is reduced by the quadrant k = round(2x/π) in Cody–Waite form (π/2 split into parts
whose products with k are exact), and sin, cos of the rest (|r| <= π/4) are Taylor polynomials
truncated below half an ulp: multiply-adds and selects only, within ~1 ulp of the exact values,
~5× faster than ``jnp.sin`` on a CPU core (benchmarks/RESULTS.md). Derivatives are the exact
(cos, −sin) pair.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float

__all__ = ["PI", "cody_waite_parts", "sin", "sincos_reduced"]

# π, beyond double precision.
PI = Fraction("3.14159265358979323846264338327950288419716939937510582097494459230781640628")


@functools.lru_cache(maxsize=32)
def cody_waite_parts(value: Fraction, keep: int, n_parts: int) -> tuple[float, ...]:
    """``value = p_1 + … + p_n`` (Cody & Waite 1980), all but the last of ``keep`` significant
    bits, so that k p_i is exact for integers k of up to (significand − keep) bits; the last
    part is the rest, rounded."""
    parts, rest = [], value
    for _ in range(n_parts - 1):
        scale = Fraction(2) ** (keep - math.frexp(float(rest))[1])
        head = Fraction(math.floor(rest * scale)) / scale
        parts.append(float(head))
        rest -= head
    return (*parts, float(rest))


def _half_pi_parts(significand: int, k_bits: int, n_parts: int) -> tuple[float, ...]:
    """π/2 in ``n_parts`` parts with k p_i exact for |k| < 2^k_bits."""
    return cody_waite_parts(PI / 2, significand - k_bits, n_parts)


def _significand(dtype: jnp.dtype) -> int:
    return int(jnp.finfo(dtype).nmant) + 1


def _quadrant_sincos(x: Array, k: Array, parts: tuple[float, ...]) -> tuple[Array, Array]:
    """sin x, cos x given k = round(2x/π) and π/2 = Σ parts (k p_i exact but the last)."""
    dtype = x.dtype
    r = x
    for p in parts:
        r = r - k * float(np.asarray(p, dtype))
    r2 = r * r
    n = 5 if _significand(dtype) <= 24 else 8  # (π/4)^(2n+2) / (2n+2)! < eps / 2
    s = jnp.full_like(r, (-1) ** n / math.factorial(2 * n + 1))
    c = jnp.full_like(r, (-1) ** n / math.factorial(2 * n))
    for i in range(n - 1, -1, -1):
        s = s * r2 + (-1) ** i / math.factorial(2 * i + 1)
        c = c * r2 + (-1) ** i / math.factorial(2 * i)
    s = s * r
    int_dtype = jnp.int64 if jnp.finfo(dtype).bits == 64 else jnp.int32
    q = k.astype(int_dtype) & 3  # two's complement: k mod 4 for negative k too
    sin = jnp.where(q == 0, s, jnp.where(q == 1, c, jnp.where(q == 2, -s, -c)))
    cos = jnp.where(q == 0, c, jnp.where(q == 1, -s, jnp.where(q == 2, -c, s)))
    return sin, cos


@jax.custom_jvp
def sincos_reduced(r: Float[Array, "*s"]) -> tuple[Float[Array, "*s"], Float[Array, "*s"]]:
    """``(sin r, cos r)`` for angles already reduced to about [−π, π] (|r| < 11).

    Two parts of π/2 suffice there (k p_1 exact for |k| < 8, and r − k p_1 exact), so no
    range check is made.
    """
    k = lax.stop_gradient(jnp.round(r * (2.0 / math.pi)))
    return _quadrant_sincos(r, k, _half_pi_parts(_significand(r.dtype), 3, 2))


@sincos_reduced.defjvp
def _sincos_reduced_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[tuple, tuple]:
    (r,), (dr,) = primals, tangents
    sin, cos = sincos_reduced(r)
    return (sin, cos), (cos * dr, -sin * dr)


# Arguments up to 2^k_bits · π/2 are reduced by three exact-product parts of π/2 (float32:
# |x| < 1,608; float64: |x| < 1.6e6); beyond, the whole array takes XLA's sin (one check).
_K_BITS = {24: 10, 53: 20}


def _sincos_any(x: Array) -> tuple[Array, Array]:
    bits = _K_BITS.get(_significand(x.dtype))
    if bits is None:  # other float types: XLA's own
        return jnp.sin(x), jnp.cos(x)
    limit = 2.0**bits * (math.pi / 2) * 0.99

    def fast(v: Array) -> tuple[Array, Array]:
        k = lax.stop_gradient(jnp.round(v * (2.0 / math.pi)))
        return _quadrant_sincos(v, k, _half_pi_parts(_significand(v.dtype), bits, 3))

    def exact(v: Array) -> tuple[Array, Array]:
        return jnp.sin(v), jnp.cos(v)

    in_range = jnp.all(jnp.abs(lax.stop_gradient(x)) < limit)
    return lax.cond(in_range, fast, exact, x)


@jax.custom_jvp
def sin(x: Float[Array, "*s"]) -> Float[Array, "*s"]:
    """``sin x`` for any real x, vectorised (see the module docstring); within ~1 ulp."""
    return _sincos_any(x)[0]


@sin.defjvp
def _sin_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (x,), (dx,) = primals, tangents
    s, c = _sincos_any(x)
    return s, c * dx
