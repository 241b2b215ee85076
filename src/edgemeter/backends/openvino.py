"""OpenVINO on the CPU, with the inference precision set explicitly.

OpenVINO's CPU plugin silently runs bf16 on CPUs with AVX512-BF16/AMX, 2-6x faster than f32, so a
latency without its precision means little: f32 and bf16 are separate backends.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from edgemeter.backends.base import Backend, Runner, onnx_inputs
from edgemeter.backends.kernel_times import median_node_times
from edgemeter.errors import ConfigError, ModelError


class OpenVINOCPU(Backend):
    """OpenVINO CPU plugin (base of the precision-specific backends)."""

    extra = "openvino"
    requires = "openvino"
    rules = "openvino-cpu"
    precision: ClassVar[str]

    def runtime_environment(self) -> dict[str, Any]:
        ov = self.runtime()
        return {"runtime": "openvino", "runtime_version": ov.get_version(),
                "precision": self.precision,
                "device": ov.Core().get_property("CPU", "FULL_DEVICE_NAME")}

    def compile(self, model_path: Path, profile: bool = False):
        ov = self.runtime()
        core = ov.Core()
        try:
            model = core.read_model(str(model_path))
        except Exception as exc:  # OpenVINO raises RuntimeError/GeneralFailure for rejected ops
            raise ModelError(f"openvino rejects {model_path.name}: {_first_line(exc)}") from None
        config = {"INFERENCE_PRECISION_HINT": self.precision,
                  "INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1,
                  "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": profile}
        try:
            compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise ModelError(f"openvino cannot compile {model_path.name}: "
                             f"{_first_line(exc)}") from None
        # The plugin falls back to f32 where the CPU lacks bf16 instead of failing.
        actual = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        if actual != self.precision:
            raise ConfigError(f"backend {self.name}: this CPU runs {actual}, not {self.precision}")
        return compiled

    def load(self, model_path: Path) -> Runner:
        return OpenVINORunner(self, model_path)


class OpenVINOCPUF32(OpenVINOCPU):
    """OpenVINO CPU plugin, f32 inference precision."""

    name = "openvino-cpu-f32"
    precision = "f32"
    # bench/bench_accuracy.py --truth-twice on the VM the Xeon packages were built on: eight
    # sets of 54 held-out models, 3 to 17 hours after the OpenVINO build (bench/RESULTS.md). At
    # the references' level no truth scored lower than by the anchor, and fourteen of the
    # sixteen higher.
    anchor_caveat = ("on a Xeon VM (cpu family 6, model 167) the speed anchor did not follow "
                     "OpenVINO's models from an evening to the next morning (2026-12-06/07, "
                     "eight sets of held-out models measured twice: 44-96 % of them within "
                     "±10 % by the anchor, 83-98 % at the level of reference models); "
                     "--calibrate-models (Predictor.leveled) comes closer")


class OpenVINOCPUBF16(OpenVINOCPU):
    """OpenVINO CPU plugin, bf16 inference precision (needs AVX512-BF16 or AMX)."""

    name = "openvino-cpu-bf16"
    precision = "bf16"


class OpenVINORunner(Runner):
    def __init__(self, backend: OpenVINOCPU, model_path: Path):
        self.backend, self.model_path = backend, model_path
        self.inputs = list(onnx_inputs(model_path).values())
        self.request = backend.compile(model_path).create_infer_request()
        # Set by node_times, from the runtime model it profiles.

    def run(self) -> None:
        self.request.infer(self.inputs)

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        results = self.request.infer(inputs)
        # An output port can carry several tensor names (OpenVINO folds Identity and the like):
        # answer under each, so a caller asking for the ONNX name finds it.
        return {name: value for out, value in results.items() for name in out.get_names()}

    def node_times(self, runs: int) -> dict[str, float]:
        """Median real time per executed layer over ``runs`` from OpenVINO's perf counters,
        keyed by the layer's friendly name: the ONNX node name, with suffixes such as
        ``/WithoutBiases`` where OpenVINO split a node. Layers fused into another are NOT_RUN
        and left out."""
        compiled = self.backend.compile(self.model_path, profile=True)
        # Names OpenVINO generates (MVN_59) differ between compilations: the runtime model's
        # origins and edges come from this one.
        self.origins, self.inputs_of = runtime_graph(compiled)
        request = compiled.create_infer_request()
        request.infer(self.inputs)  # warm-up
        per_run = []
        for _ in range(runs):
            request.infer(self.inputs)
            per_run.append({layer.node_name: layer.real_time.total_seconds() * 1000
                            for layer in request.get_profiling_info()
                            if layer.status.name == "EXECUTED"})
        return median_node_times(per_run)

    def close(self) -> None:
        self.request = None


def runtime_graph(compiled) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The runtime model: each layer's ``originalLayersNames``, the model's layers fused into it
    (empty for the reorders and converts the plugin inserts), and the layers feeding it."""
    ops = compiled.get_runtime_model().get_ordered_ops()
    origins = {op.get_friendly_name():
               [n for n in op.get_rt_info()["originalLayersNames"].astype(str).split(",") if n]
               for op in ops}
    inputs = {op.get_friendly_name():
              [i.get_source_output().get_node().get_friendly_name() for i in op.inputs()]
              for op in ops}
    return origins, inputs


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
