"""Write docs/sft/config.md from the config dataclasses (run after changing a config key).

    .venv/bin/python docs/gen_config_reference.py
"""

from __future__ import annotations

from pathlib import Path

from jaxgeo.config import describe
from jaxgeo.sft.config import ENSEMBLE_KEYS, SftConfig

HEADER = """# Flux-transport config reference (`jaxgeo sft run CONFIG.toml`)

Generated from `jaxgeo/sft/config.py` by `docs/gen_config_reference.py`; do not edit by hand.

A TOML file with the sections below. A physics section that is present switches that process on
(`[flow]`, `[diffusion]`, `[sources.rfe]`, `[assimilation]`), as HipFT's `advance_*` switches do; a key
left out inside a section takes the default shown (HipFT's default). Unknown keys, wrong types,
out-of-range values and missing files are refused before any work starts, with the key path in the
message. Relative paths are relative to the config file's folder.

| key | default | unit | meaning |
|---|---|---|---|
"""

ENSEMBLE = """
## `[ensemble]`

Per-realization values, one list per parameter, keyed by the dotted config path:

```toml
[ensemble]
mode = "zip"                                   # zip (lists of one length) | product (Cartesian)
"diffusion.nu_km2_s" = [100.0, 200.0, 400.0, 800.0]
"flow.meridional.p1" = [18.0, 22.0, 26.0, 30.0]
```

Parameters that can vary: {keys}.
A 3-D initial map (one slice per realization) also makes an ensemble; its count must agree with
the lists'. All realizations run in one compiled program (`jax.vmap`).
"""


def render() -> str:
    rows = [r for r in describe(SftConfig) if not r[0].startswith(("[ensemble]", "ensemble."))]
    lines = [HEADER.rstrip("\n")]
    for key, default, unit, doc in rows:
        doc = doc.replace("|", "\\|")
        if key.startswith("["):
            lines.append(f"| **`{key}`** | | | {doc} |")
        else:
            lines.append(f"| `{key}` | `{default}` | {unit} | {doc} |")
    keys = ", ".join(f"`{k}`" for k in ENSEMBLE_KEYS)
    return "\n".join(lines) + "\n" + ENSEMBLE.format(keys=keys)


if __name__ == "__main__":
    out = Path(__file__).parent / "sft" / "config.md"
    out.write_text(render())
    print(out)
