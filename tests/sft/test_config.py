"""Config parsing and validation: every bad input names its key and the expectation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxgeo.errors import ConfigError
from jaxgeo.sft.config import SftConfig, default_config_path

GOOD = """
[grid]
n_theta = 31
n_phi = 61
[initial]
kind = "soccer"
[time]
end_hours = 24.0
dt_max_hours = 1.0
[flow]
differential_rotation = { model = "aft" }
meridional = { model = "aft", p1 = 20.0 }
attenuate_gauss = 500.0
[diffusion]
nu_km2_s = 300.0
[ensemble]
"diffusion.nu_km2_s" = [100.0, 200.0]
"flow.meridional.p1" = [10.0, 20.0]
"""


def test_good_config_round_trips_through_toml():
    cfg = SftConfig.from_toml_text(GOOD)
    assert cfg.flow is not None and cfg.flow.meridional is not None
    # A key left out inside a section takes HipFT's default.
    assert (cfg.flow.meridional.p1, cfg.flow.meridional.p3, cfg.flow.meridional.p5) == (
        20.0,
        11.0,
        -28.0,
    )
    assert cfg.flow.differential_rotation is not None and cfg.flow.differential_rotation.p0 == 46.0
    assert SftConfig.from_toml_text(cfg.to_toml()) == cfg


def test_zip_and_product_ensembles():
    cfg = SftConfig.from_toml_text(GOOD)
    assert cfg.realizations() == [
        {"diffusion.nu_km2_s": 100.0, "flow.meridional.p1": 10.0},
        {"diffusion.nu_km2_s": 200.0, "flow.meridional.p1": 20.0},
    ]
    prod = SftConfig.from_toml_text(GOOD.replace("[ensemble]", '[ensemble]\nmode = "product"'))
    assert len(prod.realizations()) == 4
    member = prod.with_overrides(prod.realizations()[3])
    assert member.diffusion.nu_km2_s == 200.0 and member.flow.meridional.p1 == 20.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[diffusion]\nnu_km2_s = -3", "diffusion.nu_km2_s must be >= 0 km^2/s, got -3"),
        ("[diffusion]\nnu = 3.0", "unknown key 'nu' in [diffusion]"),
        ('[time]\nend_hours = "soon"', "time.end_hours must be a number"),
        ("[time]\nend_hours = 0.0", "time.end_hours must be > time.start_hours"),
        ('[flow]\nscheme = "weno5"', "flow.scheme must be one of"),
        ("[flow]\nattenuate_gauss = 0.0", "flow.attenuate_gauss must be > 0"),
        ("[initial]\nkind = 'map'", "initial.path is required"),
        ("[initial]\nkind = 'harmonic'\nl = 2\nm = 3", "initial.m must satisfy |m| <= l"),
        ("[bogus]\nx = 1", "unknown key 'bogus'"),
        (
            "[initial]\nkind='zero'\n[ensemble]\n'diffusion.nu_km2_s' = [1.0]",
            "needs the [diffusion] section",
        ),
        (
            "[initial]\nkind='zero'\n[ensemble]\n'grid.n_theta' = [1.0]",
            "is not a parameter that can vary",
        ),
        (
            "[initial]\nkind='zero'\n[diffusion]\n[ensemble]\n'diffusion.nu_km2_s' = [1.0, 2.0]\n'initial.scale' = [1.0]",
            "same length",
        ),
        ("[diffusion]\nsubcycles = 0", "diffusion.subcycles must be >= 1"),
        ("[output]\ndtype = 'float16'", "output.dtype must be one of"),
        ("[grid]\nn_theta = 2", "grid.n_theta must be >= 5"),
        ("not toml = = 1", "not valid TOML"),
    ],
)
def test_bad_configs_name_the_key(text, message):
    with pytest.raises(ConfigError) as err:
        SftConfig.from_toml_text(text)
    assert message in str(err.value)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        SftConfig.from_toml(tmp_path / "nope.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not"):
        SftConfig.from_toml(binary)


def test_default_config_is_valid_and_resolves_its_map():
    cfg = SftConfig.from_toml(default_config_path())
    assert cfg.resolve(cfg.initial.path).is_file()
    assert len(cfg.realizations()) == 3
    absolute = cfg.with_absolute_paths()
    assert absolute.initial.path.startswith("/")


@given(
    nu=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    end=st.floats(min_value=1e-3, max_value=1e5),
)
def test_valid_numbers_are_accepted(nu, end):
    cfg = SftConfig.from_dict(
        {"initial": {"kind": "zero"}, "diffusion": {"nu_km2_s": nu}, "time": {"end_hours": end}}
    )
    assert cfg.diffusion.nu_km2_s == nu and cfg.time.end_hours == end


@given(nu=st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False))
def test_negative_diffusivity_is_refused(nu):
    with pytest.raises(ConfigError, match="diffusion.nu_km2_s"):
        SftConfig.from_dict({"initial": {"kind": "zero"}, "diffusion": {"nu_km2_s": nu}})
