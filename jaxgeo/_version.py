"""Package version, read from the installed metadata."""

from importlib import metadata

try:
    __version__ = metadata.version("jaxgeo")
except metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.1.0+src"
