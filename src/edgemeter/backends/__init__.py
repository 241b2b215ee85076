"""Backends: run a model on a real runtime and measure it.

Built-in backends are registered here by import path (so listing them imports no runtime);
third-party backends register through the ``edgemeter.backends`` entry point group::

    [project.entry-points."edgemeter.backends"]
    my-npu = "my_package.backend:MyNPUBackend"

``measure`` runs the measurement protocol (fresh child processes, rounds, spread) on one of them.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from edgemeter.backends.base import Backend, Option, Runner
from edgemeter.backends.protocol import Measurement, Protocol, measure, measure_models
from edgemeter.errors import ConfigError

__all__ = ["Backend", "BackendInfo", "Measurement", "Option", "Protocol", "Runner",
           "backend_class", "backend_target", "get_backend", "list_backends", "measure",
           "measure_models", "register_backend"]

ENTRY_POINT_GROUP = "edgemeter.backends"

BUILTINS = {
    "onnxruntime-cpu": "edgemeter.backends.onnxruntime:OnnxRuntimeCPU",
    "openvino-cpu-f32": "edgemeter.backends.openvino:OpenVINOCPUF32",
    "openvino-cpu-bf16": "edgemeter.backends.openvino:OpenVINOCPUBF16",
    "litert-xnnpack": "edgemeter.backends.litert:LiteRTXNNPACK",
    "torch-cpu": "edgemeter.backends.torch:TorchCPU",
    "ssh": "edgemeter.backends.ssh:SSHBackend",
    "adb-tflite": "edgemeter.backends.adb:ADBTFLite",
}

# Backends registered at run time with register_backend (tests, notebooks).
_registered: dict[str, str] = {}


@dataclass
class BackendInfo:
    name: str
    available: bool
    extra: str | None
    description: str
    source: str  # "built-in", "registered" or the distribution that declares the entry point


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Register a Backend subclass under ``cls.name`` (usable as a class decorator). The child
    processes of the protocol import it again by module path, so it must live in an importable
    module, not in ``__main__``."""
    _registered[cls.name] = f"{cls.__module__}:{cls.__qualname__}"
    return cls


def _targets() -> dict[str, tuple[str, str]]:
    """name -> (``module:attr`` import target, source)."""
    targets = {name: (target, "built-in") for name, target in BUILTINS.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "entry point"
        targets.setdefault(ep.name, (ep.value, dist))
    targets.update({name: (target, "registered") for name, target in _registered.items()})
    return targets


def backend_target(name: str) -> str:
    """The ``module:attr`` import path of backend ``name``."""
    targets = _targets()
    if name not in targets:
        raise ConfigError(f"unknown backend '{name}' (available: {', '.join(sorted(targets))})")
    return targets[name][0]


def load_target(target: str) -> type[Backend]:
    module, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load backend {target}: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, Backend)):
        raise ConfigError(f"{target} is not an edgemeter Backend subclass")
    return obj


def backend_class(name: str) -> type[Backend]:
    return load_target(backend_target(name))


def get_backend(name: str, **config: Any) -> Backend:
    """Build backend ``name`` with ``threads`` and its options; bad values raise ConfigError."""
    return backend_class(name)(**config)


def list_backends() -> list[BackendInfo]:
    infos = []
    for name, (target, source) in sorted(_targets().items()):
        try:
            cls = load_target(target)
        except ConfigError as exc:  # a broken plugin is listed, not fatal
            infos.append(BackendInfo(name, False, None, str(exc), source))
            continue
        infos.append(BackendInfo(name, cls.available(), cls.extra, cls.description(), source))
    return infos
