"""`jaxgeo sft run` end to end: store layout, refusals, resume == uninterrupted, plots, convert."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from jaxgeo.cli import main
from jaxgeo.errors import ConfigError, FileFormatError, StoreExistsError
from jaxgeo.io import open_store, read_attrs, read_hipft_map, write_hipft_map
from jaxgeo.sft.config import SftConfig
from jaxgeo.sft.run import run

# Run once: `make test` keeps each test file on one worker
# (`pytest -n 2 --dist loadfile`).

SMALL = """
[grid]
n_theta = 25
n_phi = 49
[initial]
kind = "harmonic"
l = 3
m = 2
amplitude_gauss = 20.0
[time]
end_hours = 36.0
dt_max_hours = 2.0
[output]
map_cadence_hours = 12.0
history_cadence_hours = 4.0
dtype = "float64"
[flow]
differential_rotation = { model = "aft" }
meridional = { model = "aft" }
attenuate_gauss = 10.0
[diffusion]
nu_km2_s = 400.0
[sources.rfe]
unsigned_flux_1e21_mx_per_hour = 2.0
lifetime_hours = 6.0
[ensemble]
"diffusion.nu_km2_s" = [200.0, 400.0]
"""


def _json_line(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])


@pytest.fixture(scope="session")
def small_config(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cfg")
    path = d / "small.toml"
    path.write_text(SMALL)
    return path


@pytest.fixture(scope="session")
def full_run(small_config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run.zarr"
    run(SftConfig.from_toml(small_config), out, progress=False)
    return out


def test_store_layout(full_run):
    ds = open_store(full_run)
    assert ds["br"].dims == ("realization", "time", "lat", "lon")
    assert ds.sizes["realization"] == 2
    np.testing.assert_allclose(ds["time"].values, [0.0, 12.0, 24.0, 36.0])
    np.testing.assert_allclose(ds["history_time"].values, np.arange(0.0, 37.0, 4.0))
    lat = ds["lat"].values
    assert (
        lat[0] == pytest.approx(-90.0)
        and lat[-1] == pytest.approx(90.0)
        and np.all(np.diff(lat) > 0)
    )
    lon = ds["lon"].values
    assert lon[0] == 0.0 and lon[-1] < 360.0 and len(lon) == 48
    assert ds["br"].attrs["units"] == "G"
    for name in (
        "br_min",
        "br_max",
        "br_abs_min",
        "flux_positive",
        "flux_negative",
        "npole_flux_positive",
        "npole_flux_negative",
        "spole_flux_positive",
        "spole_flux_negative",
        "npole_area",
        "spole_area",
        "eq_dipole",
        "ax_dipole",
        "polar_field_north",
        "polar_field_south",
    ):
        assert ds[name].dims == ("realization", "history_time"), name
        assert "units" in ds[name].attrs
    np.testing.assert_allclose(ds["diffusion_nu_km2_s"].values, [200.0, 400.0])
    attrs = read_attrs(full_run)
    assert "jaxgeo_version" in attrs
    assert SftConfig.from_toml_text(attrs["config"]).diffusion.nu_km2_s == 400.0
    # Signed flux conserved through advection, diffusion and flux-balanced emergence.
    net = ds["flux_positive"].values + ds["flux_negative"].values
    unsigned = ds["flux_positive"].values - ds["flux_negative"].values
    assert np.max(np.abs(net - net[:, :1])) < 1e-12 * np.max(unsigned)
    # The stored map's history agrees with the stored history at the same time.
    assert float(ds["br_max"].values[0, -1]) == pytest.approx(
        float(ds["br"].values[0, -1].max()), rel=1e-12
    )


def test_resume_equals_uninterrupted_bit_for_bit(small_config, full_run, tmp_path):
    out = tmp_path / "resumed.zarr"
    cfg = SftConfig.from_toml(small_config)
    first = run(cfg, out, progress=False, stop_after_segments=4)
    assert first["finished"] is False
    partial = open_store(out)
    assert partial.sizes["time"] < 4
    run(cfg, out, resume=True, progress=False)
    a, b = open_store(out), open_store(full_run)
    np.testing.assert_array_equal(a["br"].values, b["br"].values)
    np.testing.assert_array_equal(a["history_time"].values, b["history_time"].values)
    np.testing.assert_array_equal(a["flux_positive"].values, b["flux_positive"].values)


def test_resuming_a_finished_run_changes_nothing(small_config, full_run, tmp_path):
    out = tmp_path / "done.zarr"
    shutil.copytree(full_run, out)
    shutil.copytree(full_run.with_name(full_run.name + ".ckpt"), out.with_name(out.name + ".ckpt"))
    before = open_store(out)["br"].values.copy()
    summary = run(SftConfig.from_toml(small_config), out, resume=True, progress=False)
    assert summary["ok"] and summary["steps"] == 0
    np.testing.assert_array_equal(open_store(out)["br"].values, before)


def test_existing_store_is_refused_and_untouched(small_config, full_run, capsys):
    before = {p: p.read_bytes() for p in sorted(full_run.rglob("*")) if p.is_file()}
    code = main(["sft", "run", str(small_config), "--out", str(full_run), "--no-progress"])
    assert code == 2
    summary = _json_line(capsys)
    assert summary["ok"] is False and "--overwrite" in summary["error"]
    after = {p: p.read_bytes() for p in sorted(full_run.rglob("*")) if p.is_file()}
    assert before == after
    with pytest.raises(StoreExistsError):
        run(SftConfig.from_toml(small_config), full_run, progress=False)


def test_resume_without_checkpoints_is_refused(small_config, tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        run(SftConfig.from_toml(small_config), tmp_path / "none.zarr", resume=True, progress=False)


def _write_map(path: Path, data: np.ndarray) -> None:
    n_t, n_p = data.shape
    theta = np.linspace(0, math.pi, n_t)
    phi = np.linspace(0, 2 * math.pi, n_p)
    write_hipft_map(path, data, phi, theta, dtype=np.float64)


def test_bad_inputs_fail_before_any_work(tmp_path, capsys):
    out = tmp_path / "out.zarr"
    nan_map = tmp_path / "nan.h5"
    _write_map(nan_map, np.ones((19, 37)))
    with h5py.File(nan_map, "r+") as f:  # a corrupt map, as no jaxgeo writer would make it
        f["Data"][5, 5] = np.nan
    (tmp_path / "nan.toml").write_text(f'[initial]\nkind = "map"\npath = "{nan_map}"\n')
    assert main(["sft", "run", str(tmp_path / "nan.toml"), "--out", str(out), "--no-progress"]) == 2
    assert "nan.h5" in _json_line(capsys)["error"]
    (tmp_path / "missing.toml").write_text('[initial]\nkind = "map"\npath = "nope.h5"\n')
    assert (
        main(["sft", "run", str(tmp_path / "missing.toml"), "--out", str(out), "--no-progress"])
        == 2
    )
    assert "nope.h5" in _json_line(capsys)["error"]
    (tmp_path / "bad.toml").write_text("[diffusion]\nnu_km2_s = -1.0\n")
    assert main(["sft", "run", str(tmp_path / "bad.toml"), "--out", str(out), "--no-progress"]) == 2
    assert "diffusion.nu_km2_s must be >= 0" in _json_line(capsys)["error"]
    assert not out.exists()


def test_step_below_dt_min_is_refused(tmp_path):
    cfg = SftConfig.from_dict(
        {
            "grid": {"n_theta": 25, "n_phi": 49},
            "initial": {"kind": "zero"},
            "time": {"end_hours": 10.0, "dt_max_hours": 5.0, "dt_min_hours": 4.0},
            "flow": {"rigid_omega_km_s": 50.0},
        }
    )
    with pytest.raises(ConfigError, match="dt_min_hours"):
        run(cfg, tmp_path / "cfl.zarr", progress=False)
    assert not (tmp_path / "cfl.zarr").exists()


def test_plot_command_writes_pngs(full_run, tmp_path, capsys):
    assert main(["sft", "plot", str(full_run), "--out", str(tmp_path / "plots")]) == 0
    summary = _json_line(capsys)
    names = sorted(Path(p).name for p in summary["plots"])
    # Two realizations: the ensemble-spread figures come too.
    assert {"butterfly.png", "history.png", "maps_r0.png"} <= set(names)
    assert any("spread" in n for n in names), names
    for p in summary["plots"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_convert_round_trip(full_run, tmp_path, capsys):
    h5 = tmp_path / "final.h5"
    assert main(["sft", "convert", str(full_run), str(h5)]) == 0
    _json_line(capsys)
    m = read_hipft_map(h5)
    assert m.data.shape == (2, 25, 49) and m.ndim == 3
    ds = open_store(full_run)
    np.testing.assert_allclose(m.data[:, ::-1, :-1], ds["br"].values[:, -1])
    back = tmp_path / "back.zarr"
    assert main(["sft", "convert", str(h5), str(back)]) == 0
    _json_line(capsys)
    np.testing.assert_allclose(open_store(back)["br"].values[:, 0], ds["br"].values[:, -1])
    with h5py.File(h5) as f:
        assert set(f) == {"Data", "dim1", "dim2", "dim3"}


def test_initial_state_from_a_store_continues_a_run(full_run, tmp_path):
    cfg = SftConfig.from_dict(
        {
            "initial": {"kind": "map", "path": str(full_run)},
            "time": {"end_hours": 4.0, "dt_max_hours": 2.0},
            "output": {"map_cadence_hours": 4.0, "history_cadence_hours": 4.0, "dtype": "float64"},
        }
    )
    run(cfg, tmp_path / "next.zarr", progress=False)
    first = open_store(tmp_path / "next.zarr")["br"].values[:, 0]
    np.testing.assert_allclose(first, open_store(full_run)["br"].values[:, -1], rtol=0, atol=1e-12)
    shutil.rmtree(tmp_path / "next.zarr")


def test_run_with_data_assimilation_pulls_toward_the_observations(tmp_path):
    """End to end: a map list of HipFT 3-slice maps (Br, weight, mu) nudges the run."""
    n_t, n_p = 19, 37
    theta = np.linspace(0, math.pi, n_t)
    phi = np.linspace(0, 2 * math.pi, n_p)
    obs = 30.0 * np.cos(theta)[:, None] * np.ones((1, n_p))  # a dipole
    weight = np.ones((n_t, n_p))
    mu = np.cos(phi - math.pi)[None, :] * np.sin(theta)[:, None]  # disk centre at phi = pi
    rows = []
    for k, t in enumerate((0.0, 6.0, 12.0)):
        write_hipft_map(
            tmp_path / f"obs{k}.h5",
            np.stack([obs, weight, mu]),
            phi,
            theta,
            realization=np.arange(1.0, 4.0),
            dtype=np.float64,
        )
        rows.append(f"{t},obs{k}.h5")
    (tmp_path / "maps.csv").write_text("time_hours,path\n" + "\n".join(rows) + "\n")
    cfg_text = f"""
