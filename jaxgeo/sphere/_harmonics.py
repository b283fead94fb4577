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

Algorithms. Up to degree 100, :func:`real_sph_harm` uses the Fourier form: each P̄_lm(cos θ)
(for odd m divided by sin θ) is a cosine series in θ whose coefficients are tabulated once
(FFT of the recursion below on an equispaced θ grid), so all (l_max + 1)² harmonics of a batch
of points are one dense matrix product of the cos jθ basis with that table, times the φ factor
— the form that CPUs and GPUs evaluate fastest. Above degree 100
(and with ``method="recursion"``) it uses the modified forward column recursion of Holmes & Featherstone (2002, J. Geodesy 76,
279), which runs the three-term recursion in l on ``P̄_lm / sin^m θ`` (a polynomial in cos θ) and
applies ``sin^m θ`` at the end, so nothing underflows near the poles. Near the poles the scaled
values grow like ``1/sin^m θ``; rather than H&F's single global scale factor we carry a
power-of-two exponent with every value ("extended range" numbers, Fukushima 2012, J. Geodesy 86,
271), so the same code is exact in range for float64 and float32 at any degree. All columns m are
advanced together in one ``lax.scan`` over l, so the compiled program does not grow with l_max.

Rounding (what matters in float32): the recursion runs in Reinsch's difference form on
w = 1 − cos θ' = 2 sin²(θ'/2), with θ' = min(θ, π − θ) the angle to the nearer pole (formed
exactly), so neither the rounding of cos θ nor the cancellation in the three-term recursion
near the poles is amplified by the l² slope of P_l there; and m φ is reduced modulo 2π exactly
before its cosine is taken. What is left is the ~ l eps floor of any float32 evaluation;
``precision="high"`` evaluates in float64 and forms only the last product in float32 (see
:func:`real_sph_harm`).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float, Int

