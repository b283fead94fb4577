"""Command-line registration for ``jaxgeo sft``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the sft commands (filled in by the flux-transport work)."""
