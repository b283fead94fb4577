"""Tests of jaxgeo.io.hipft_h5: HipFT/PSI HDF5 maps, synthetic and HipFT's own files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from jaxgeo.errors import FileFormatError, InputError, StoreExistsError
from jaxgeo.io.hipft_h5 import HipftMap, read_hipft_map, write_hipft_map

SMALL_CR2252 = "diffuse_advect_atten_map_1cr/br_hmi_synoptic_mr_polfil_720s_cr2252_pslt_flxbal_remeshed_small.h5"


def _axes(n_theta: int = 7, n_phi: int = 9) -> tuple[np.ndarray, np.ndarray]:
    phi = np.linspace(0.0, 2.0 * np.pi, n_phi)
    # a non-uniform colatitude grid with both poles, as HipFT allows
    theta = np.pi * (
        np.linspace(0.0, 1.0, n_theta) + 0.05 * np.sin(np.linspace(0.0, 2.0 * np.pi, n_theta))
    )
    theta[0], theta[-1] = 0.0, np.pi
    return phi, theta


def _structure(path: Path) -> list[tuple]:
    """What HipFT's reader and h5py see of a file: members in name order, scales, attachments."""
    out = []
    with h5py.File(path, "r") as f:
        assert dict(f.attrs) == {}
        for name in f:  # h5py iterates in name order, like HipFT's h5Gget_obj_info_idx_f
            d = f[name]
            entry = [name, d.ndim, d.dtype.str, d.chunks, d.compression, h5py.h5ds.is_scale(d.id)]
            if h5py.h5ds.is_scale(d.id):
                refs = d.attrs["REFERENCE_LIST"]
                entry += [d.attrs["NAME"], d.attrs["CLASS"], sorted(int(r[1]) for r in refs)]
            else:
                entry += [
                    [dim.label for dim in d.dims],
                    [[s.name for s in dim.values()] for dim in d.dims],
                    sorted(d.attrs),
                ]
            out.append(tuple(entry))
    return out


def _write_raw(path: Path, data, scales: dict[str, np.ndarray], *, data_name: str = "Data") -> Path:
    """A map file built by hand, for malformed inputs."""
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(data_name, data=data)
        for k, (name, values) in enumerate(scales.items()):
            s = f.create_dataset(name, data=values)
            s.make_scale(name)
            if k < dset.ndim:
                dset.dims[k].attach_scale(s)
    return path


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_2d(tmp_path: Path, dtype) -> None:
    phi, theta = _axes()
    data = np.random.default_rng(1).normal(size=(theta.size, phi.size)) * 300.0
    path = write_hipft_map(tmp_path / "br.h5", data, phi, theta, dtype=dtype)
    m = read_hipft_map(path)
    assert isinstance(m, HipftMap) and m.ndim == 2 and m.file_dtype == np.dtype(dtype)
    assert m.data.shape == (1, 7, 9) and m.data.dtype == np.float64
    np.testing.assert_array_equal(m.data[0], data.astype(dtype))
    np.testing.assert_array_equal(m.phi, phi.astype(dtype))
    np.testing.assert_array_equal(m.theta, theta.astype(dtype))
    np.testing.assert_array_equal(m.realization, [1.0])
    with h5py.File(path, "r") as f:
        assert list(f) == ["Data", "dim1", "dim2"]
        assert f["Data"].shape == (7, 9) and f["Data"].dtype == dtype and f["dim1"].dtype == dtype


def test_round_trip_3d(tmp_path: Path) -> None:
    phi, theta = _axes(5, 12)
    data = np.random.default_rng(2).normal(size=(4, theta.size, phi.size))
    m = read_hipft_map(write_hipft_map(tmp_path / "ens.h5", data, phi, theta, dtype=np.float64))
    assert m.ndim == 3 and m.data.shape == (4, 5, 12)
    np.testing.assert_array_equal(m.data, data)
    np.testing.assert_array_equal(m.realization, [1.0, 2.0, 3.0, 4.0])  # HipFT numbers from 1
    with h5py.File(tmp_path / "ens.h5", "r") as f:
        assert list(f) == ["Data", "dim1", "dim2", "dim3"] and f["Data"].shape == (4, 5, 12)

    # one realization with explicit indices stays 3-D; the indices are kept
    one = read_hipft_map(
        write_hipft_map(tmp_path / "one.h5", data[:1], phi, theta, realization=[7.0])
    )
    assert one.ndim == 3 and one.data.shape == (1, 5, 12)
    np.testing.assert_array_equal(one.realization, [7.0])
    # one realization without indices is the 2-D file HipFT takes as an initial map
    assert read_hipft_map(write_hipft_map(tmp_path / "two.h5", data[:1], phi, theta)).ndim == 2


