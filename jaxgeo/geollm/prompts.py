"""GeoLLM's map-augmented prompts (Manvi et al. 2024, §3.1, Fig. 2): coordinates, a
reverse-geocoded address and the nearby places, then the task.

A full prompt::

    Coordinates: (47.37690, 8.54170)
    Address: "Zurich, Bezirk Zürich, Zurich, Switzerland"
    Nearby Places:
    "
    1.2 km North-East: Oberstrass
    ...
    "
    Population Density (On a Scale from 0.0 to 9.9):

Nearby places are up to 10 named places of the gazetteer within 100 km, nearest first, each
with its great-circle distance to 0.1 km and the 8-point compass direction of the bearing from
the location to the place. :data:`VARIANTS` are the ablations of the paper's Table 2.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxgeo.errors import InputError

from .gazetteer import Gazetteer, bearing_deg, compass_8, country_names

__all__ = [
    "VARIANTS",
    "NearbyPlaces",
    "PromptParts",
    "addresses",
    "format_prompt",
    "nearby_block",
    "nearby_places",
]

# variant name -> (coordinates, address, nearby places) shown
VARIANTS: dict[str, tuple[bool, bool, bool]] = {
    "full": (True, True, True),
    "no_coordinates": (False, True, True),
    "no_address": (True, False, True),
    "no_nearby": (True, True, False),
    "coordinates_only": (True, False, False),
    "address_only": (False, True, False),
    "nearby_only": (False, False, True),
}


@dataclasses.dataclass(frozen=True)
class NearbyPlaces:
    """The nearby places of ``m`` locations, ``k`` slots each, nearest first.

    Attributes:
        distance_km: ``(m, k)`` great-circle distances rounded to 0.1 km as printed; NaN
            where a location has fewer than ``k`` places within the radius.
        sector: ``(m, k)`` compass sector 0..7 (N, NE, ..., NW); -1 where missing.
        names: ``m`` lists of place names.
    """

    distance_km: np.ndarray
    sector: np.ndarray
    names: list[list[str]]


def nearby_places(
    gaz: Gazetteer, lat_deg: np.ndarray, lon_deg: np.ndarray, *, radius_km: float = 100.0,
    k: int = 10,
) -> NearbyPlaces:  # fmt: skip
    """Up to ``k`` places of ``gaz`` within ``radius_km`` of each location, nearest first."""
    lat, lon = np.atleast_1d(lat_deg), np.atleast_1d(lon_deg)
    dist, idx = gaz.nearest(lat, lon, k=k, radius_km=radius_km)
    ok = np.isfinite(dist)
    safe = np.where(ok, idx, 0)
    brg = bearing_deg(lat[:, None], lon[:, None], gaz.lat_deg[safe], gaz.lon_deg[safe])
    sector = np.where(ok, np.floor(brg / 45.0 + 0.5).astype(np.int64) % 8, -1)
    names = [[str(gaz.name[j]) for j in idx[i][ok[i]]] for i in range(len(lat))]
    return NearbyPlaces(np.where(ok, np.round(dist, 1), np.nan), sector, names)


def nearby_block(places: NearbyPlaces, i: int) -> str:
    """The lines of location ``i``'s nearby places (``"<d> km <direction>: <name>"``)."""
    lines = []
    for d, s, name in zip(places.distance_km[i], places.sector[i], places.names[i], strict=False):
        lines.append(f"{d:.1f} km {compass_8(45.0 * float(s))}: {name}")
    return "\n".join(lines)


def addresses(rg: Gazetteer, lat_deg: np.ndarray, lon_deg: np.ndarray) -> list[str]:
    """Reverse-geocoded addresses: the nearest place of ``rg`` with its second- and
    first-level administrative names and country (empty parts left out)."""
    _, idx = rg.nearest(lat_deg, lon_deg, k=1)
    countries = country_names()
    out = []
    for j in idx[:, 0]:
        parts = [rg.name[j], rg.admin2[j], rg.admin1[j], countries.get(rg.country_code[j], "")]
        kept: list[str] = []
        for p in parts:
            if p and (not kept or p != kept[-1]):  # "Zurich, Zurich" says nothing twice
                kept.append(str(p))
        out.append(", ".join(kept))
    return out


@dataclasses.dataclass(frozen=True)
class PromptParts:
    """What a prompt is made of, for one location."""

    lat_deg: float
    lon_deg: float
    address: str
    nearby: str


def format_prompt(parts: PromptParts, task: str, variant: str = "full") -> str:
    """The prompt of one location for ``task`` (e.g. ``"Population Density"``).

    Raises:
        InputError: ``variant`` is not one of :data:`VARIANTS`.
    """
    if variant not in VARIANTS:
        raise InputError(f"prompt variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    show_coords, show_address, show_nearby = VARIANTS[variant]
    lines = []
    if show_coords:
        lines.append(f"Coordinates: ({parts.lat_deg:.5f}, {parts.lon_deg:.5f})")
    if show_address:
        lines.append(f'Address: "{parts.address}"')
    if show_nearby:
        lines.append("Nearby Places:")
        lines.append('"')
        if parts.nearby:
            lines.append(parts.nearby)
        lines.append('"')
    lines.append(f"{task} (On a Scale from 0.0 to 9.9):")
    return "\n".join(lines)
