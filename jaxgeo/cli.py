"""The ``jaxgeo`` command line: parse, call, print, write.

Each domain adds its commands through a ``register(subparsers)`` function in its
``commands`` module; the heavy imports (jax, xarray) happen only when a command runs, so
``jaxgeo --help`` stays fast. Logs go to stderr; every command that does work prints one
JSON summary line on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import InputError

log = logging.getLogger("jaxgeo")

# (group name, help, module providing ``register(subparsers)``)
GROUPS: tuple[tuple[str, str, str], ...] = (
    (
        "sft",
        "solar surface flux transport: run, validate, infer, plot, convert",
        "jaxgeo.sft.commands",
    ),
    ("locenc", "location encoders on the sphere", "jaxgeo.locenc.commands"),
    ("hsi", "hyperspectral foundation models", "jaxgeo.hsi.commands"),
    ("agb", "sparse-label aboveground biomass regression", "jaxgeo.agb.commands"),
    (
        "geollm",
        "GeoLLM: map-augmented prompts and language-model fine-tuning",
        "jaxgeo.geollm.commands",
    ),
    ("terrain", "terrain generation by latent flow matching", "jaxgeo.terrain.commands"),
)


def add_run_folder_options(parser: argparse.ArgumentParser) -> None:
    """``--out`` (a training run folder), ``--resume``, ``--overwrite`` and ``--plots``: the
    run-folder options every training command shares (their meaning: jaxgeo.train.RunDir)."""
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace a run in --out")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="write PNG figures to DIR")


def print_summary(summary: dict[str, Any]) -> None:
    """Print the one-line JSON summary of a command on stdout."""
    sys.stdout.write(json.dumps(summary, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger("jaxgeo")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxgeo",
        description="Differentiable geoscience simulation and modeling in JAX.",
    )
    parser.add_argument("--version", action="version", version=f"jaxgeo {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (stderr)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    groups = parser.add_subparsers(dest="group", metavar="GROUP")
    for name, help_text, module_name in GROUPS:
        group_parser = groups.add_parser(name, help=help_text, description=help_text)
        commands = group_parser.add_subparsers(dest="command", metavar="COMMAND")
        module = importlib.import_module(module_name)
        module.register(commands)
        group_parser.set_defaults(_group_parser=group_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(-1 if args.quiet else args.verbose)
    if args.group is None:
        parser.print_help(sys.stderr)
        return 2
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        args._group_parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except InputError as err:
        log.error("%s", err)
        print_summary({"ok": False, "error": str(err), "error_type": type(err).__name__})
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; rerun with --resume to continue from the last checkpoint")
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
