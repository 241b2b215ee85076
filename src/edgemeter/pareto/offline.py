"""Offline estimation: search a predicted space, then measure only the predicted front.

An assignment's latency is predicted as the sum of its nodes' predicted latencies on their
backends (in-context, whole-model per-node times) plus a fixed cost per partition beyond the
first (one more session call and its tensor hand-over; the first is in the whole-model times). Its peak memory is predicted from the graph: a baseline process,
plus each backend runtime it loads, plus per partition its weights and its largest node's live
activations. The single-backend assignments are measured first (they anchor both ends of the
front anyway) and calibrate the runtime memory terms and, by default, each backend's latency
scale.

Per-node latencies come from edgemeter predictors, one per backend (:class:`PredictorLatency`,
:func:`find_predictors`), or, for a backend without one, from one profiled run of the whole model
(:func:`profiled_predictor`).
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import onnx

from edgemeter.errors import ConfigError, ModelError
from edgemeter.pareto.archive import ParetoArchive, hypervolume, reference_point
from edgemeter.pareto.partition import Partition, partition, tensor_bytes
from edgemeter.pareto.search import Solution, Study, brute_force, nsga2
from edgemeter.pareto.space import DecisionSpace

if TYPE_CHECKING:
    from edgemeter.graph import Cost
    from edgemeter.predictor.model import Prediction, Predictor

# (prepared ONNX model, backend name) -> ONNX node name -> predicted ms on that backend, in the
# context of the whole model. Per-backend kernel predictors provide it; nodes they leave out
# count as 0 ms.
PredictLatency = Callable[[onnx.ModelProto, str], dict[str, float]]

# Time to call one more session and hand its tensors over, measured on this machine kind
# (MobileNetV2 at 64 px cut into 71 partitions: +0.25 ms per partition).
PARTITION_OVERHEAD_MS = 0.25

# Above this many assignments the predicted space is searched by NSGA-II instead of enumerated.
ENUMERATE_LIMIT = 20_000


@dataclass
class MemoryModel:
    base_kb: float                                 # a measuring process that runs nothing
    runtime_kb: dict[str, float] = field(default_factory=dict)   # each backend runtime loaded


class OfflineEstimator:
    """Predicted (exec_time, max_rss) of any assignment of ``space``; callable as a study's
    evaluate. ``memory`` comes from :func:`calibrate_memory`."""

    def __init__(self, model: onnx.ModelProto, space: DecisionSpace, predict: PredictLatency,
                 memory: MemoryModel, partition_overhead_ms: float = PARTITION_OVERHEAD_MS):
        self.model, self.space, self.memory = model, space, memory
        self.node_ms = {b: predict(model, b) for b in space.backends}
        self.overhead_ms = partition_overhead_ms
        self._bytes = tensor_bytes(model)
        self._weights = {init.name for init in model.graph.initializer}
        self._nodes = {n.name: n for n in model.graph.node}

    def partition_kb(self, part: Partition) -> float:
        """Weights of the partition plus the live activations of its largest node."""
        nodes = [self._nodes[n] for n in part.nodes]
        weights = {t for n in nodes for t in n.input if t in self._weights}
        live = max(sum(self._bytes.get(t, 0) for t in [*n.input, *n.output] if t not in weights)
                   for n in nodes)
        return (sum(self._bytes.get(t, 0) for t in weights) + live) / 1024

    def __call__(self, ident: int) -> Solution:
        assignment = self.space.node_backends(ident)
        parts = partition(self.model, assignment)
        ms = sum(self.node_ms[b].get(node, 0.0) for node, b in assignment.items())
        kb = (self.memory.base_kb + sum(self.memory.runtime_kb[b] for b in {p.backend for p in parts})
              + sum(self.partition_kb(p) for p in parts))
        return Solution(ident, round(ms + self.overhead_ms * (len(parts) - 1), 4), round(kb),
                        partitions=len(parts))


def uniform_ids(space: DecisionSpace) -> dict[str, int]:
    """Backend -> the assignment that puts every key on it."""
    return {b: space.encode([k] * len(space.oplist)) for k, b in enumerate(space.backends)}


def calibrate_memory(estimator: OfflineEstimator, measured: dict[str, Solution]) -> MemoryModel:
    """Runtime memory of each backend from its measured single-backend assignment, less the
    baseline process and the model's own predicted weights and activations."""
    base = baseline_rss_kb()
    runtime = {}
    for backend, solution in measured.items():
        ident = uniform_ids(estimator.space)[backend]
        parts = partition(estimator.model, estimator.space.node_backends(ident))
        graph_kb = sum(estimator.partition_kb(p) for p in parts)
        runtime[backend] = max(solution.max_rss - base - graph_kb, 0.0)
    return MemoryModel(base, runtime)