[grid]
n_theta = {n_t}
n_phi = {n_p}
[initial]
kind = "zero"
[time]
end_hours = 12.0
dt_max_hours = 2.0
[output]
map_cadence_hours = 6.0
history_cadence_hours = 6.0
dtype = "float64"
[diffusion]
nu_km2_s = 200.0
[assimilation]
map_list = "maps.csv"
custom_from_mu = true
mu_power = 1.0
mu_limit = 0.0
balance_flux = true
[ensemble]
"assimilation.mu_power" = [1.0, 4.0]
"""
    (tmp_path / "assim.toml").write_text(cfg_text)
    out = tmp_path / "assim.zarr"
    run(SftConfig.from_toml(tmp_path / "assim.toml"), out, progress=False)
    ds = open_store(out)
    br = ds["br"].values  # (R, time, lat, lon), lat ascending
    # Nothing but assimilation creates field: the visible hemisphere (mu > 0) now holds the
    # observed dipole's sign, the far side stayed near zero until diffusion spreads it.
    lon = ds["lon"].values
    near = np.abs(lon - 180.0) < 40.0
    far = (lon < 40.0) | (lon > 320.0)
    north_rows = ds["lat"].values > 30.0
    for r in range(2):
        final = br[r, -1]
        assert final[np.ix_(north_rows, near)].mean() > 5.0
        assert abs(final[np.ix_(north_rows, far)].mean()) < final[np.ix_(north_rows, near)].mean()
    # A sharper weight (mu^4) assimilates less at the limb than mu^1.
    assert br[1, -1][np.ix_(north_rows, near)].mean() < br[0, -1][np.ix_(north_rows, near)].mean()
    np.testing.assert_allclose(ds["assimilation_mu_power"].values, [1.0, 4.0])
