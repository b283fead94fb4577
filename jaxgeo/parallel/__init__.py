"""jaxgeo.parallel: device meshes, realization padding, halo exchange, multi-process start-up."""

from .distributed import DistributedSpec as DistributedSpec
from .distributed import barrier as barrier
from .distributed import initialize as initialize
from .distributed import is_coordinator as is_coordinator
from .halo import crop_halo as crop_halo
from .halo import exchange_halo as exchange_halo
from .halo import global_sum as global_sum
from .mesh import REALIZATION_AXIS as REALIZATION_AXIS
from .mesh import mesh_for as mesh_for
from .mesh import pad_leading as pad_leading
from .mesh import padded_size as padded_size
from .mesh import select_devices as select_devices
from .mesh import shard_leading as shard_leading
from .mesh import unpad_leading as unpad_leading