def calibrate_latency(estimator: OfflineEstimator, measured: dict[str, Solution]) -> None:
    """Scale each backend's node latencies so that its single-backend assignment is predicted
    at its measured time: a predictor's bias on this model (another machine, thread count or
    simply its error) would otherwise tilt the front towards the backend it underestimates."""
    for backend, solution in measured.items():
        node_ms = estimator.node_ms[backend]
        total = sum(node_ms.values())
        if total > 0:
            scale = solution.exec_time / total
            estimator.node_ms[backend] = {n: ms * scale for n, ms in node_ms.items()}


def baseline_rss_kb() -> float:
    """Peak RSS of a fresh process that imports what a measuring process imports before loading
    any runtime."""
    code = ("import numpy, onnx, edgemeter.backends.worker, edgemeter.pareto.executor;"
            "from edgemeter.backends.worker import peak_rss_kb; print(peak_rss_kb())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


@dataclass
class OfflineResult:
    predicted: Study               # every assignment the offline search scored
    measured: Study                # the anchors and the predicted front, measured
    hypervolume_ratio: float       # measured front of the predicted front / predicted front
    # backend -> its single-backend assignment, measured and predicted before calibration
    anchors: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> dict:
        return {"predicted_front": self.predicted.archive.front,
                "predicted": [{"id": s.id, "exec_time": s.exec_time, "max_rss": s.max_rss}
                              for s in self.predicted.solutions.values()
                              if s.id in self.predicted.archive],
                "scored": self.predicted.measured,
                "measured": self.measured.measured,
                "saved": self.measured.space.size - self.measured.measured,
                "hypervolume_ratio": self.hypervolume_ratio,
                "anchors": self.anchors}


def offline_search(model: onnx.ModelProto, measured: Study, predict: PredictLatency,
                   budget: int | None = None, seed: int = 0,
                   calibrate: bool = True) -> OfflineResult:
    """Measure the single-backend anchors into ``measured``, calibrate memory (and, with
    ``calibrate``, each backend's latency scale) on them, search the predicted space
    (enumerated when small, else NSGA-II with ``budget`` predictions), then measure the
    predicted front into ``measured``."""
    space = measured.space
    anchors = {b: measured.evaluate(i) for b, i in uniform_ids(space).items()}
    failed = [f"{b}: {s.error}" for b, s in anchors.items() if not s.feasible]
    if failed:
        raise ModelError(f"cannot calibrate offline mode, a single-backend run failed ({failed[0]})")
    estimator = OfflineEstimator(model, space, predict, MemoryModel(0.0))
    estimator.memory = calibrate_memory(estimator, anchors)
    raw = {b: estimator(i).exec_time for b, i in uniform_ids(space).items()}
    if calibrate:
        calibrate_latency(estimator, anchors)
    predicted = Study(space, estimator)
    if space.size <= ENUMERATE_LIMIT:
        brute_force(predicted)
    else:
        nsga2(predicted, budget or ENUMERATE_LIMIT, seed=seed)
    for ident in predicted.archive.front:
        measured.evaluate(ident)
    return OfflineResult(predicted, measured, hypervolume_ratio(
        [predicted.solutions[i].objectives for i in predicted.archive.front],
        [measured.solutions[i].objectives for i in predicted.archive.front
         if measured.solutions[i].feasible]),
        {b: {"measured_ms": s.exec_time, "predicted_ms": raw[b]} for b, s in anchors.items()})


def hypervolume_ratio(reference_front: list, candidate: list) -> float:
    """HV(front of ``candidate``) / HV(``reference_front``), both against one reference point
    beyond the worst value of either set."""
    candidate_front = ParetoArchive(enumerate(candidate)).points.values()
    ref = reference_point([*reference_front, *candidate])
    base = hypervolume(reference_front, ref)
    return hypervolume(candidate_front, ref) / base if base else 0.0


def profiled_predictor(model_path, protocol=None, threads: int = 1) -> PredictLatency:
    """Per-node latencies from one profiled run of the whole model per backend (onnxruntime's
    profiler, OpenVINO's perf counters): B measurements predict all B^K assignments. Runtime
    layer names map to the ONNX node whose name is their longest prefix (OpenVINO appends
    suffixes such as ``/WithoutBiases``); fused nodes count under the node that absorbed them."""
    from edgemeter.backends import measure

    def predict(model: onnx.ModelProto, backend: str) -> dict[str, float]:
        m = measure(model_path, backend, {"threads": threads}, protocol, profile=True)
        if not m.ok or not m.node_times_ms:
            raise ModelError(f"cannot profile {model_path} on {backend}: "
                             f"{m.error or 'no per-node times'}")
        names = sorted((n.name for n in model.graph.node), key=len, reverse=True)
        out: dict[str, float] = {}
        for layer, ms in m.node_times_ms.items():
            node = next((n for n in names if layer.startswith(n)), None)
            if node is not None:
                out[node] = out.get(node, 0.0) + ms
        # Scale to the unprofiled median: the profiler adds time per node.
        scale = m.median_ms / sum(out.values()) if out else 1.0
        return {node: ms * scale for node, ms in out.items()}

    return predict


# -- per-node latencies from edgemeter predictors -------------------------------------------------

PROFILED = "profiled"     # --predictor BACKEND=profiled: that backend's one profiled run


def node_latencies(predictor: Predictor, model: onnx.ModelProto
                   ) -> tuple[dict[str, float], Prediction]:
    """ONNX node name -> ms of ``model`` predicted whole by ``predictor``, and that prediction.

    Each kernel's ms (model-term scale applied) plus an equal share of the model term's
    overhead is split over its member nodes by FLOPs: a fused activation or bias that an
    assignment moves to another backend takes away only the little work it did, while a kernel
    of equal-work nodes (Add + Relu) splits evenly instead of making one of them free. Kernels
    without FLOPs split by bytes moved, else evenly. So the single-backend assignment sums to
    the predictor's whole-model latency. Nodes the importer folds into constants get none."""
    graph, kernels = predictor.detect(model)
    (prediction,) = predictor.predict_detected([(graph, kernels)])
    overhead = prediction.overhead_ms / len(kernels) if kernels else 0.0
    cost = {node.name: node.cost for node in graph.nodes}
    out: dict[str, float] = {}
    for kernel in prediction.kernels:
        ms = kernel["latency_ms"] + overhead
        for node, share in zip(kernel["nodes"], _shares([cost[n] for n in kernel["nodes"]])):
            out[node] = out.get(node, 0.0) + ms * share
    return out, prediction


def _shares(costs: Sequence[Cost | None]) -> list[float]:
    for work in ([c.flops if c else 0 for c in costs],
                 [c.bytes_read + c.bytes_written if c else 0 for c in costs]):
        total = sum(work)
        if total > 0:
            return [w / total for w in work]
    return [1 / len(costs)] * len(costs)


class PredictorLatency:
    """A :data:`PredictLatency` backed by edgemeter predictors, one per backend
    (:func:`node_latencies`); a backend without one uses ``fallback`` (typically
    :func:`profiled_predictor`). ``predictions`` keeps each backend's whole-model prediction
    (coverage, warnings) once asked."""

    def __init__(self, predictors: Mapping[str, Predictor],
                 fallback: PredictLatency | None = None):
        self.predictors = dict(predictors)
        self.fallback = fallback
        self.predictions: dict[str, Prediction] = {}

    def __call__(self, model: onnx.ModelProto, backend: str) -> dict[str, float]:
        predictor = self.predictors.get(backend)
        if predictor is None:
            if self.fallback is None:
                raise ConfigError(f"no latency predictor for backend {backend}")
            return self.fallback(model, backend)
        times, self.predictions[backend] = node_latencies(predictor, model)
        return times

    def source(self, backend: str) -> str:
        """What predicts ``backend``: a predictor's label, or ``profiled``."""
        predictor = self.predictors.get(backend)
        return predictor.label if predictor is not None else PROFILED

    def describe(self, backends: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Per backend: its source and, for a predictor, its coverage of this model and its
        warnings (kernels left to the fallback, another build machine)."""
        out = {}
        for backend in backends:
            prediction = self.predictions.get(backend)
            out[backend] = {"source": self.source(backend), **(
                {"coverage": prediction.coverage, "warnings": prediction.warnings}
                if prediction else {})}
        return out


def find_predictors(backends: Sequence[str], threads: int = 1,
                    chosen: Mapping[str, str] | None = None,
                    options: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> tuple[dict[str, Predictor], list[str]]:
    """One edgemeter predictor per backend, and warning lines. ``chosen`` maps a backend to a
    predictor name or package path (or ``profiled``); any other backend takes the installed
    predictor whose package backend matches and whose recorded settings (threads, options) are
    this search's, else one that matches the backend alone (warned). A backend left without
    one is warned about: :class:`PredictorLatency` profiles it instead."""
    from edgemeter.backends import get_backend
    from edgemeter.predictor.model import load_predictor

    chosen = dict(chosen or {})
    stray = sorted(set(chosen) - set(backends))
    if stray:
        raise ConfigError(f"--predictor names backend {stray[0]}, which is not searched "
                          f"(backends: {', '.join(backends)})")
    found, warnings = {}, []
    for backend in backends:
        if chosen.get(backend) == PROFILED:
            continue
        wanted = get_backend(backend, threads=threads, **(options or {}).get(backend, {})
                             ).settings()
        if backend in chosen:
            predictor = load_predictor(chosen[backend])
        else:
            predictor = _installed_predictor(backend, wanted)
            if predictor is None:
                warnings.append(f"no predictor installed for {backend}: its latencies come "
                                "from one profiled run of the model instead")
                continue
        found[backend] = predictor
        settings = predictor.package.extra.get("backend_settings")
        if predictor.backend != backend:
            warnings.append(f"{predictor.label} predicts {predictor.backend}, used here for "
                            f"{backend}")
        elif settings is not None and settings != wanted:
            warnings.append(f"{predictor.label} was built with {_settings(settings)}, this "
                            f"search runs {backend} with {_settings(wanted)}")
    return found, warnings


def _installed_predictor(backend: str, wanted: dict[str, Any]) -> Predictor | None:
    """The installed predictor for ``backend`` built with ``wanted`` settings, else one built
    with unrecorded or other settings; registry order (by name, newest first)."""
    from edgemeter.predictor.model import Predictor
    from edgemeter.predictor.package import read_manifest
    from edgemeter.predictor.registry import list_predictors

    candidates = [p for p in list_predictors() if p.backend == backend and p.problem is None]
    if not candidates:
        return None
    exact = [p for p in candidates
             if read_manifest(p.path)["extra"].get("backend_settings") == wanted]
    return Predictor.from_package((exact or candidates)[0].path)


def _settings(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())
