"""Training, evaluation and the command line end to end, with tiny nets (≤ 200 steps)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxgeo.cli import main
from jaxgeo.errors import StoreExistsError
from jaxgeo.terrain.data import load_dem, write_geotiff
from jaxgeo.terrain.run import (
    FlowConfig,
    VaeConfig,
    detail_noise,
    generate,
    load_models,
    train_flow,
    train_vae,
    with_detail,
)

# Trained / run once: `make test` keeps each test file on one worker
# (`pytest -n 2 --dist loadfile`).

VAE = VaeConfig(patch=32, latent_channels=2, widths=(4, 8), steps=120, batch_size=4,
                checkpoint_every=60, warmup_steps=10, lr=3e-3)  # fmt: skip
FLOW = FlowConfig(steps=150, batch_size=16, width=16, depth=1, prior_width=8, prior_depth=1,
                  bank_size=128, checkpoint_every=75, warmup_steps=10, lr=3e-3)  # fmt: skip


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("terrain")
    # The VAE run is interrupted half way and resumed; a second run goes straight through.
    half = train_vae(VAE, root / "vae", stop_after_steps=60)
    vae = train_vae(VAE, root / "vae", resume=True)
    straight = train_vae(VAE, root / "vae_straight")
    flow0 = train_flow(root / "vae", FLOW, root / "flow", stop_after_steps=0, eval_samples=16)
    flow = train_flow(root / "vae", FLOW, root / "flow", resume=True, eval_samples=16)
    return {"root": root, "half": half, "vae": vae, "straight": straight, "flow0": flow0,
            "flow": flow}  # fmt: skip


def test_vae_loss_falls_and_reconstructs_held_out_terrain(runs: dict) -> None:
    history = json.loads((runs["root"] / "vae" / "history.json").read_text())
    assert history["step"] == [60, 120]
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    s = runs["vae"]
    assert s["finished"] and s["steps"] == 120 and not runs["half"]["finished"]
    # Better than the held-out terrain's spread about the training mean (~150 m).
    assert 0 < s["recon_rmse_m"] < 100.0
    with pytest.raises(StoreExistsError):
        train_vae(VAE, runs["root"] / "vae")


def test_resumed_vae_equals_uninterrupted(runs: dict) -> None:
    a = load_models(runs["root"] / "vae").vae_params
    b = load_models(runs["root"] / "vae_straight").vae_params
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert runs["vae"]["recon_rmse_m"] == runs["straight"]["recon_rmse_m"]


def test_flow_loss_falls_and_condition_consistency_improves(runs: dict) -> None:
    history = json.loads((runs["root"] / "flow" / "history.json").read_text())
    assert history["loss"][-1] < 0.85 * history["loss"][0]
    before = runs["flow0"]["eval"]["coarse"]["coarse_rmse_m"]
    after = runs["flow"]["eval"]["coarse"]["coarse_rmse_m"]
    assert after < 0.6 * before
    # Conditioning helps: closer to the held-out coarse maps than unconditional samples.
    assert after < runs["flow"]["eval"]["none"]["coarse_rmse_m"]


def test_generation_shapes_and_determinism(runs: dict) -> None:
    models = load_models(runs["root"] / "flow")
    # The summary's unconditional setting (16 samples, CFG 3, Euler 25): its compiled generator
    # is reused. Two stages are exercised by the long CLI test.
    a, cls = generate(models, jax.random.key(3), n=16)
    b, _ = generate(models, jax.random.key(3), n=16)
    assert a.shape == (16, 32, 32) and cls is None
    assert np.isfinite(a).all()
    assert np.array_equal(a, b)


def test_cli_import_dem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    z = load_dem("jacksboro").elevation[:40, :50]
    tif = write_geotiff(tmp_path / "dem.tif", z, cell=(30.0, 30.0))
    args = ["terrain", "import-dem", str(tif), "--out", str(tmp_path / "dem.zarr")]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["shape"] == [40, 50] and out["cell_size_m"] == [30.0, 30.0]
    assert np.array_equal(load_dem(tmp_path / "dem.zarr").elevation, z)
    assert main(args) == 2  # the store exists: refused without --overwrite


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train-vae", "--widths", "24,x"], "--widths must be comma-separated integers"),
        (["train-vae", "--patch", "48"], "8 times a power of two"),
    ],
)
def test_cli_refuses_bad_vae_options_before_writing(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main(["terrain", *args, "--out", str(out)]) == 2
    assert message in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
    assert not out.exists()


def test_cli_sample_refuses_a_stride_outside_the_window(
    runs: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for stride in ("0", "9"):
        args = ["terrain", "sample", "--run", str(runs["root"] / "flow"), "--stride", stride,
                "--size", "64x64", "--out", str(tmp_path / "s.zarr")]  # fmt: skip
        assert main(args) == 2
        err = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
        assert f"stride must be 1 to 8 latent cells (the window side), got {stride}" in err
        assert not (tmp_path / "s.zarr").exists()


@pytest.mark.long
def test_cli_sample_outpaints_a_large_canvas(
    runs: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["terrain", "sample", "--run", str(runs["root"] / "flow"), "--size", "64x96",
            "--out", str(tmp_path / "s.zarr"), "--plots", str(tmp_path / "p"),
            "--condition", "coarse", "--two-stage"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["size"] == [64, 96] and np.isfinite(out["metrics"]["seam_rms_m"])
    # Overlapping windows: seams no worse than independent tiles.
    assert out["metrics"]["seam_rms_m"] < out["tiled_metrics"]["seam_rms_m"]
    assert (tmp_path / "p" / "sample_canvas.png").is_file()
    assert load_dem(tmp_path / "s.zarr").shape == (64, 96)
    assert main(args) == 2  # the store exists: refused without --overwrite
    with pytest.raises(StoreExistsError):
        train_vae(VAE, runs["root"] / "vae")


def test_detail_noise_has_the_requested_spectrum(runs: dict) -> None:
    import dataclasses

    models = load_models(runs["root"] / "vae")
    # A flat spectral density c is white noise of variance c (the mean removed).
    white = dataclasses.replace(
        models, detail_freq=np.array([0.0, 1.0]), detail_power=np.array([4.0, 4.0])
    )
    z = detail_noise(white, jax.random.key(0), (8, 64, 64))
    assert z.shape == (8, 64, 64)
    assert np.var(z) == pytest.approx(4.0, rel=0.05)
    assert np.abs(z.mean(axis=(-2, -1))).max() < 1e-9
    fitted = with_detail(models, n=16)
    assert fitted.detail_power is not None and (fitted.detail_power > 0).all()
