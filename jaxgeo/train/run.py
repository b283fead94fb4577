"""The shell of a training run: an output folder with its settings, checkpoints and resume;
progress on stderr.

A run folder holds ``run.json`` (the settings that define the run) and ``checkpoints/``.
Starting a run in a folder that already holds one is refused unless resuming; resuming
checks that the settings are the same (except those listed as free to change, such as the
number of epochs), so a checkpoint is never continued under other settings.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from jaxgeo.errors import ConfigError, FileFormatError, StoreExistsError

__all__ = ["RunDir", "progress"]

log = logging.getLogger("jaxgeo.train")
T = TypeVar("T")
RUN_JSON = "run.json"


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterator[T]:
    """Iterate with a tqdm bar on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=desc, file=sys.stderr, disable=None, leave=False)


def _strip(info: dict, free: Sequence[str]) -> dict:
    info = json.loads(json.dumps(info, default=str))
    for key in free:
        info.pop(key, None)
    return info


class RunDir:
    """An output folder with ``run.json`` and orbax checkpoints.

    Args:
        out: The folder.
        info: JSON-serialisable settings of the run, written to ``run.json``.
        resume: Continue a run: ``run.json`` must exist and match ``info``.
        overwrite: Start afresh even when the folder holds a run (its checkpoints are removed).
        free: Keys of ``info`` a resumed run may change (e.g. ``"epochs"``).
        max_to_keep: Checkpoints kept.

    Raises:
        StoreExistsError: The folder holds a run and neither ``resume`` nor ``overwrite``.
        FileFormatError: ``resume`` without a run in the folder.
        ConfigError: ``resume`` with other settings than the saved run's.
    """

    def __init__(
        self,
        out: str | Path,
        info: dict[str, Any],
        *,
        resume: bool = False,
        overwrite: bool = False,
        free: Sequence[str] = ("epochs",),
        max_to_keep: int = 2,
    ) -> None:
        from jaxgeo.io import Checkpointer

        self.out = Path(out)
        run_json = self.out / RUN_JSON
        if resume:
            if not run_json.is_file():
                raise FileFormatError(f"cannot resume: {run_json} not found")
            saved = json.loads(run_json.read_text())
            if _strip(saved, free) != _strip(info, free):
                raise ConfigError(
                    f"cannot resume from {self.out}: its run used other settings "
                    f"(saved {saved}, asked {info})"
                )
        elif run_json.exists() or (self.out / "checkpoints").exists():
            if not overwrite:
                raise StoreExistsError(
                    f"{self.out} already holds a run; use --resume, --overwrite or another folder"
                )
            import shutil

            shutil.rmtree(self.out / "checkpoints", ignore_errors=True)
        self.out.mkdir(parents=True, exist_ok=True)
        run_json.write_text(json.dumps(info, indent=2, default=str) + "\n")
        self.resume = resume
        self.checkpointer = Checkpointer(self.out / "checkpoints", max_to_keep=max_to_keep)

    def restore(self, target: Any) -> tuple[Any, dict[str, Any]] | None:
        """The latest checkpoint when resuming and there is one; else None."""
        if not self.resume or self.checkpointer.latest_step() is None:
            return None
        state, meta = self.checkpointer.restore(target=target)
        log.info("resumed from step %s", self.checkpointer.latest_step())
        return state, meta

    def save(self, step: int, state: Any, meta: dict[str, Any] | None = None) -> None:
        """Checkpoint ``state`` as ``step`` (a no-op when that step is already saved)."""
        if step not in self.checkpointer.all_steps():
            self.checkpointer.save(step, state, meta)

    def close(self) -> None:
        self.checkpointer.close()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
