"""Multi-process (multi-host) start-up: ``jax.distributed.initialize`` from flags or the
environment, the barrier the writers of a shared store synchronise on, and placing host
values on a mesh that spans processes.

Flags win over the environment; the environment variables are jaxgeo's own
(``JAXGEO_COORDINATOR``, ``JAXGEO_NUM_PROCESSES``, ``JAXGEO_PROCESS_ID``) and, when none of
them is set, whatever ``jax.distributed.initialize()`` detects by itself (Slurm, Open MPI,
Kubernetes, TPU pods).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import jax
import numpy as np

from jaxgeo.errors import InputError

__all__ = [
    "DistributedSpec",
    "barrier",
    "initialize",
    "interleave_processes",
    "is_coordinator",
    "native_stdout_to_stderr",
    "put_global",
]

T = TypeVar("T")


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

    Must run before any other JAX call touches the devices. On CPU the cross-process
    collectives are gloo's (``jax_cpu_collectives_implementation``, the default since JAX
    0.4.3x; without it a computation spanning processes fails to compile); set
    ``jax_num_cpu_devices`` before this call to give each process several CPU devices.
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


def interleave_processes(devices: Sequence[Any]) -> list[Any]:
    """``devices`` reordered round-robin over processes: p0's first, p1's first, ..., p0's
    second, ...

    A mesh over the first ``n`` of them spans every process as soon as ``n`` is at least the
    process count, so every process holds realizations (and writes them).
    """
    rank: dict[int, int] = {}
    keyed = []
    for i, d in enumerate(devices):
        p = int(d.process_index)
        keyed.append((rank.get(p, 0), p, i, d))
        rank[p] = rank.get(p, 0) + 1
    return [d for *_, d in sorted(keyed, key=lambda k: k[:3])]


def put_global(tree: T, sharding: jax.sharding.Sharding) -> T:
    """Place host values (every process holds the same) as arrays with ``sharding``.

    Unlike ``jax.device_put``, this works for shardings over devices of several processes
    whatever the leaves are (NumPy or JAX arrays, typed PRNG keys): each process builds only
    the shards on its own devices (``jax.make_array_from_callback``), without communication.

    Args:
        tree: a pytree of arrays, identical on every process.
        sharding: where the leaves go (e.g. ``NamedSharding(mesh, P("r"))``).

    Returns:
        The same structure of global ``jax.Array`` s.
    """

    def put(x: Any) -> Any:
        dtype = getattr(x, "dtype", None)
        if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(put, tree)


@contextlib.contextmanager
def native_stdout_to_stderr() -> Iterator[None]:
    """Send everything written to file descriptor 1 to descriptor 2 while inside.

    gloo (JAX's CPU collectives) prints "[Gloo] Rank ... connected" from C++ to stdout each
    time it sets up a communicator; commands promise one JSON line on stdout, so a
    multi-process run sends native output to stderr with the logs. Python's ``sys.stdout`` is
    flushed on the way in and out so nothing written before or after moves.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no descriptor 1 (embedded interpreters): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