from jaxgeo._trig import PI, cody_waite_parts
from jaxgeo._trig import sincos_reduced as _sincos_reduced
from jaxgeo.errors import ConfigError, InputError

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
def _column_tables(
    l_max: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients of the column recursion for the scaled ``s_lm = P̄_lm / sin^m θ``.

    The three-term recursion (H&F 2002 eq. 11) ``s_l = a_l t s_{l-1} − b_l s_{l-2}`` with
    t = cos θ is run in Reinsch's difference form (Reinsch 1967; Gentleman 1969, Comput. J. 12,
    160), written with w = 1 − t = 2 sin²(θ/2):

        D_l = c_l D_{l-1} − a_l w s_{l-1} + seed_l,      s_l = ρ_l s_{l-1} + D_l,

    where ``D_l = s_l − ρ_l s_{l-1}``, ``ρ_l = σ_l / σ_{l-1}`` is the ratio of the values at
    t = 1 (``σ_lm = s_lm(1)``, so ``ρ_l = a_l − b_l / ρ_{l-1}``) and ``c_l = b_l / ρ_{l-1}``.
    At t = 1 the D_l vanish, so near the poles D is small and computed to full *relative*
    precision from the accurate w, instead of appearing as the difference of two nearly equal
    terms whose rounding (and that of t itself) is amplified like l² (P_l'(1) = l(l+1)/2).

    Returns ``(a, b, rho, c, seed)``, each (l_max+1, l_max+1) indexed [l, m]; ``seed`` is the
    sectoral start ``s_mm`` (H&F eqs. 12–13 without ``sin^m θ``) on the diagonal, zero
    elsewhere; a, ρ vanish for l <= m, b and c also at l = m + 1, so the columns start
    cleanly.
    """
    l = np.arange(l_max + 1, dtype=np.float64)[:, None]
    m = np.arange(l_max + 1, dtype=np.float64)[None, :]
    below = l > m
    with np.errstate(divide="ignore", invalid="ignore"):
        # H&F 2002 eq. 11.
        a = np.sqrt((2 * l - 1) * (2 * l + 1) / ((l - m) * (l + m)))
        b = np.sqrt((2 * l + 1) * (l + m - 1) * (l - m - 1) / ((l - m) * (l + m) * (2 * l - 3)))
        # σ_lm ∝ sqrt((2l+1) (l+m)! / (l-m)!), from P_l^m(x) / (1-x²)^(m/2) at x = 1.
        rho = np.sqrt((2 * l + 1) / (2 * l - 1) * (l + m) / (l - m))
        rho_prev = np.sqrt((2 * l - 1) / (2 * l - 3) * (l + m - 1) / (l - m - 1))
        c = b / rho_prev
    a = np.where(below, a, 0.0)
    b = np.where(below & (l >= m + 2), b, 0.0)
    rho = np.where(below, rho, 0.0)
    c = np.where(below & (l >= m + 2), c, 0.0)
    # Sectoral seeds: s_00 = 1, s_11 = √3, s_mm = √((2m+1)/(2m)) s_{m-1,m-1}.
    ratio = np.ones(l_max + 1)
    if l_max >= 1:
        ratio[1] = math.sqrt(3.0)
        k = np.arange(2, l_max + 1, dtype=np.float64)
        ratio[2:] = np.sqrt((2 * k + 1) / (2 * k))
    seed = np.diag(np.cumprod(ratio))
    for arr in (a, b, rho, c, seed):
        arr.setflags(write=False)
    return a, b, rho, c, seed


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


# Points with cos θ' > 1/2 (θ' < 60°) use the difference form, the others the plain three-term
# form on t = cos θ': there t is known to better *relative* precision than w = 1 − t (which
# matters for the tiny values next to the zeros of odd P̄_lm at the equator), and the rounding
# of either propagates as ~ l eps |t| / sin θ' or l eps |w| / sin θ', so each form is used where
# its variable is the smaller one.
_DIFFERENCE_FORM_BELOW_W = 0.5


def _column_step(carry, row):
    # One degree l of the column recursion for all orders at once, on extended-range numbers,
    # in difference form (dif) or plain form per point (see _column_tables). Module-level
    # (not a closure) so that eager calls reuse the traced scan body.
    #   s1: mantissas of s_{l-1,m} (s = P̄ / sin^m θ); v1 those of D_{l-1,m} (difference form)
    #       or s_{l-2,m} (plain form); both share the exponent expo;
    #   pw_mant, pw_exp: f^l 2^(l k) = sin^l θ, with sin θ = f 2^k, f in [0.5, 1);
    #   um_mant, um_exp: sin^m θ per column, filled in when l reaches m;
    #   sg: (−1)^l where θ was reflected to π − θ (P̄_lm(−t) = (−1)^(l+m) P̄_lm(t)), else 1;
    #   z: −w (difference form) or t (plain form).
    s1, v1, expo, pw_mant, pw_exp, um_mant, um_exp, sg, flip, dif, z, f, k = carry
    a_l, b_l, rho_l, c_l, seed_l, is_start = row
    big = _rescale_step(s1.dtype)

    um_mant = jnp.where(is_start, (pw_mant * sg)[:, None], um_mant)
    um_exp = jnp.where(is_start, pw_exp[:, None], um_exp)
    # Next power of sin θ; rescaled up whenever it drops below 2^-big, so it never underflows.
    pw_mant = pw_mant * f
    small = lax.stop_gradient(jnp.abs(pw_mant)) < 2.0**-big
    pw_mant = jnp.where(small, pw_mant * 2.0**big, pw_mant)
    pw_exp = pw_exp + k - jnp.where(small, big, 0)

    # Difference form: D_l = c_l D_{l-1} − a_l w s_{l-1} + seed_l, s_l = ρ_l s_{l-1} + D_l.
    # Plain form:      s_l = a_l t s_{l-1} − b_l s_{l-2} + seed_l.
    head = jnp.where(dif, c_l, -b_l) * v1 + a_l * (z * s1) + seed_l
    s0 = jnp.where(dif, rho_l * s1 + head, head)
    v0 = jnp.where(dif, head, s1)
    # The scaled values grow like 1/sin^m θ towards the poles: rescale the pair (s0, v0)
    # together, so the recursion stays exact, once s0 passes 2^big.
    over = lax.stop_gradient(jnp.abs(s0)) > 2.0**big
    s0 = jnp.where(over, s0 * 2.0**-big, s0)
    v0 = jnp.where(over, v0 * 2.0**-big, v0)
    expo = expo + jnp.where(over, big, 0)
    p = _ldexp(s0 * (um_mant * sg[:, None]), expo + um_exp)
    sg = sg * flip
    return (s0, v0, expo, pw_mant, pw_exp, um_mant, um_exp, sg, flip, dif, z, f, k), p


# π − fl64(π), beyond double precision.
_PI_TAIL = float(PI - Fraction(math.pi))


def _polar_angle(theta: Float[Array, " n"]) -> tuple[Array, Array, Array, Array]:
    """``(t, w, u, flip)``: cos θ', 1 − cos θ', sin θ' for θ' the angle to the nearer pole.

    θ > π/2 is reflected to θ' = π − θ (flip = −1, else +1), using P̄_lm(−t) =
    (−1)^(l+m) P̄_lm(t). With π = π_hi + π_lo, d = π_hi − θ is exact (Sterbenz's lemma) and
    θ' = d + π_lo; the π_lo part enters through a first-order term (sin(d + e) = sin d +
    e cos d to O(e²) = O(eps²)), not through ``(π_hi − θ) + π_lo``, which XLA would fold into
    ``(π_hi + π_lo) − θ`` and so round θ' to the absolute precision of π. Thus θ' keeps full
    relative precision next to the south pole, where a rounded cos θ would lose it; and
    w = 2 sin²(θ'/2) is good to a few ulps where 1 − cos θ' would cancel. θ outside [0, π]
    continues analytically (u is signed).
    """
    dtype = theta.dtype
    pi_hi = float(np.asarray(math.pi, dtype))
    pi_lo = float(np.asarray((math.pi - pi_hi) + _PI_TAIL, dtype))
    south = lax.stop_gradient(theta) > 0.5 * pi_hi
    d = jnp.where(south, pi_hi - theta, theta)
    e = jnp.where(south, pi_lo, 0.0).astype(dtype)
    sin_d, cos_d = jnp.sin(d), jnp.cos(d)
    half = jnp.sin(0.5 * d) + (0.5 * e) * jnp.cos(0.5 * d)
    w = 2.0 * (half * half)
    t = cos_d - e * sin_d
    u = sin_d + e * cos_d
    flip = jnp.where(south, -1.0, 1.0).astype(dtype)
    return t, w, u, flip


def _legendre_columns(
    theta: Float[Array, " n"], l_max: int, ms: np.ndarray
) -> Float[Array, "l n c"]:
    """Fully normalised (4π, no Condon–Shortley) ``P̄_lm(cos θ)`` for l = 0..l_max and m in ms.

    Args:
        theta: colatitude θ, shape (n,) (outside [0, π] the functions continue analytically).
        l_max: highest degree.
        ms: static orders (NumPy int array of length c), each <= l_max.

    Returns:
        Array (l_max + 1, n, c); entries with l < m are zero.
    """
    dtype = theta.dtype
    rows = tuple(jnp.asarray(tab[:, ms], dtype) for tab in _column_tables(l_max))
    is_start = jnp.asarray(np.arange(l_max + 1)[:, None] == ms[None, :])
    t, w, u, flip = _polar_angle(theta)
    dif = lax.stop_gradient(w) < _DIFFERENCE_FORM_BELOW_W
    z = jnp.where(dif, -w, t)

    # sin θ = f 2^k exactly; the split is outside the derivative, f carries the gradient.
    _, k = jnp.frexp(lax.stop_gradient(u))
    k = k.astype(jnp.int32)
    f = _ldexp(u, -k)  # two steps: u may be subnormal

    n, c = theta.shape[0], len(ms)
    zeros = jnp.zeros((n, c), dtype)
    izeros = jnp.zeros((n, c), jnp.int32)
    ones = jnp.ones((n,), dtype)
    init = (
        zeros,
        zeros,
        izeros,
        ones,
        jnp.zeros((n,), jnp.int32),
        zeros,
        izeros,
        ones,
        flip,
        dif[:, None],
        z[:, None],
        f,
        k,
    )
    _, p = lax.scan(_column_step, init, (*rows, is_start))
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
    p = _legendre_columns(theta, l_max, ms)
    return jnp.moveaxis(p, 0, 1)


def _two_pi_parts(keep: int) -> tuple[float, ...]:
    """2π = p1 + p2 + p3 (Cody–Waite) with p1, p2 of ``keep`` significant bits each, so that
    k p1 and k p2 are exact for integers k of up to (mantissa − keep) bits; p3 is the rest."""
    return cody_waite_parts(2 * PI, keep, 3)


def _reduced_angles(phi: Float[Array, " n"], ms: np.ndarray) -> Float[Array, "n c"]:
    """``m φ`` reduced to about [−π, π], for the static orders ms (n, len(ms)).

    Rounding the product m·φ before the cosine would cost m·|φ|·eps in the phase (3e-5 at
    m = 100 in float32), so m·φ is reduced modulo 2π exactly instead: φ is first brought to
    [−π, π] as a two-part number, its head is cut to ``mantissa − bits(l_max)`` bits so that
    m·head is exact, and that is reduced by a three-part 2π (Cody & Waite 1980). Only the
    final reduced angle is rounded, so every cos(mφ) is good to a couple of ulps.
    """
    dtype = phi.dtype
    nmant, _, _, int_dtype = _float_info(dtype)
    # At least 8 bits: φ itself is then reduced exactly for |φ| < 2^8 · 2π.
    bits = min(max(int(np.max(ms, initial=0)).bit_length() + 1, 8), (nmant + 1) // 2)
    keep = nmant + 1 - bits  # significant bits kept in the heads
    # φ = φ_a + φ_b + 2π k0, |φ_a| <= π: q1 has `keep` bits, so k0 q1 and φ − k0 q1 are exact
    # (the latter by Sterbenz) for |k0| < 2^bits.
    q1, q2, q3 = _two_pi_parts(keep)
    k0 = lax.stop_gradient(jnp.round(phi * (1.0 / (2.0 * math.pi))))
    phi_a = phi - k0 * q1
    phi_b = -(k0 * (q2 + q3))
    # Head of φ_a with its lowest `bits` mantissa bits cleared, so m·head is exact.
    mask = ~((1 << bits) - 1)
    head = lax.bitcast_convert_type(
        lax.bitcast_convert_type(lax.stop_gradient(phi_a), int_dtype)
        & jnp.asarray(mask, int_dtype),
        dtype,
    )
    tail = phi_a - head
    m = jnp.asarray(ms, dtype)[None, :]
    x = m * head[:, None]  # exact
    k = jnp.round(x * (1.0 / (2.0 * math.pi)))
    # |k| <= max(ms) / 2 + 1 fits in `bits` bits: k p1, k p2 exact, x − k p1 exact (Sterbenz).
    return ((x - k * q1) - k * q2) - k * q3 + m * (tail + phi_b)[:, None]


def _trig(phi: Float[Array, " n"], l_max: int) -> tuple[Float[Array, "n m"], Float[Array, "n m"]]:
    """``cos(mφ)`` and ``sin(mφ)`` for m = 0..l_max, shape (n, l_max + 1)."""
    sin, cos = _sincos_reduced(_reduced_angles(phi, np.arange(l_max + 1)))
    return cos, sin


def _result_dtype(dtype: object, default: jnp.dtype) -> jnp.dtype:
    """``dtype`` (a floating dtype) or, for None, ``default``."""
    if dtype is None:
        return jnp.dtype(default)
    try:
        out = jnp.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        out = None
    if out is None or not jnp.issubdtype(out, jnp.floating):
        raise ConfigError(f"dtype must be a floating dtype such as float32, got {dtype!r}")
    return jnp.dtype(jax.dtypes.canonicalize_dtype(out))


def _working_dtype(precision: object, dtype: jnp.dtype) -> jnp.dtype:
    """The dtype to compute in: the input's, or float64 for ``precision="high"``."""
    if precision not in ("default", "high"):
        raise ConfigError(f"precision must be 'default' or 'high', got {precision!r}")
    if precision == "default" or jnp.finfo(dtype).bits >= 64:
        return dtype
    if not jax.config.read("jax_enable_x64"):
        raise ConfigError(
            f"precision='high' computes {jnp.dtype(dtype).name} input in float64, which needs "
            "jax.config.update('jax_enable_x64', True); without it use precision='default'"
        )
    return jnp.dtype(jnp.float64)


# ----------------------------------------------------------------------------------------------
# Fourier form: all harmonics of one point as one matrix product (degrees <= _FOURIER_MAX_DEGREE)
# ----------------------------------------------------------------------------------------------

# Up to this degree real_sph_harm uses the Fourier form below (a dense matrix product, which
# vectorises far better on CPUs and GPUs than the l-by-l recursion); above it, the recursion,
# whose cost grows like l² per point instead of l³ and whose tables stay small.
_FOURIER_MAX_DEGREE = 100


def _legendre_scaled_np(l_max: int, theta: np.ndarray) -> np.ndarray:
    """``s_lm(cos θ) = P̄_lm / sin^m θ`` in float64 NumPy, shape (l_max+1, n, l_max+1) [l, ., m].

    The plain column recursion (H&F eq. 11) on t = cos θ, used only to tabulate the Fourier
    coefficients on an equispaced θ grid, where it is accurate to ~1e-15 relative (the
    polynomials s_lm are bounded by s_lm(1) <= 1e140 for l <= 100, well inside float64).
    """
    a, b, _, _, seed = _column_tables(l_max)
    t = np.cos(theta)
    n_l = l_max + 1
    s = np.zeros((n_l, theta.size, n_l))
    diag = np.diag(seed)
    for l in range(n_l):
        s[l, :, l] = diag[l]
        if l >= 1:
            s[l, :, :l] += a[l, None, :l] * t[:, None] * s[l - 1, :, :l]
        if l >= 2:
            s[l, :, :l] -= b[l, None, :l] * s[l - 2, :, :l]
    return s


def _sin_factor(ms: np.ndarray) -> np.ndarray:
    """Power of sin θ factored out of the Fourier-form columns of order |m|: 1 for odd m, else 0.

    P̄_lm(cos θ) = sin^m θ × (polynomial in cos θ) is a cosine series in θ for even m and a
    sine series for odd m; dividing the odd ones by sin θ makes every column a cosine series,
    so one basis cos jθ (j = 0..l_max) serves them all.
    """
    return (np.asarray(ms) % 2).astype(np.int64)


@functools.lru_cache(maxsize=8)
def _fourier_tables(l_max: int) -> np.ndarray:
    """Coefficients ``C`` (l_max+1, (l_max+1)(l_max+2)/2) with, for column c = (l, m >= 0) in
    the order (0, 0), (1, 0), (1, 1), (2, 0), … (c = l(l+1)/2 + m),

        Y_l,±m(θ, φ) = [Σ_j C[j, c] cos jθ] · g_m(θ) · trig_±m(φ),

    where g_m = sin θ for odd m, g_m = 1 for even m (times a mask that is exactly 0 at the poles
    for m >= 2), and trig_±m is cos(mφ) or sin(mφ). The ±m pair shares its column.

    P̄_lm(cos θ) is a trigonometric polynomial of degree l in θ (its analytic continuation to
    θ in [−π, π], with sin θ signed): a cosine series for even m, and for odd m sin θ times
    one of degree l − 1 (see :func:`_sin_factor`). Sampling ``P̄_lm / g`` at 4(l_max + 1)
    equispaced angles and taking the FFT gives its cosine coefficients to round-off (the sine
    ones vanish). Neither form divides by more than sin θ, so the coefficients stay bounded
    (|C| summed over a column is ~ √l): evaluating the sum costs ~ √l eps of rounding, 1e-14 in
    float64 at l = 100. The phase (−1)^m / √(4π) is folded in.
    """
    n_l = l_max + 1
    n_s = 4 * n_l
    theta = 2.0 * math.pi * np.arange(n_s) / n_s
    s = _legendre_scaled_np(l_max, theta)  # [l, sample, m]
    sin_t = np.sin(theta)
    ms = np.arange(n_l)
    powers = sin_t[None, :] ** (ms - _sin_factor(ms))[:, None]  # [m, sample]
    g = s * powers.T[None, :, :]  # P̄ (even m) or P̄ / sin θ (odd m), [l, sample, m]
    spec = np.fft.rfft(g, axis=1) / n_s  # [l, j, m]
    cos_c = 2.0 * spec.real[:, :n_l, :]
    cos_c[:, 0, :] *= 0.5
    l_c, m_c = np.tril_indices(n_l)  # (0, 0), (1, 0), (1, 1), (2, 0), …
    coeffs = cos_c[l_c, :, m_c].T * _phase_norm(m_c)[None, :]  # (n_l, n_l (n_l + 1) / 2)
    # Exact zeros where the parity of j excludes a term: what the FFT leaves there is round-off.
    coeffs[np.abs(coeffs) < 1e-14 * np.abs(coeffs).max(axis=0, keepdims=True)] = 0.0
    coeffs.setflags(write=False)
    return coeffs


def _real_sph_harm_fourier(
    l_max: int, theta: Float[Array, " n"], phi: Float[Array, " n"], dtype: jnp.dtype
) -> Float[Array, "n k"]:
    """All ``Y_lm`` (flat layout) by the Fourier form of :func:`_fourier_tables`.

    Computed in the dtype of theta and phi; the θ and φ factors are rounded once to ``dtype``
    and their product is formed there (for float64 angles and a float32 result, ~2 float32
    roundings instead of one, at float32 cost for the largest array).
    """
    orders = np.arange(l_max + 1)
    work = theta.dtype
    basis = _sincos_reduced(_reduced_angles(theta, orders))[1]  # cos jθ, (n, n_l)
    table = jnp.asarray(_fourier_tables(l_max), work)
    legendre = jnp.dot(basis, table, precision=lax.Precision.HIGHEST).astype(dtype)
    # φ factor with g_m(θ), indexed by m + l_max for m = −l_max … l_max. The even orders
    # m >= 2 vanish at the poles like sin² θ; the mask makes them exactly 0 there (so ∂Y/∂φ
    # is exactly zero at the poles, as it must be), where the cosine series leaves round-off.
    sin_mp, cos_mp = _sincos_reduced(_reduced_angles(phi, orders))
    sin_t = jnp.sin(theta)[:, None]
    off_pole = jnp.where(sin_t == 0.0, jnp.zeros_like(sin_t), jnp.ones_like(sin_t))
    g = jnp.where(jnp.asarray(_sin_factor(orders) == 1), sin_t, off_pole)
    g = g.at[:, 0].set(1.0)
    ext = jnp.concatenate([sin_mp[:, :0:-1] * g[:, :0:-1], cos_mp * g], axis=1).astype(dtype)
    # Both factors are kept in memory: fused into the per-degree products below, XLA would
    # split the assembly into one kernel per part plus a copy (4× slower on a CPU core).
    legendre, ext = lax.optimization_barrier((legendre, ext))
    # Degree l is the contiguous block l² … (l+1)² − 1, orders −l … l: its column block of
    # the table, reversed for m < 0, times the matching slice of ext.
    parts = []
    for l in range(l_max + 1):
        col = legendre[:, l * (l + 1) // 2 : (l + 1) * (l + 2) // 2]  # m = 0 … l
        if l:
            parts.append(col[:, :0:-1] * ext[:, l_max - l : l_max])
        parts.append(col * ext[:, l_max : l_max + l + 1])
    return jnp.concatenate(parts, axis=1)


# Blocks of points for large batches: above _BLOCK_ELEMENTS output elements the Fourier form
# runs in blocks of _BLOCK points (a lax.map), so each block's basis, products and output stay
# in the CPU caches instead of page-faulting fresh buffers of the whole batch (L = 40, 16,384
# float32 points: 1.3×); smaller batches run in one piece, where the loop costs more than it
# saves (L = 10, 16,384 points: 1.4× faster unblocked). Measured in benchmarks/RESULTS.md.
_BLOCK = 512
_BLOCK_ELEMENTS = 2**23


def _fourier_blocks(
    l_max: int, theta: Float[Array, " n"], phi: Float[Array, " n"], dtype: jnp.dtype
) -> Float[Array, "n k"]:
    """The Fourier form in the angles' precision with the result in ``dtype``."""

    def block(t: Array, p: Array) -> Array:
        return _real_sph_harm_fourier(l_max, t, p, dtype)

    n = theta.shape[0]
    if n * (l_max + 1) ** 2 <= _BLOCK_ELEMENTS or n <= _BLOCK:
        return block(theta, phi)
    pad = (-n) % _BLOCK
    t = jnp.pad(theta, (0, pad)).reshape(-1, _BLOCK)
    p = jnp.pad(phi, (0, pad)).reshape(-1, _BLOCK)
    y = lax.map(lambda tp: block(*tp), (t, p))
    return y.reshape(-1, y.shape[-1])[:n]


# ----------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------


def real_sph_harm(
    l_max: int,
    theta: Float[ArrayLike, "*points"],
    phi: Float[ArrayLike, "*points"],
    *,
    precision: str = "default",
    method: str = "auto",
    dtype: jnp.dtype | str | None = None,
) -> Float[Array, "*points k"]:
    """All real orthonormal spherical harmonics ``Y_lm(θ, φ)`` with ``l <= l_max``.

    Condon–Shortley phase included (see the module docstring for the full convention). Stable
    at and near the poles and to high degree (tested to l = 300 in float64; float32 stays in
    range too). Differentiable in θ and φ everywhere, poles included: ``sin θ`` and ``cos θ``
    are used directly, never ``sqrt(1 − cos²θ)``.

    Accuracy in float32 (max |error| against float64 evaluated at the same float32 inputs,
    uniform points plus both poles; see benchmarks/RESULTS.md): about 1e-6 at l_max = 10,
    4e-6 at 40, 9e-6 at 100 and 2e-5 at 200, i.e. a few ``l · eps`` times the size
    ``sqrt((2l+1)/4π)`` of the harmonics. That is the floor for any float32 evaluation:
    Y_lm changes by ~ l Y_lm per radian, so merely rounding cos θ, sin θ (or θ) to float32
    costs ~ l eps, and ``sin^m θ`` carries m times the rounding of sin θ. For more, pass
    ``precision="high"``: the values are then computed in float64, and the θ and φ factors
    are rounded to float32 and multiplied there (max error ~2e-7 at L = 40, 3e-7 at 100: about
    1.5 ulp), at 1.3–2× the cost. Float64 angles with ``dtype=jnp.float32`` do the
    same from angles formed in float64.

    Two algorithms, same convention and the same float32 accuracy: ``"fourier"`` writes every
    P̄_lm(cos θ) as a trigonometric polynomial in θ and evaluates all of them as one matrix
    product (fast; absolute error ~ √l eps of the bound, 2e-13 at l = 100 in float64, so
    values far below eps — the tiny sin^m θ tails next to the poles — are not resolved
    relatively); ``"recursion"`` is the column recursion on extended-range numbers (slower,
    cost ~ l² per point rather than l³, full relative precision even in those tails).
    ``"auto"`` takes the Fourier form up to degree 100 and the recursion above.

    Args:
        l_max: highest degree (static Python int, ``>= 0``); jit with ``static_argnums=0``.
        theta: colatitude in radians, any shape broadcastable with ``phi``.
        phi: longitude in radians.
        precision: ``"default"`` computes in the input dtype; ``"high"`` computes in float64
            up to the last product (needs ``jax_enable_x64``; no effect on float64 input).
        method: ``"auto"`` (default), ``"fourier"`` or ``"recursion"`` (see above; static).
        dtype: floating dtype of the result (static); default the inputs' (the default float
            dtype for integer inputs). Narrower than the inputs, the harmonics are computed in
            the inputs' precision and only the last product is formed in ``dtype``.

    Returns:
        Array of shape ``(*points, (l_max + 1)**2)`` with ``Y_lm`` at index ``l² + l + m``,
        in ``dtype``.

    Raises:
        InputError: if ``l_max`` is not a non-negative integer, or theta and phi have
            different float dtypes.
        ConfigError: if ``precision`` is not ``"default"`` or ``"high"``, or is ``"high"``
            for a narrower dtype than float64 while ``jax_enable_x64`` is off; for an
            unknown ``method``; or if ``dtype`` is not a floating dtype.
    """
    l_max = _check_l_max(l_max)
    if method not in ("auto", "fourier", "recursion"):
        raise ConfigError(f"method must be 'auto', 'fourier' or 'recursion', got {method!r}")
    theta_f, phi_f, shape = _prepare_points(theta, phi)
    out = _result_dtype(dtype, theta_f.dtype)
    work = max(_working_dtype(precision, theta_f.dtype), out, key=lambda d: jnp.finfo(d).bits)
    theta_f, phi_f = theta_f.astype(work), phi_f.astype(work)
    if method == "fourier" or (method == "auto" and l_max <= _FOURIER_MAX_DEGREE):
        y = _fourier_blocks(l_max, theta_f, phi_f, out)
        return y.reshape(*shape, (l_max + 1) ** 2)
    if out != work:
        y = real_sph_harm(l_max, theta_f, phi_f, method=method)
        return y.astype(out).reshape(*shape, (l_max + 1) ** 2)
    p = _legendre_columns(theta_f, l_max, np.arange(l_max + 1))
    cos_m, sin_m = _trig(phi_f, l_max)

    l_k, m_k, is_sin = _flat_layout(l_max)
    n_m = l_max + 1
    # Gather P̄[l, |m|] and the matching cos/sin column for every flat index k.
    legendre = p[jnp.asarray(l_k), :, jnp.asarray(m_k)]  # (k, n)
    trig = jnp.concatenate([cos_m, sin_m], axis=1)  # (n, 2 n_m)
    trig = trig[:, jnp.asarray(m_k + n_m * is_sin)]  # (n, k)
    scale = jnp.asarray(_phase_norm(m_k), work)
    y = legendre.T * trig * scale
    return y.reshape(*shape, (l_max + 1) ** 2)


def real_sph_harm_lm(
    l: int,
    m: int,
    theta: Float[ArrayLike, "*points"],
    phi: Float[ArrayLike, "*points"],
    *,
    precision: str = "default",
) -> Float[Array, "*points"]:
    """One real orthonormal spherical harmonic ``Y_lm(θ, φ)`` (same convention as
    :func:`real_sph_harm`), at O(l) cost instead of O(l²).

    Args:
        l: degree (static Python int, ``>= 0``).
        m: order (static Python int, ``-l <= m <= l``): m > 0 cos(mφ), m < 0 sin(|m|φ).
        theta: colatitude in radians.
        phi: longitude in radians, broadcast against ``theta``.
        precision: ``"default"`` or ``"high"``, as for :func:`real_sph_harm`.

    Returns:
        Array of the broadcast shape of ``theta`` and ``phi``.

    Raises:
        InputError: if ``l`` or ``m`` are not integers with ``l >= 0``, ``|m| <= l``.
        ConfigError: for a bad ``precision``, as for :func:`real_sph_harm`.
    """
    lm_index(l, m)  # validates
    l, m = int(l), int(m)
    theta_f, phi_f, shape = _prepare_points(theta, phi)
    dtype = theta_f.dtype
    work = _working_dtype(precision, dtype)
    theta_f, phi_f = theta_f.astype(work), phi_f.astype(work)
    am = abs(m)
    p = _legendre_columns(theta_f, l, np.array([am]))[-1, :, 0]
    sin, cos = _sincos_reduced(_reduced_angles(phi_f, np.array([am]))[:, 0])
    trig = cos if m >= 0 else sin
    y = p * trig * float(_phase_norm(np.array(am)))
    return y.astype(dtype).reshape(shape)


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
