"""onnxruntime on the CPU execution provider."""
from __future__ import annotations

import bisect
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from edgemeter.backends.base import Backend, Option, Runner, onnx_inputs
from edgemeter.backends.kernel_times import median_node_times
from edgemeter.errors import ModelError

# Option value -> onnxruntime GraphOptimizationLevel member.
OPTIMIZATION_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                       "extended": "ORT_ENABLE_EXTENDED", "layout": "ORT_ENABLE_LAYOUT",
                       "all": "ORT_ENABLE_ALL"}


class OnnxRuntimeCPU(Backend):
    """onnxruntime, CPU execution provider (sequential execution, intra-op threads)."""

    name = "onnxruntime-cpu"
    extra = "onnxruntime"
    requires = "onnxruntime"
    rules = "onnxruntime-cpu"
    options = {"graph_optimization_level": Option("all", tuple(OPTIMIZATION_LEVELS),
                                                  help="graph rewrites onnxruntime applies")}

    def runtime_environment(self) -> dict[str, Any]:
        ort = self.runtime()
        return {"runtime": "onnxruntime", "runtime_version": ort.__version__,
                "precision": "f32", "device": "CPUExecutionProvider"}

    def session(self, model_path: Path, profile_prefix: str | None = None,
                optimized_path: str | None = None):
        ort = self.runtime()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = OPTIMIZATION_LEVELS[self.config["graph_optimization_level"]]
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        if profile_prefix:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        if optimized_path:  # the graph as optimized: which original tensors each node computes
            opts.optimized_model_filepath = optimized_path
            opts.log_severity_level = 3  # not the warning that NCHWc models are machine-specific
        try:
            return ort.InferenceSession(str(model_path), opts,
                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented
            raise ModelError(f"onnxruntime rejects {model_path.name}: {exc}") from None

    def load(self, model_path: Path) -> Runner:
        return OnnxRuntimeRunner(self, model_path)


class OnnxRuntimeRunner(Runner):
    def __init__(self, backend: OnnxRuntimeCPU, model_path: Path):
        self.backend, self.model_path = backend, model_path
        self.inputs = onnx_inputs(model_path)
        self.session = backend.session(model_path)
        # Set by node_times, from the graph its profiled session runs.

    def run(self) -> None:
        self.session.run(None, self.inputs)

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        names = [out.name for out in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, inputs)))

    def node_times(self, runs: int) -> dict[str, float]:
        """Median per-node kernel time over ``runs`` from onnxruntime's profiler, in a separate
        profiled session (the profiler slows node-heavy models, so timed runs never use it).
        Nodes onnxruntime fused are reported under the fused node's name."""
        with tempfile.TemporaryDirectory(prefix="edgemeter-ort-") as tmp:
            optimized = os.path.join(tmp, "optimized.onnx")
            session = self.backend.session(self.model_path, os.path.join(tmp, "profile"),
                                           optimized)
            self.origins, self.inputs_of = optimized_graph(optimized)
            for _ in range(runs + 1):  # the first run warms up and is dropped
                session.run(None, self.inputs)
            events = json.loads(Path(session.end_profiling()).read_text())
        return median_node_times(per_run_node_times(events)[1:])

    def close(self) -> None:
        self.session = None


def per_run_node_times(events: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per-node kernel ms of each ``model_run`` in an onnxruntime profile, in run order."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    per_run: list[dict[str, float]] = [defaultdict(float) for _ in runs]
    starts = [start for start, _ in runs]
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            i = bisect.bisect_right(starts, e["ts"]) - 1
            if i >= 0 and e["ts"] <= runs[i][1]:
                per_run[i][e["name"].removesuffix("_kernel_time")] += e["dur"] / 1000
    return [dict(run) for run in per_run]


def optimized_graph(path: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The graph onnxruntime runs: node -> its name and output tensors (origins; fused nodes
    get new names, ``Gelu``, but write the original output tensors), and node -> the nodes
    feeding it (inputs)."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    producer = {out: node.name for node in graph.node for out in node.output}
    # Layout reorders are onnxruntime's own work, not the model's, whatever tensor they write.
    origins = {node.name: [] if node.op_type in _REORDERS else [node.name, *node.output]
               for node in graph.node}
    inputs = {node.name: [producer[t] for t in node.input if t in producer] for node in graph.node}
    return origins, inputs


_REORDERS = ("ReorderInput", "ReorderOutput")