def test_writer_layout_matches_hipfts_attachment_convention(tmp_path: Path) -> None:
    """``dimK`` sits on h5py axis K-1 (HipFT's Fortran writer), whatever that axis's length."""
    phi, theta = _axes()
    path = write_hipft_map(tmp_path / "ens.h5", np.zeros((3, 7, 9)), phi, theta)
    assert _structure(path) == [
        (
            "Data",
            3,
            "<f4",
            None,
            None,
            False,
            ["dim1", "dim2", "dim3"],
            [["/dim1"], ["/dim2"], ["/dim3"]],
            ["DIMENSION_LABELS", "DIMENSION_LIST"],
        ),
        ("dim1", 1, "<f4", None, None, True, b"dim1", b"DIMENSION_SCALE", [0]),
        ("dim2", 1, "<f4", None, None, True, b"dim2", b"DIMENSION_SCALE", [1]),
        ("dim3", 1, "<f4", None, None, True, b"dim3", b"DIMENSION_SCALE", [2]),
    ]


@pytest.mark.reference
def test_reads_every_hipft_map_and_writes_it_back_identically(
    hipft_data: Path, tmp_path: Path
) -> None:
    files = sorted(hipft_data.rglob("*.h5"))
    assert len(files) >= 10
    for k, src in enumerate(files):
        m = read_hipft_map(src)
        with h5py.File(src, "r") as f:
            raw = f["Data"][()]
            assert m.ndim == raw.ndim and m.file_dtype == raw.dtype
            np.testing.assert_array_equal(m.data.reshape(raw.shape), raw.astype(np.float64))
            np.testing.assert_array_equal(m.phi, f["dim1"][()].astype(np.float64))
            np.testing.assert_array_equal(m.theta, f["dim2"][()].astype(np.float64))
        assert m.data.shape == (m.n_realization, m.n_theta, m.n_phi)

        out = tmp_path / f"{k}.h5"
        real = m.realization if m.ndim == 3 else None
        write_hipft_map(out, m.data, m.phi, m.theta, realization=real, dtype=m.file_dtype)
        back = read_hipft_map(out)
        for name in ("data", "phi", "theta", "realization"):
            np.testing.assert_array_equal(
                getattr(back, name), getattr(m, name), err_msg=f"{src}: {name}"
            )
        assert back.ndim == m.ndim and back.file_dtype == m.file_dtype
        assert _structure(out) == _structure(src), src


