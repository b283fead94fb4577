"""Real, orthonormal spherical harmonics by a stable recursion.

Convention (shared by every part of jaxgeo):

- θ is colatitude in [0, π], φ longitude in radians; both are radians.
- ``Y_lm`` is real and orthonormal on the unit sphere, ``∫ Y_lm Y_l'm' dΩ = δ_ll' δ_mm'``.
- m > 0 is the ``cos(mφ)`` family, m < 0 the ``sin(|m|φ)`` family, m = 0 the zonal one:

      Y_lm   = (−1)^m P̄_lm(cos θ) cos(mφ) / √(4π)      (m > 0)
      Y_l0   =        P̄_l0(cos θ)         / √(4π)
      Y_l,−m = (−1)^m P̄_lm(cos θ) sin(mφ) / √(4π)      (m > 0)

  where P̄_lm are the geodesy ("4π") fully normalised associated Legendre functions *without* the
  Condon–Shortley phase, so the factor (−1)^m above puts the Condon–Shortley phase back in.
  Equivalently, with the complex harmonics of ``scipy.special.sph_harm_y`` (which include the
  phase): ``Y_lm = √2 Re Y_l^m`` and ``Y_l,−m = √2 Im Y_l^m`` for m > 0. This is HipFT's
  convention for its tesseral validation fields (checked against HipFT's soccer-ball case).
- Coefficient vectors are flat, of length (l_max + 1)², with ``Y_lm`` at index ``l² + l + m``.

Algorithm: the modified forward column recursion of Holmes & Featherstone (2002, J. Geodesy 76,
279), which runs the three-term recursion in l on ``P̄_lm / sin^m θ`` (a polynomial in cos θ) and
applies ``sin^m θ`` at the end, so nothing underflows near the poles. Near the poles the scaled
values grow like ``1/sin^m θ``; rather than H&F's single global scale factor we carry a
power-of-two exponent with every value ("extended range" numbers, Fukushima 2012, J. Geodesy 86,
271), so the same code is exact in range for float64 and float32 at any degree. All columns m are
advanced together in one ``lax.scan`` over l, so the compiled program does not grow with l_max.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float, Int

from jaxgeo.errors import InputError

__all__ = [
    "index_to_lm",
    "lm_index",
    "n_coeffs",
    "real_sph_harm",
    "real_sph_harm_lm",
]


# ----------------------------------------------------------------------------------------------
# Index helpers
# ----------------------------------------------------------------------------------------------


def _as_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_l_max(l_max: object) -> int:
    l_max = _as_int(l_max, "l_max")
    if l_max < 0:
        raise InputError(f"l_max must be >= 0, got {l_max}")
    return l_max


def n_coeffs(l_max: int) -> int:
    """Number of real harmonics with degree up to ``l_max``: ``(l_max + 1)**2``."""
    return (_check_l_max(l_max) + 1) ** 2


def lm_index(l: int | np.ndarray, m: int | np.ndarray) -> int | np.ndarray:
    """Flat index ``l² + l + m`` of ``Y_lm`` in a coefficient vector.

    Args:
        l: degree, ``l >= 0`` (Python int or NumPy integer array).
        m: order, ``-l <= m <= l`` (same kind as ``l``, broadcast against it).

    Returns:
        The index, a Python int for scalar input, else a NumPy integer array.

    Raises:
        InputError: if ``l < 0`` or ``|m| > l``, or the inputs are not integers.
    """
    if np.ndim(l) == 0 and np.ndim(m) == 0:
        l_i, m_i = _as_int(l, "l"), _as_int(m, "m")
        if l_i < 0 or abs(m_i) > l_i:
            raise InputError(f"need l >= 0 and -l <= m <= l, got l={l_i}, m={m_i}")
        return l_i * l_i + l_i + m_i
    l_a, m_a = np.broadcast_arrays(np.asarray(l), np.asarray(m))
    if not (np.issubdtype(l_a.dtype, np.integer) and np.issubdtype(m_a.dtype, np.integer)):
        raise InputError(f"l and m must be integer arrays, got {l_a.dtype} and {m_a.dtype}")
    if np.any(l_a < 0) or np.any(np.abs(m_a) > l_a):
        raise InputError("need l >= 0 and -l <= m <= l for every entry of l and m")
    l_a = l_a.astype(np.int64)
    return l_a * l_a + l_a + m_a


def index_to_lm(i: int | np.ndarray) -> tuple[int, int] | tuple[np.ndarray, np.ndarray]:
    """Degree and order ``(l, m)`` of flat index ``i`` (inverse of :func:`lm_index`).

    Args:
        i: index ``>= 0`` (Python int or NumPy integer array).

    Returns:
        ``(l, m)`` as Python ints for scalar input, else as NumPy integer arrays.

    Raises:
        InputError: if ``i < 0`` or is not an integer.
    """
    if np.ndim(i) == 0:
        i_i = _as_int(i, "i")
        if i_i < 0:
            raise InputError(f"index must be >= 0, got {i_i}")
        l_i = math.isqrt(i_i)
        return l_i, i_i - l_i * l_i - l_i
    i_a = np.asarray(i)
    if not np.issubdtype(i_a.dtype, np.integer):
        raise InputError(f"index must be an integer array, got {i_a.dtype}")
    if np.any(i_a < 0):
        raise InputError("every index must be >= 0")
    i_a = i_a.astype(np.int64)
    l_a = np.floor(np.sqrt(i_a.astype(np.float64))).astype(np.int64)
    # The float square root can be off by one for huge indices; correct it exactly.
    l_a = np.where(l_a * l_a > i_a, l_a - 1, l_a)
    l_a = np.where((l_a + 1) * (l_a + 1) <= i_a, l_a + 1, l_a)
    return l_a, i_a - l_a * l_a - l_a


# ----------------------------------------------------------------------------------------------
# Static recursion tables (NumPy, float64, cached per degree)
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _column_tables(l_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients of the column recursion for the scaled ``P̄_lm / sin^m θ``.

    Returns ``(a, b, seed)``, each (l_max+1, l_max+1) indexed [l, m]:
    ``s_lm = a_lm t s_{l-1,m} − b_lm s_{l-2,m} + seed_lm`` with t = cos θ, where ``seed`` is
    the sectoral start ``s_mm`` (H&F 2002 eqs. 12–13 without the ``sin^m θ`` factor) on the
    diagonal and zero elsewhere, and a, b vanish for l <= m so the columns start cleanly.
    """
    l = np.arange(l_max + 1, dtype=np.float64)[:, None]
    m = np.arange(l_max + 1, dtype=np.float64)[None, :]
    below = l > m
    with np.errstate(divide="ignore", invalid="ignore"):
        # H&F 2002 eq. 11.
        a = np.sqrt((2 * l - 1) * (2 * l + 1) / ((l - m) * (l + m)))
        b = np.sqrt((2 * l + 1) * (l + m - 1) * (l - m - 1) / ((l - m) * (l + m) * (2 * l - 3)))
    a = np.where(below, a, 0.0)
    b = np.where(below & (l >= m + 2), b, 0.0)
    # Sectoral seeds: s_00 = 1, s_11 = √3, s_mm = √((2m+1)/(2m)) s_{m-1,m-1}.
    ratio = np.ones(l_max + 1)
    if l_max >= 1:
        ratio[1] = math.sqrt(3.0)
        k = np.arange(2, l_max + 1, dtype=np.float64)
        ratio[2:] = np.sqrt((2 * k + 1) / (2 * k))
    seed = np.diag(np.cumprod(ratio))
    for arr in (a, b, seed):
        arr.setflags(write=False)
    return a, b, seed


