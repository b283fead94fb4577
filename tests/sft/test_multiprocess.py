"""`jaxgeo sft run` over two real `jax.distributed` processes (CPU, gloo collectives).

Two Python processes on this machine, each with 2 fake CPU devices, join a coordinator on
127.0.0.1 and run an 8-member ensemble (ν and emergence seed per member, AFT flows with
attenuation, random flux emergence) into one shared store, which must equal a single-process
run of the same config (maps, histories, ensemble statistics) to round-off. The ``long`` test
interrupts a two-process run after 6 of its 8 segments and resumes it with the same two
processes: the store must equal the uninterrupted one bit for bit. Compiling the step
program dominates (once per ``run`` call and process), hence one run per process in the
default suite.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jaxgeo.io import open_store, read_attrs
from jaxgeo.sft.config import SftConfig
from jaxgeo.sft.run import run

NU = [100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0, 450.0]

# 2° grid, 8 segments (events at 4, 6, 8, 12, 16, 18, 20, 24 h), maps every 8 h.
ENSEMBLE = f"""
[grid]
n_theta = 91
n_phi = 181
[initial]
kind = "dipole"
amplitude_gauss = 10.0
[time]
end_hours = 24.0
dt_max_hours = 2.0
[output]
map_cadence_hours = 8.0
history_cadence_hours = 4.0
dtype = "float64"
[flow]
scheme = "upwind-ssprk33"
differential_rotation = {{ model = "aft" }}
meridional = {{ model = "aft" }}
attenuate_gauss = 10.0
[diffusion]
nu_km2_s = 400.0
[sources.rfe]
unsigned_flux_1e21_mx_per_hour = 2.0
lifetime_hours = 6.0
[ensemble]
"diffusion.nu_km2_s" = {NU}
"sources.rfe.seed" = [1, 2, 3, 4, 5, 6, 7, 8]
"""

# Stop after 6 segments (t = 18 h): past the checkpoint at the 16 h map, so the resumed run
# restores it and recomputes the 18 h history row the interrupted run had not committed.
STOP_AFTER = 6

_WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import jax

    # Before jax.distributed starts: two CPU devices in this process, float64. The CPU
    # collectives across processes are gloo's (JAX's default).
    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_dtype_promotion", "strict")

    from jaxgeo.errors import InputError
    from jaxgeo.parallel import DistributedSpec, initialize

    pid, port, work, mode = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    assert initialize(DistributedSpec(f"127.0.0.1:{port}", 2, pid))
    assert len(jax.devices()) == 4 and len(jax.local_devices()) == 2

    from jaxgeo.sft.config import SftConfig
    from jaxgeo.sft.run import run

    cfg = SftConfig.from_toml(work / "ensemble.toml")
    result = {}
    if mode == "full":
        result["full"] = run(cfg, work / "full.zarr", progress=False)
        try:
            run(SftConfig.from_toml(work / "one.toml"), work / "one.zarr", progress=False)
        except InputError as err:
            result["refused"] = str(err)
    else:
        stop = int(mode)
        result["part"] = run(cfg, work / "resumed.zarr", progress=False, stop_after_segments=stop)
        result["resumed"] = run(cfg, work / "resumed.zarr", resume=True, progress=False)
    (work / f"result-{mode}-{pid}.json").write_text(json.dumps(result))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch_two(work: Path, mode: str) -> list[dict]:
    """Run the worker as processes 0 and 1 of one jax.distributed job; their results."""
    port = str(_free_port())
    # Output to files, not pipes: a process blocked on a full pipe would stall the other one
    # at its next barrier.
    logs = [
        (work / f"stdout-{mode}-{pid}.txt", work / f"stderr-{mode}-{pid}.txt") for pid in (0, 1)
    ]
    procs = []
    for pid, (out_path, err_path) in enumerate(logs):
        with out_path.open("w") as out, err_path.open("w") as err:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", _WORKER, str(pid), port, str(work), mode],
                    stdout=out,
                    stderr=err,
                )
            )
    try:
        for p in procs:
            p.wait(timeout=400)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    codes = [p.returncode for p in procs]
    assert codes == [0, 0], "\n".join(
        f"--- process {i}\n{err.read_text()[-4000:]}" for i, (_, err) in enumerate(logs)
    )
    # gloo's native "[Gloo] Rank ... connected" lines went to stderr: stdout stays for the
    # command's one JSON line (the worker itself prints nothing).
    assert [out.read_text() for out, _ in logs] == ["", ""]
    return [json.loads((work / f"result-{mode}-{pid}.json").read_text()) for pid in (0, 1)]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A two-process run of the ensemble (and a refused one-realization run)."""
    work = tmp_path_factory.mktemp("mp")
    (work / "ensemble.toml").write_text(ENSEMBLE)
    (work / "one.toml").write_text(ENSEMBLE.split("[ensemble]")[0])
    return work, _launch_two(work, "full")


