"""Test configuration: 8 fake CPU devices, float64, strict dtype promotion.

Set before any backend initialises, so every test (and every xdist worker) sees the same
setup. Reference data from other codes lives in ``../shared/data``; tests that need it
use the ``shared_data`` fixture and skip cleanly when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Property tests run JAX code whose first call compiles: no per-example deadline, so a loaded
# CI machine cannot turn compile time into a flaky failure.
settings.register_profile(
    "jaxgeo", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("jaxgeo")

os.environ.setdefault("MPLBACKEND", "Agg")

_SHARED_CANDIDATES = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
    Path(__file__).resolve().parents[1] / "shared" / "data",
)


def _shared_data_dir() -> Path | None:
    env = os.environ.get("JAXGEO_SHARED_DATA")
    candidates = ((Path(env),) if env else ()) + _SHARED_CANDIDATES
    for cand in candidates:
        if (cand / "hipft").is_dir():
            return cand.resolve()
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of reference data from other codes; skips the test when it is absent."""
    found = _shared_data_dir()
    if found is None:
        pytest.skip("reference data folder ../shared/data not present")
    return found


@pytest.fixture(scope="session")
def hipft_data(shared_data: Path) -> Path:
    return shared_data / "hipft"
