"""The generated config reference matches the code, and the README holds its two commands."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_up_to_date():
    spec = importlib.util.spec_from_file_location("gen", ROOT / "docs" / "gen_config_reference.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (ROOT / "docs" / "sft" / "config.md").read_text() == gen.render(), (
        "docs/sft/config.md is stale: run .venv/bin/python docs/gen_config_reference.py"
    )


def test_readme_has_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
