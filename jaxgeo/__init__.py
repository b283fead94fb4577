"""jaxgeo: differentiable geoscience simulation and modeling in JAX."""

from ._version import __version__ as __version__
from .errors import InputError as InputError
