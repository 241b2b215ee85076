"""LiteRT (TensorFlow Lite) interpreter with its default XNNPACK delegate on the CPU.

Runs .tflite files as they are; ONNX models are converted first with
:func:`edgemeter.converters.tflite.onnx_to_tflite`, which needs no TensorFlow. Timed runs use the
Python interpreter; per-operator times come from LiteRT's C API profiler in a compiled model of
their own (:mod:`edgemeter.backends.litert_profile`), as onnxruntime's come from a profiled
session of their own.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgemeter.backends.base import Backend, Runner
from edgemeter.errors import ModelError


class LiteRTXNNPACK(Backend):
    """LiteRT interpreter, XNNPACK delegate, f32 (ONNX models converted to .tflite)."""

    name = "litert-xnnpack"
    extra = "litert"
    requires = "ai_edge_litert"
    rules = "tflite-xnnpack"

    def runtime_environment(self) -> dict[str, Any]:
        from importlib.metadata import version
        return {"runtime": "litert", "runtime_version": version("ai-edge-litert"),
                "precision": "f32", "device": "CPU (XNNPACK)"}

    def load(self, model_path: Path) -> Runner:
        return LiteRTRunner(self, self.tflite(model_path), model_path)

    @staticmethod
    def tflite(model_path: Path) -> bytes:
        """The model as LiteRT runs it: a .tflite file as it is, an ONNX model converted."""
        if model_path.suffix.lower() == ".tflite":
            return model_path.read_bytes()
        from edgemeter.converters.tflite import onnx_to_tflite

        with tempfile.TemporaryDirectory(prefix="edgemeter-litert-") as tmp:
            tflite_path = Path(tmp) / f"{model_path.stem}.tflite"
            onnx_to_tflite(model_path, tflite_path)
            return tflite_path.read_bytes()


class LiteRTRunner(Runner):
    def __init__(self, backend: LiteRTXNNPACK, model: bytes, source: Path):
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.backend, self.model, self.source = backend, model, source
        try:
            # AUTO = built-in kernels with the default delegates, which is XNNPACK on CPU.
            self.interpreter = Interpreter(
                model_content=model, num_threads=backend.threads,
                experimental_op_resolver_type=OpResolverType.AUTO)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"litert rejects {source.name}: {exc}") from None
        rng = np.random.default_rng(0)
        for detail in self.interpreter.get_input_details():
            dtype = np.dtype(detail["dtype"])
            value = (rng.standard_normal(detail["shape"]) if np.issubdtype(dtype, np.floating)
                     else rng.integers(0, 2, detail["shape"]))
            self.interpreter.set_tensor(detail["index"], value.astype(dtype))

    def run(self) -> None:
        self.interpreter.invoke()

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        for detail in self.interpreter.get_input_details():
            self.interpreter.set_tensor(detail["index"], inputs[detail["name"]])
        self.interpreter.invoke()
        return {detail["name"]: self.interpreter.get_tensor(detail["index"])
                for detail in self.interpreter.get_output_details()}

    def node_times(self, runs: int) -> dict[str, float]:
        """Mean time per operator over ``runs`` from LiteRT's profiler (labels: see
        :func:`~edgemeter.backends.litert_profile.operator_times`); the model nodes each runs
        come from matching the operators with the model's nodes in order
        (:func:`~edgemeter.backends.litert_profile.align`)."""
        from edgemeter.backends.litert_profile import operator_origins, operator_times
        from edgemeter.importers import load_graph

        times = operator_times(self.model, runs, self.backend.threads)
        self.origins = operator_origins(load_graph(self.source), [label for label, _ in times])
        return dict(times)

    def close(self) -> None:
        self.interpreter = None