def test_two_processes_equal_one_process(full_run, tmp_path):
    work, results = full_run
    for res in results:
        full = res["full"]
        assert full["ok"] and full["finished"] and full["processes"] == 2
        assert full["devices"] == 4 and full["n_realizations"] == 8
    single = tmp_path / "single.zarr"
    summary = run(SftConfig.from_toml_text(ENSEMBLE), single, progress=False)
    assert summary["steps"] == full["steps"]
    a, b = open_store(single), open_store(work / "full.zarr")
    assert set(a.variables) == set(b.variables)
    assert read_attrs(work / "full.zarr")["processes"] == 2
    assert read_attrs(work / "full.zarr")["config"] == read_attrs(single)["config"]
    np.testing.assert_allclose(b["diffusion_nu_km2_s"].values, NU)
    for name in ("time", "history_time", "lat", "lon", "realization", "quantile"):
        np.testing.assert_array_equal(b[name].values, a[name].values, err_msg=name)
    assert b.sizes["time"] == 4 and b.sizes["history_time"] == 7
    # Every variable to round-off of its own scale.
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        assert np.all(np.isfinite(y)), name
        tol = 1e-12 * np.max(np.abs(x))  # 0 for a quantity that vanishes: then exactly
        if name.startswith(("br_abs_min", "eq_dipole")) or name.endswith("_std"):
            # Small differences of large numbers: round-off of the field (G) or of the flux.
            base = name.removesuffix("_std").removesuffix("_mean").removesuffix("_quantile")
            tol = 1e-12 * max(np.max(np.abs(a[base].values)), float(np.max(np.abs(a["br"].values))))
        np.testing.assert_allclose(y, x, rtol=0, atol=tol, err_msg=name)
    # The members differ (ν and seeds), so equality above is a real check per realization.
    br = b["br"].values[:, -1]
    assert np.min(np.abs(br[1:] - br[:1]).reshape(7, -1).max(axis=1)) > 1e-3


@pytest.mark.long
def test_two_process_resume_equals_uninterrupted_bit_for_bit(full_run):
    work, full = full_run
    results = _launch_two(work, str(STOP_AFTER))
    for res, ref in zip(results, full, strict=True):
        part, resumed = res["part"], res["resumed"]
        assert part["finished"] is False and resumed["finished"] is True
        # Resumed from the checkpoint at the 16 h map: the segment to 18 h is done again.
        assert 0 < resumed["steps"] < part["steps"]
        assert part["steps"] + resumed["steps"] > ref["full"]["steps"]
    a, b = open_store(work / "full.zarr"), open_store(work / "resumed.zarr")
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        np.testing.assert_array_equal(b[name].values, a[name].values, err_msg=name)


def test_fewer_realizations_than_processes_is_refused(full_run):
    _, results = full_run
    for res in results:
        assert "at least 2 realizations" in res["refused"]
