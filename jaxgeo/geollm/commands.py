"""Command-line registration for this domain.

No commands are registered yet: the group exists so that ``jaxgeo --help`` shows the layout,
and it says so plainly instead of offering commands that do nothing.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # noqa: ARG001
    """This domain has no commands yet; its issue adds them."""
