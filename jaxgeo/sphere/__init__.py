"""Shared spherical numerics: real spherical harmonics, sphere grids and quadrature, projection.

Conventions: θ colatitude and φ longitude in radians; real orthonormal harmonics with the
Condon–Shortley phase, coefficient ``Y_lm`` at flat index ``l² + l + m`` (see
:mod:`jaxgeo.sphere._harmonics`).
"""

from ._grids import GaussLegendreGrid as GaussLegendreGrid
from ._grids import LatLonGrid as LatLonGrid
from ._grids import PoleGrid as PoleGrid
from ._grids import SphereGrid as SphereGrid
from ._grids import gauss_legendre_grid as gauss_legendre_grid
from ._grids import integrate as integrate
from ._harmonics import index_to_lm as index_to_lm
from ._harmonics import lm_index as lm_index
from ._harmonics import n_coeffs as n_coeffs
from ._harmonics import real_sph_harm as real_sph_harm
from ._harmonics import real_sph_harm_lm as real_sph_harm_lm
from ._projection import power_spectrum as power_spectrum
from ._projection import project as project
from ._projection import synthesize as synthesize
from ._projection import synthesize_grid as synthesize_grid
