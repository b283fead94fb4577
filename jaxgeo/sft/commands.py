"""Command-line registration for ``jaxgeo sft`` (thin: parse, call, print, write)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _enable_x64() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)


def _cmd_run(args: argparse.Namespace) -> int:
    from ..cli import print_summary
    from ..errors import InputError
    from .config import SftConfig, default_config_path

    if args.default == (args.config is not None):
        raise InputError(
            "give either a CONFIG file or --default (the packaged CR2252 run), not both"
        )
    _enable_x64()
    from ..parallel import DistributedSpec, initialize

    # Before anything touches the devices: a multi-host run joins its coordinator first.
    initialize(DistributedSpec.from_env(args.coordinator, args.num_processes, args.process_id))
    path = default_config_path() if args.default else Path(args.config)
    cfg = SftConfig.from_toml(path)
    from .run import run

    summary = run(
        cfg,
        args.out,
        overwrite=args.overwrite,
        resume=args.resume,
        plots=args.plots,
        progress=not args.no_progress,
        devices=args.devices,
        shard=args.shard,
    )
    print_summary(summary)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from ..cli import print_summary
    from ..io import open_store
    from .plot import plot_run

    paths = plot_run(open_store(args.store), args.out)
    print_summary({"ok": True, "command": "sft plot", "plots": [str(p) for p in paths]})
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from ..cli import print_summary
    from .convert import convert

    summary = convert(
        Path(args.src), Path(args.dst), overwrite=args.overwrite, time_index=args.time_index
    )
    print_summary({"ok": True, "command": "sft convert", **summary})
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from ..cli import print_summary

    _enable_x64()
    from .validate import run_validation

    summary = run_validation(
        cases=args.case,
        data_dir=args.data,
        json_only=args.json,
        include_slow=args.all,
    )
    print_summary(summary)
    return 0 if summary.get("ok") else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the sft commands."""
    p = subparsers.add_parser(
        "run",
        help="simulate (an ensemble when [ensemble] is set) and write a zarr store",
        description="Run a flux-transport simulation from a TOML config and write RUN.zarr.",
    )
    p.add_argument("config", nargs="?", help="TOML config (see docs/sft/config.md)")
    p.add_argument(
        "--default",
        action="store_true",
        help="run the packaged default (CR2252 HMI map, 1 rotation, ensemble over nu)",
    )
    p.add_argument("--out", required=True, help="output zarr store (a directory)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output store")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its last checkpoint"
    )
    p.add_argument("--plots", metavar="DIR", help="also write the standard figures (PNG) into DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--devices", type=int, help="use the first N devices (default: all)")
    p.add_argument(
        "--shard",
        choices=("realization", "lon"),
        default="realization",
        help="split the ensemble over devices (default), or the longitudes of each member",
    )
    p.add_argument(
        "--coordinator", help="multi-host: coordinator address host:port (or JAXGEO_COORDINATOR)"
    )
    p.add_argument(
        "--num-processes",
        type=int,
        help="multi-host: number of processes (or JAXGEO_NUM_PROCESSES)",
    )
    p.add_argument(
        "--process-id", type=int, help="multi-host: this process's index (or JAXGEO_PROCESS_ID)"
    )
    p.set_defaults(func=_cmd_run)

    p = subparsers.add_parser(
        "validate",
        help="run HipFT's validation cases and compare with HipFT's results",
        description="Run HipFT's test-suite cases; print a table of errors next to HipFT's.",
    )
    p.add_argument(
        "--case", action="append", help="case name (repeatable); default: all fast cases"
    )
    p.add_argument(
        "--data", help="folder of HipFT reference data (default: ../shared/data/hipft if present)"
    )
    p.add_argument(
        "--all", action="store_true", help="include the slow cases (1024x512 dipole, real-map case)"
    )
    p.add_argument("--json", action="store_true", help="print only the JSON summary (no table)")
    p.set_defaults(func=_cmd_validate)

    from .inference import register_infer

    register_infer(subparsers)

    p = subparsers.add_parser(
        "plot", help="maps, butterfly diagram and history plots of a run store"
    )
    p.add_argument("store", help="run store written by `jaxgeo sft run`")
    p.add_argument("--out", required=True, help="folder for the PNG files")
    p.set_defaults(func=_cmd_plot)

    p = subparsers.add_parser("convert", help="HipFT HDF5 map <-> zarr store")
    p.add_argument("src", help="input: HipFT/PSI .h5 map or a jaxgeo run store")
    p.add_argument("dst", help="output: .zarr store or .h5 map")
    p.add_argument(
        "--time-index",
        type=int,
        default=-1,
        help="which stored map to write when converting a store to HDF5 (default: last)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_convert)
