"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""
import importlib
from types import ModuleType


class EdgemeterError(Exception):
    """Base of every error that is the input's fault, not a bug in edgemeter."""


class ModelError(EdgemeterError):
    """A model file or object that cannot be read as a graph."""


class ConfigError(EdgemeterError):
    """A bad option, config file value, rule file or name."""


class MissingExtraError(EdgemeterError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str):
        super().__init__(f"{package} is not installed: pip install 'edgemeter[{extra}]'")
        self.package, self.extra = package, extra


def import_extra(module: str, package: str, extra: str) -> ModuleType:
    """Import an optional dependency, or raise MissingExtraError naming the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(package, extra) from None
