"""Unit conversions used by the flux-transport kernels.

Kernels work on the unit sphere with time in hours: lengths in solar radii, velocities in
R_sun/h, diffusivity in R_sun^2/h. Conversions follow HipFT (R_sun = 6.96e10 cm), so that
parameters given in HipFT's units (flows in m/s, nu in km^2/s) mean the same thing here.
"""

from __future__ import annotations

RSUN_CM = 6.96e10
RSUN_KM = RSUN_CM * 1e-5
RSUN_CM2 = RSUN_CM**2
SECONDS_PER_HOUR = 3600.0

# km/s -> R_sun/h and m/s -> R_sun/h
KM_S_TO_RS_HR = SECONDS_PER_HOUR / RSUN_KM
M_S_TO_RS_HR = KM_S_TO_RS_HR * 1e-3
# km^2/s -> R_sun^2/h
KM2_S_TO_RS2_HR = SECONDS_PER_HOUR / RSUN_KM**2
# Flux in Mx from Gauss * steradian on the solar surface.
GAUSS_SR_TO_MX = RSUN_CM2
