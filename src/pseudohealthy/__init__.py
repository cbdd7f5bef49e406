"""pseudohealthy: FCD type II detection by location-guided pseudo-healthy diffusion synthesis."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pseudohealthy")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
