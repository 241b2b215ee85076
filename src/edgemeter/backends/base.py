"""The backend interface: one runtime on one device with fixed settings.

A :class:`Backend` validates its settings when it is built, describes its environment, and loads a
model into a :class:`Runner` in the current process. Timing, rounds and fault isolation are the
measurement protocol's job (:mod:`edgemeter.backends.protocol`), not the backend's.
"""
from __future__ import annotations

import importlib
import os
import platform
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from edgemeter.errors import ConfigError, ModelError, import_extra


@dataclass(frozen=True)
class Option:
    """A backend setting: its default and either the allowed values or the accepted type."""

    default: Any
    choices: tuple | None = None
    type: type | None = None
    help: str = ""

    def check(self, backend: str, name: str, value: Any) -> Any:
        if self.choices is not None:
            if value not in self.choices:
                allowed = ", ".join(map(str, self.choices))
                raise ConfigError(f"backend {backend}: option {name}={value!r} is not allowed "
                                  f"(allowed: {allowed})")
            return value
        if self.type is not None and not isinstance(value, self.type):
            try:
                return self.type(value)
            except (TypeError, ValueError):
                raise ConfigError(f"backend {backend}: option {name}={value!r} must be a "
                                  f"{self.type.__name__}") from None
        return value


class Runner(ABC):
    """A model loaded in a runtime, with fixed random inputs: ``run()`` is one inference."""

    # The runtime's own graph, filled by runners whose profiler reports it (see node_origins).
    origins: dict[str, list[str]] | None = None
    inputs_of: dict[str, list[str]] | None = None

    @abstractmethod
    def run(self) -> None:
        """Run one inference on the fixed inputs and wait for its outputs."""

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """One inference on ``inputs`` (tensor name -> array); the outputs by tensor name.
        Chaining runners (heterogeneous execution, :mod:`edgemeter.pareto`) needs it."""
        raise ConfigError(f"{type(self).__name__} cannot run on given inputs")

    def node_times(self, runs: int) -> dict[str, float] | None:
        """Median per-node (or per-layer) time in ms over ``runs`` profiled inferences, from the
        runtime's own profiler; keys are ONNX node names where the runtime keeps them. None when
        the runtime exposes no per-node times."""
        return None

    def node_origins(self) -> dict[str, list[str]] | None:
        """Runtime node -> names of the model's nodes it executes, where the runtime records
        them (fused layers); None when it does not. Maps node times back to kernels."""
        return self.origins

    def node_inputs(self) -> dict[str, list[str]] | None:
        """Runtime node -> the runtime nodes feeding it, in the graph the runtime executes; None
        when it does not expose it. Charges the nodes it inserts (layout reorders) to kernels."""
        return self.inputs_of

    def close(self) -> None:
        """Release the runtime's resources (profiling files, sessions)."""


class Backend(ABC):
    """A runtime + device + settings that can load a model and run it in this process."""

    name: ClassVar[str]                     # registry name, such as "onnxruntime-cpu"
    extra: ClassVar[str | None] = None      # pip extra that provides the runtime
    requires: ClassVar[str | None] = None   # importable module of the runtime
    rules: str | None = None                # fusion rules of the runtime (kernels.load_rules)
    # Where the speed anchor was measured not to follow this backend's models: what was seen,
    # said to whoever puts a prediction at the machine's speed by the anchor (predict --calibrate).
    anchor_caveat: ClassVar[str | None] = None
    # Settings beyond ``threads``; subclasses extend this.
    options: ClassVar[dict[str, Option]] = {}

    def __init__(self, threads: int = 1, **options: Any):
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"backend {self.name}: threads={threads!r} must be an integer >= 1")
        self.threads = threads
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = ", ".join(["threads", *sorted(self.options)])
            raise ConfigError(f"backend {self.name}: unknown option {unknown[0]!r} "
                              f"(allowed: {allowed})")
        self.config = {key: option.check(self.name, key, options.get(key, option.default))
                       for key, option in self.options.items()}

    @classmethod
    def description(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    @classmethod
    def available(cls) -> bool:
        """Whether the runtime package is installed (checked without importing it)."""
        return cls.requires is None or importlib.util.find_spec(cls.requires) is not None

    def settings(self) -> dict[str, Any]:
        """Everything that changes the result: the measurement key and what gets recorded."""
        return {"threads": self.threads, **self.config}

    def runtime(self) -> ModuleType:
        """Import the runtime, or say which extra provides it."""
        return import_extra(self.requires, self.requires, self.extra or "all")

    def environment(self) -> dict[str, Any]:
        """The machine and runtime this backend measures on."""
        return {**machine_environment(), "backend": self.name, "threads": self.threads,
                **self.runtime_environment(), "settings": self.settings()}

    @abstractmethod
    def runtime_environment(self) -> dict[str, Any]:
        """``runtime``, ``runtime_version``, ``precision`` and whatever else the runtime reports."""

    def test_connection(self) -> str:
        env = self.environment()
        return (f"hello from {self.name}: {env['runtime']} {env['runtime_version']} on "
                f"{env['cpu']} ({env['cores']} cores, {self.threads} threads, "
                f"{env['precision']})")

    def run_round(self, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """One round of the measurement protocol (``payload`` as for
        :mod:`edgemeter.backends.worker`): a fresh local worker process. Remote backends run it
        on their device instead; a round that gives no result raises ``RoundFailed``."""
        from edgemeter.backends.protocol import run_child

        return run_child(payload, timeout_s, self.threads)

    @abstractmethod
    def load(self, model_path: Path) -> Runner:
        """Prepare ``model_path`` for the runtime (converting it if needed) and load it in this
        process. A model the runtime rejects raises ModelError."""


# CPU features that change which kernels a runtime picks.
_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
              "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


def machine_environment() -> dict[str, Any]:
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                cpu = value.strip()
            elif key in ("flags", "Features"):
                flags = set(value.split())
                break
    except OSError:  # not Linux
        pass
    return {"cpu": cpu, "cpu_flags": [f for f in _CPU_FLAGS if f in flags],
            "cores": os.cpu_count(), "os": platform.platform(),
            "python": platform.python_version()}


def onnx_inputs(model_path: Path, seed: int = 0) -> dict[str, Any]:
    """Fixed random inputs for an ONNX model's graph inputs (symbolic dims become 1)."""
    import numpy as np
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a corrupt file
        raise ModelError(f"{model_path}: not a readable ONNX model ({exc})") from None
    initializers = {init.name for init in model.graph.initializer}
    rng = np.random.default_rng(seed)
    inputs = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim]
        dtype = tensor_dtype_to_np_dtype(tensor.elem_type)
        if np.issubdtype(dtype, np.floating):
            inputs[value.name] = rng.standard_normal(shape).astype(dtype)
        else:  # booleans and indices: 0/1 keeps gathers in range
            inputs[value.name] = rng.integers(0, 2, shape).astype(dtype)
    return inputs