@functools.lru_cache(maxsize=64)
def _flat_layout(l_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each flat index k: degree l, |m|, and whether it is the sin family (m < 0)."""
    l_a, m_a = index_to_lm(np.arange((l_max + 1) ** 2))
    out = (np.asarray(l_a), np.abs(m_a), np.asarray(m_a) < 0)
    for arr in out:
        arr.setflags(write=False)
    return out


def _phase_norm(ms: np.ndarray) -> np.ndarray:
    """(−1)^m / √(4π): Condon–Shortley phase and the 4π → orthonormal factor."""
    return np.where(ms % 2 == 0, 1.0, -1.0) / math.sqrt(4.0 * math.pi)


# ----------------------------------------------------------------------------------------------
# Extended-range arithmetic helpers
# ----------------------------------------------------------------------------------------------


def _float_info(dtype: jnp.dtype) -> tuple[int, int, int, type]:
    info = jnp.finfo(dtype)
    nmant = int(info.nmant)
    bias = -int(info.minexp) + 1
    int_dtype = jnp.int64 if info.bits == 64 else jnp.int32
    return nmant, bias, int(info.maxexp), int_dtype


def _pow2(n: Int[Array, "*s"], dtype: jnp.dtype) -> Float[Array, "*s"]:
    """Exact ``2**n`` for integer n in the normal range (clipped there), built from the bits."""
    nmant, bias, maxexp, int_dtype = _float_info(dtype)
    n = jnp.clip(n, 1 - bias, maxexp - 1).astype(int_dtype)
    bits = lax.shift_left(n + bias, jnp.asarray(nmant, int_dtype))
    return lax.bitcast_convert_type(bits, dtype)


def _ldexp(x: Float[Array, "*s"], n: Int[Array, "*s"]) -> Float[Array, "*s"]:
    """``x * 2**n``, exactly wherever the result is representable.

    Two power-of-two factors: the first clipped to the normal exponent range, the second
    takes the rest, so subnormal inputs and results come out right and results below the
    range flush to zero (never inf * 0).
    """
    _, bias, maxexp, _ = _float_info(x.dtype)
    n1 = jnp.clip(n, 1 - bias, maxexp - 1)
    return (x * _pow2(n1, x.dtype)) * _pow2(n - n1, x.dtype)


def _rescale_step(dtype: jnp.dtype) -> int:
    # Rescale once a value leaves [2^-B, 2^B]; B = maxexp/4 leaves room for one recursion step
    # (growth <= ~2 sqrt(2l)) and for the product of two such values.
    return _float_info(dtype)[2] // 4


def _column_step(carry, row):
    # One degree l of the H&F column recursion for all orders at once, on extended-range
    # numbers. Module-level (not a closure) so that eager calls reuse the traced scan body.
    #   s1, s2: mantissas of s_{l-1,m}, s_{l-2,m} (s = P̄ / sin^m θ), sharing exponent expo;
    #   pw_mant, pw_exp: f^l 2^(l k) = sin^l θ, with sin θ = f 2^k, f in [0.5, 1);
    #   um_mant, um_exp: sin^m θ per column, filled in when l reaches m.
    s1, s2, expo, pw_mant, pw_exp, um_mant, um_exp, tc, f, k = carry
    a_l, b_l, seed_l, is_start = row
    big = _rescale_step(s1.dtype)

    um_mant = jnp.where(is_start, pw_mant[:, None], um_mant)
    um_exp = jnp.where(is_start, pw_exp[:, None], um_exp)
    # Next power of sin θ; rescaled up whenever it drops below 2^-big, so it never underflows.
    pw_mant = pw_mant * f
    small = lax.stop_gradient(jnp.abs(pw_mant)) < 2.0**-big
    pw_mant = jnp.where(small, pw_mant * 2.0**big, pw_mant)
    pw_exp = pw_exp + k - jnp.where(small, big, 0)

    s0 = a_l * tc * s1 - b_l * s2 + seed_l
    # The scaled values grow like 1/sin^m θ towards the poles: rescale the pair (s0, s1)
    # together, so the three-term recursion stays exact, once s0 passes 2^big.
    over = lax.stop_gradient(jnp.abs(s0)) > 2.0**big
    s0 = jnp.where(over, s0 * 2.0**-big, s0)
    s1 = jnp.where(over, s1 * 2.0**-big, s1)
    expo = expo + jnp.where(over, big, 0)
    p = _ldexp(s0 * um_mant, expo + um_exp)
    return (s0, s1, expo, pw_mant, pw_exp, um_mant, um_exp, tc, f, k), p


def _legendre_columns(
    t: Float[Array, " n"], u: Float[Array, " n"], l_max: int, ms: np.ndarray
) -> Float[Array, "l n c"]:
    """Fully normalised (4π, no Condon–Shortley) ``P̄_lm`` for l = 0..l_max and m in ms.

    Args:
        t: cos θ, shape (n,).
        u: sin θ, shape (n,) (signed: θ outside [0, π] continues analytically).
        l_max: highest degree.
        ms: static orders (NumPy int array of length c), each <= l_max.

    Returns:
        Array (l_max + 1, n, c); entries with l < m are zero.
    """
    dtype = t.dtype
    a_tab, b_tab, seed_tab = _column_tables(l_max)
    a = jnp.asarray(a_tab[:, ms], dtype)
    b = jnp.asarray(b_tab[:, ms], dtype)
    seed = jnp.asarray(seed_tab[:, ms], dtype)
    is_start = jnp.asarray(np.arange(l_max + 1)[:, None] == ms[None, :])

    # sin θ = f 2^k exactly; the split is outside the derivative, f carries the gradient.
    _, k = jnp.frexp(lax.stop_gradient(u))
    k = k.astype(jnp.int32)
    f = _ldexp(u, -k)  # two steps: u may be subnormal

    n, c = t.shape[0], len(ms)
    zeros = jnp.zeros((n, c), dtype)
    izeros = jnp.zeros((n, c), jnp.int32)
    init = (
        zeros,
        zeros,
        izeros,
        jnp.ones((n,), dtype),
        jnp.zeros((n,), jnp.int32),
        zeros,
        izeros,
        t[:, None],
        f,
        k,
    )
    _, p = lax.scan(_column_step, init, (a, b, seed, is_start))
    return p


def _prepare_points(theta: ArrayLike, phi: ArrayLike) -> tuple[Array, Array, tuple[int, ...]]:
    """Common float dtype, broadcast, flattened; returns (theta, phi, broadcast shape)."""
    theta_a, phi_a = jnp.asarray(theta), jnp.asarray(phi)
    floats = [jnp.issubdtype(x.dtype, jnp.floating) for x in (theta_a, phi_a)]
    if all(floats) and theta_a.dtype != phi_a.dtype:
        raise InputError(
            f"theta and phi must have the same float dtype, got {theta_a.dtype} and {phi_a.dtype}"
        )
    if any(floats):
        dtype = theta_a.dtype if floats[0] else phi_a.dtype
    else:
        dtype = jnp.result_type(float)
    theta_a, phi_a = jnp.broadcast_arrays(theta_a.astype(dtype), phi_a.astype(dtype))
    return theta_a.reshape(-1), phi_a.reshape(-1), theta_a.shape


def _legendre_table(l_max: int, theta: Float[Array, " n"]) -> Float[Array, "n l m"]:
    """``P̄_lm(cos θ)`` (4π-normalised, no Condon–Shortley phase) for all l, m <= l_max."""
    ms = np.arange(l_max + 1)
    p = _legendre_columns(jnp.cos(theta), jnp.sin(theta), l_max, ms)
    return jnp.moveaxis(p, 0, 1)


def _trig(phi: Float[Array, " n"], l_max: int) -> tuple[Float[Array, "n m"], Float[Array, "n m"]]:
    m = jnp.arange(l_max + 1, dtype=phi.dtype)
    mphi = phi[:, None] * m[None, :]
    return jnp.cos(mphi), jnp.sin(mphi)


# ----------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------


def real_sph_harm(
    l_max: int, theta: Float[ArrayLike, "*points"], phi: Float[ArrayLike, "*points"]
) -> Float[Array, "*points k"]:
    """All real orthonormal spherical harmonics ``Y_lm(θ, φ)`` with ``l <= l_max``.

    Condon–Shortley phase included (see the module docstring for the full convention). Stable
    at and near the poles and to high degree (tested to l = 300 in float64; float32 stays in
    range too). Differentiable in θ and φ everywhere, poles included: ``sin θ`` and ``cos θ``
    are used directly, never ``sqrt(1 − cos²θ)``.

    Args:
        l_max: highest degree (static Python int, ``>= 0``); jit with ``static_argnums=0``.
        theta: colatitude in radians, any shape broadcastable with ``phi``.
        phi: longitude in radians.

    Returns:
        Array of shape ``(*points, (l_max + 1)**2)`` with ``Y_lm`` at index ``l² + l + m``,
        in the floating dtype of the inputs (the default float dtype for integer inputs).

    Raises:
        InputError: if ``l_max`` is not a non-negative integer, or theta and phi have
            different float dtypes.
    """
    l_max = _check_l_max(l_max)
    theta_f, phi_f, shape = _prepare_points(theta, phi)
    dtype = theta_f.dtype
    p = _legendre_columns(jnp.cos(theta_f), jnp.sin(theta_f), l_max, np.arange(l_max + 1))
    cos_m, sin_m = _trig(phi_f, l_max)

    l_k, m_k, is_sin = _flat_layout(l_max)
    n_m = l_max + 1
    # Gather P̄[l, |m|] and the matching cos/sin column for every flat index k.
    legendre = p[jnp.asarray(l_k), :, jnp.asarray(m_k)]  # (k, n)
    trig = jnp.concatenate([cos_m, sin_m], axis=1)  # (n, 2 n_m)
    trig = trig[:, jnp.asarray(m_k + n_m * is_sin)]  # (n, k)
    scale = jnp.asarray(_phase_norm(m_k), dtype)
    y = legendre.T * trig * scale
    return y.reshape(*shape, (l_max + 1) ** 2)


def real_sph_harm_lm(
    l: int, m: int, theta: Float[ArrayLike, "*points"], phi: Float[ArrayLike, "*points"]
) -> Float[Array, "*points"]:
    """One real orthonormal spherical harmonic ``Y_lm(θ, φ)`` (same convention as
    :func:`real_sph_harm`), at O(l) cost instead of O(l²).

    Args:
        l: degree (static Python int, ``>= 0``).
        m: order (static Python int, ``-l <= m <= l``): m > 0 cos(mφ), m < 0 sin(|m|φ).
        theta: colatitude in radians.
        phi: longitude in radians, broadcast against ``theta``.

    Returns:
        Array of the broadcast shape of ``theta`` and ``phi``.

    Raises:
        InputError: if ``l`` or ``m`` are not integers with ``l >= 0``, ``|m| <= l``.
    """
    lm_index(l, m)  # validates
    l, m = int(l), int(m)
    theta_f, phi_f, shape = _prepare_points(theta, phi)
    am = abs(m)
    p = _legendre_columns(jnp.cos(theta_f), jnp.sin(theta_f), l, np.array([am]))[-1, :, 0]
    trig = jnp.cos(am * phi_f) if m >= 0 else jnp.sin(am * phi_f)
    return (p * trig * float(_phase_norm(np.array(am)))).reshape(shape)


def _split_coeffs(
    coeffs: Float[Array, "*b k"], l_max: int
) -> tuple[Float[Array, "*b l m"], Float[Array, "*b l m"]]:
    """Flat coefficients -> (cos family [l, m], sin family [l, m]) with zeros where m > l
    (and in the sin family at m = 0)."""
    n_m = l_max + 1
    l = np.arange(n_m)[:, None]
    m = np.arange(n_m)[None, :]
    valid = m <= l
    k = (l * l + l) + 0 * m
    missing = n_m * n_m  # index of an appended zero
    idx_cos = np.where(valid, k + m, missing)
    idx_sin = np.where(valid & (m > 0), k - m, missing)
    padded = jnp.concatenate([coeffs, jnp.zeros((*coeffs.shape[:-1], 1), coeffs.dtype)], axis=-1)
    return padded[..., jnp.asarray(idx_cos)], padded[..., jnp.asarray(idx_sin)]


def _merge_coeffs(
    cos_part: Float[Array, "*b l m"], sin_part: Float[Array, "*b l m"], l_max: int
) -> Float[Array, "*b k"]:
    """Inverse of :func:`_split_coeffs`."""
    l_k, m_k, is_sin = _flat_layout(l_max)
    n_m = l_max + 1
    both = jnp.concatenate([cos_part, sin_part], axis=-1)  # [..., l, 2 n_m]
    both = both.reshape(*both.shape[:-2], n_m * 2 * n_m)
    return both[..., jnp.asarray(l_k * 2 * n_m + m_k + n_m * is_sin)]


def _l_max_of(n: int, what: str) -> int:
    l_max = math.isqrt(n) - 1
    if (l_max + 1) ** 2 != n or n == 0:
        raise InputError(f"{what} must have a last axis of length (l_max + 1)**2, got {n}")
    return l_max