@pytest.mark.reference
def test_small_cr2252_map(hipft_data: Path) -> None:
    m = read_hipft_map(hipft_data / SMALL_CR2252)
    assert m.data.shape == (1, 180, 360) and m.phi.shape == (360,) and m.theta.shape == (180,)
    assert m.ndim == 2 and m.file_dtype == np.float32
    assert m.theta[0] == 0.0 and m.phi[0] == 0.0
    assert abs(m.theta[-1] - np.pi) < 1e-6 and abs(m.phi[-1] - 2 * np.pi) < 1e-6
    assert 1000.0 < np.abs(m.data).max() < 2000.0  # Gauss, a real HMI map


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    phi, theta = _axes()
    good = np.ones((theta.size, phi.size))
    with pytest.raises(FileFormatError, match=r"nothere\.h5 does not exist"):
        read_hipft_map(tmp_path / "nothere.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(FileFormatError, match=r"text\.h5 is not an HDF5 file"):
        read_hipft_map(text)

    cases = {
        "nodata": (
            dict(data=good, scales={"dim1": phi, "dim2": theta}, data_name="Br"),
            "no dataset 'Data'",
        ),
        "rank1": (dict(data=np.ones(9), scales={"dim1": phi}), "rank 1"),
        "rank4": (dict(data=np.ones((1, 1, 7, 9)), scales={}), "rank 4"),
        "noscale": (dict(data=good, scales={"dim1": phi}), "no scale dataset 'dim2'"),
        "short_phi": (
            dict(data=good, scales={"dim1": phi[:-1], "dim2": theta}),
            r"scale 'dim1' has shape \(8,\)",
        ),
        "swapped": (
            dict(data=good.T, scales={"dim1": phi, "dim2": theta}),
            r"scale 'dim1' has shape \(9,\) but 'Data' \(9, 7\)",
        ),
        "no_pole": (
            dict(data=good, scales={"dim1": phi, "dim2": theta * 0.99}),
            r"theta \(dim2\) must span \[0, pi\]",
        ),
        "desc_theta": (
            dict(data=good, scales={"dim1": phi, "dim2": theta[::-1]}),
            "theta .* strictly ascending",
        ),
        "no_endpoint": (
            dict(
                data=good,
                scales={"dim1": np.linspace(0, 2 * np.pi, phi.size, endpoint=False), "dim2": theta},
            ),
            r"phi \(dim1\) must span \[0, 2\*pi\]",
        ),
        "degrees": (
            dict(data=good, scales={"dim1": np.degrees(phi), "dim2": theta}),
            r"phi \(dim1\) must span",
        ),
        "ints": (
            dict(data=good.astype(np.int32), scales={"dim1": phi, "dim2": theta}),
            "dtype int32",
        ),
    }
    for name, (kwargs, message) in cases.items():
        path = _write_raw(tmp_path / f"{name}.h5", **kwargs)
        with pytest.raises(FileFormatError, match=rf"{name}\.h5.*{message}"):
            read_hipft_map(path)

    nan = good.copy()
    nan[3, 4] = np.nan
    path = _write_raw(tmp_path / "nan.h5", nan, {"dim1": phi, "dim2": theta})
    with pytest.raises(
        FileFormatError,
        match=r"nan\.h5: 'Data' has 1 NaN/inf value\(s\), the first at index \(3, 4\)",
    ):
        read_hipft_map(path)
    assert np.isnan(read_hipft_map(path, require_finite=False).data[0, 3, 4])


def test_write_errors_leave_existing_output_untouched(tmp_path: Path) -> None:
    phi, theta = _axes()
    data = np.arange(63.0).reshape(7, 9)
    out = write_hipft_map(tmp_path / "out.h5", data, phi, theta)
    before = out.read_bytes()

    with pytest.raises(StoreExistsError, match=r"out\.h5 already exists; pass --overwrite"):
        write_hipft_map(out, data * 2, phi, theta)
    nan = data.copy()
    nan[0, 0] = np.inf
    bad = [
        (dict(data=data[:, :-1]), r"needs phi \(8,\)"),
        (dict(data=np.ones((2, 2, 7, 9))), "data must have shape"),
        (dict(data=nan), "NaN/inf"),
        (dict(phi=phi[::-1]), "phi must be strictly ascending"),
        (dict(theta=np.linspace(0.1, np.pi, 7)), r"theta must span \[0, pi\]"),
        (
            dict(data=np.ones((2, 7, 9)), realization=[1.0, 2.0, 3.0]),
            r"realization must have shape \(2,\)",
        ),
        (dict(dtype=np.int16), "dtype must be float32 or float64"),
    ]
    for change, message in bad:
        kwargs = dict(data=data, phi=phi, theta=theta) | change
        with pytest.raises(InputError, match=message):
            write_hipft_map(out, overwrite=True, **kwargs)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]  # no temporary files left

    write_hipft_map(out, data * 2, phi, theta, overwrite=True)
    np.testing.assert_array_equal(read_hipft_map(out).data[0], data * 2)
    (tmp_path / "adir").mkdir()
    with pytest.raises(StoreExistsError, match="not a file"):
        write_hipft_map(tmp_path / "adir", data, phi, theta, overwrite=True)


def test_hipft_map_checks_its_shapes() -> None:
    phi, theta = _axes()
    with pytest.raises(InputError, match="HipftMap.phi must have shape"):
        HipftMap(np.zeros((1, 7, 9)), phi[:-1], theta, np.array([1.0]), 2)
    with pytest.raises(InputError, match="ndim must be 3, or 2 with one realization"):
        HipftMap(np.zeros((2, 7, 9)), phi, theta, np.array([1.0, 2.0]), 2)
