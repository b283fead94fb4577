"""jaxgeo.terrain: EarthCrafter's generative core on 2.5-D terrain.

A heightmap VAE (:mod:`.vae`), rectified-flow matching in its latent space with mixed
conditions, classifier-free guidance and a coarse-to-fine option (:mod:`.flow`),
sliding-window outpainting (:mod:`.outpaint`), evaluation without pretrained networks
(:mod:`.metrics`), on real DEMs shipped offline (:mod:`.data`). See ``docs/terrain.md``.
"""

from .conditions import ClassSpec as ClassSpec
from .conditions import class_map as class_map
from .conditions import coarse_heightmap as coarse_heightmap
from .data import Dem as Dem
from .data import load_dem as load_dem
from .data import read_geotiff as read_geotiff
from .data import write_dem_store as write_dem_store
from .flow import FlowModel as FlowModel
from .flow import FlowSpec as FlowSpec
from .flow import sample as sample
from .vae import HeightmapVAE as HeightmapVAE
from .vae import VaeSpec as VaeSpec
