"""edgemeter: predict how fast a deep-learning model runs on a device and runtime."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgemeter")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
