"""Multi-process (multi-host) start-up: ``jax.distributed.initialize`` from flags or the
environment, and the barrier the writers of a shared store synchronise on.

Flags win over the environment; the environment variables are jaxgeo's own
(``JAXGEO_COORDINATOR``, ``JAXGEO_NUM_PROCESSES``, ``JAXGEO_PROCESS_ID``) and, when none of
them is set, whatever ``jax.distributed.initialize()`` detects by itself (Slurm, Open MPI,
Kubernetes, TPU pods).
"""

from __future__ import annotations

import dataclasses
import os

import jax

from jaxgeo.errors import InputError

__all__ = ["DistributedSpec", "barrier", "initialize", "is_coordinator"]


@dataclasses.dataclass(frozen=True)
class DistributedSpec:
    """Where the coordinator listens and which process this is (None: detect)."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False  # let JAX detect the cluster (Slurm, MPI) when nothing else is given

    @classmethod
    def from_env(
        cls,
        coordinator: str | None = None,
        num_processes: int | None = None,
        process_id: int | None = None,
    ) -> DistributedSpec:
        """Flags, completed from ``JAXGEO_*`` environment variables."""
        env = os.environ
        coordinator = coordinator or env.get("JAXGEO_COORDINATOR") or None
        if num_processes is None and env.get("JAXGEO_NUM_PROCESSES"):
            num_processes = int(env["JAXGEO_NUM_PROCESSES"])
        if process_id is None and env.get("JAXGEO_PROCESS_ID"):
            process_id = int(env["JAXGEO_PROCESS_ID"])
        auto = env.get("JAXGEO_DISTRIBUTED", "").lower() in ("1", "true", "auto")
        return cls(coordinator, num_processes, process_id, auto)

    @property
    def requested(self) -> bool:
        return self.auto or any(
            v is not None for v in (self.coordinator, self.num_processes, self.process_id)
        )

    def check(self) -> None:
        """Refuse an incomplete or inconsistent explicit specification."""
        if self.auto and self.coordinator is None:
            return
        given = [self.coordinator, self.num_processes, self.process_id]
        if any(v is None for v in given):
            raise InputError(
                "multi-process runs need --coordinator HOST:PORT, --num-processes N and "
                f"--process-id I together (got {given}); or set JAXGEO_DISTRIBUTED=auto"
            )
        assert self.num_processes is not None and self.process_id is not None
        if self.num_processes < 1 or not 0 <= self.process_id < self.num_processes:
            raise InputError(
                f"--process-id must be in [0, {self.num_processes}), got {self.process_id}"
            )


def initialize(spec: DistributedSpec) -> bool:
    """Start ``jax.distributed`` when ``spec`` asks for it; True when running multi-process.

    Must run before any other JAX call touches the devices.
    """
    if not spec.requested:
        return False
    spec.check()
    if spec.coordinator is None:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(
            coordinator_address=spec.coordinator,
            num_processes=spec.num_processes,
            process_id=spec.process_id,
        )
    return jax.process_count() > 1


def is_coordinator() -> bool:
    """Process 0 creates shared outputs and writes what belongs to no one process."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the same ``name`` (no-op for one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
