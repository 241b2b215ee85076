"""Heterogeneous execution: one model, its partitions on different backends, chained.

A *plan* (JSON) lists the partition models, their backend and the tensors they exchange.
:class:`PartitionedBackend` is an ordinary :class:`~edgemeter.backends.Backend` whose "model" is a
plan, so the measurement protocol runs it unchanged: fresh processes, rounds, spread, peak RSS, and
a runtime that rejects or crashes on a partition gives a failed measurement with its reason. On
load the chain checks its outputs against a single-backend reference, so a wrong result is an
infeasible assignment, not a fast one.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edgemeter.backends import Protocol, backend_class, measure, register_backend
from edgemeter.backends.base import Backend, Runner, onnx_inputs
from edgemeter.errors import EdgemeterError, ModelError

PLAN_FORMAT = "edgemeter-plan/1"

# Largest error allowed against the reference, relative to the reference's largest magnitude,
# by the least precise backend of the chain. bf16 keeps 8 mantissa bits, and its rounding error
# grows with depth; a mis-wired chain is off by the order of the values themselves.
TOLERANCE = {"f32": 1e-3, "f16": 1e-2, "bf16": 5e-2}


@register_backend
class PartitionedBackend(Backend):
    """Several backends chained over the partitions of one model (a plan file)."""

    name = "partitioned"

    def runtime_environment(self) -> dict[str, Any]:
        from edgemeter import __version__
        return {"runtime": "edgemeter-partitioned", "runtime_version": __version__,
                "precision": "mixed"}

    def load(self, model_path: Path) -> Runner:
        return PartitionedRunner(json.loads(Path(model_path).read_text()), self.threads)


class PartitionedRunner(Runner):
    def __init__(self, plan: dict[str, Any], threads: int):
        if plan.get("format") != PLAN_FORMAT:
            raise ModelError(f"not an edgemeter plan (format {plan.get('format')!r})")
        self.parts = plan["partitions"]
        self.outputs = plan["outputs"]
        self.inputs = onnx_inputs(Path(plan["model"]))
        backends: dict[str, Backend] = {}
        self.runners = []
        for part in self.parts:
            name = part["backend"]
            if name not in backends:
                backends[name] = backend_class(name)(threads=threads, **plan["options"][name])
            self.runners.append(backends[name].load(Path(part["model"])))
        # Drop each intermediate tensor after its last reader: a runtime would not keep it.
        last_use = {t: k for k, part in enumerate(self.parts) for t in part["inputs"]}
        self.release = [[t for t, k in last_use.items() if k == i and t not in self.outputs]
                        for i in range(len(self.parts))]
        if plan.get("reference"):
            self.check(plan["reference"], plan["tolerance"])

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        values = dict(inputs)
        for part, runner, release in zip(self.parts, self.runners, self.release):
            values.update(runner.infer({t: values[t] for t in part["inputs"]}))
            for t in release:
                del values[t]
        return {t: values[t] for t in self.outputs}

    def run(self) -> None:
        self.infer(self.inputs)

    def check(self, reference_path: str, tolerance: float) -> None:
        """Raise ModelError when an output is further from the reference than ``tolerance``."""
        import numpy as np

        reference = np.load(reference_path)
        for name, value in self.infer(self.inputs).items():
            error = relative_error(value, reference[name])
            if not error <= tolerance:   # NaN fails too
                raise ModelError(f"output {name!r} differs from the reference by {error:.3g} "
                                 f"(tolerance {tolerance:g})")

    def close(self) -> None:
        for runner in self.runners:
            runner.close()


def relative_error(value, reference) -> float:
    """Largest absolute difference over the reference's largest magnitude."""
    import numpy as np

    value, reference = np.asarray(value, np.float64), np.asarray(reference, np.float64)
    if value.shape != reference.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(reference), initial=0.0)), 1e-12)
    return float(np.max(np.abs(value - reference), initial=0.0)) / scale


class PartitionedEvaluator:
    """Measures assignments of a :class:`~edgemeter.pareto.space.DecisionSpace` on the real
    backends: partition, write the plan, run the protocol on it. Callable as a study's evaluate.

    ``workdir`` keeps the partition models (shared between assignments that cut alike), the plans
    and the reference outputs, computed once with ``reference_backend`` (default: the first f32
    backend of the space, else onnxruntime-cpu) on the whole model."""

    def __init__(self, model_path: str | Path, space, workdir: str | Path, *,
                 protocol: Protocol | None = None, threads: int = 1,
                 options: dict[str, dict[str, Any]] | None = None,
                 reference_backend: str | None = None):
        from edgemeter.pareto.partition import prepare_model

        self.model_path = Path(model_path).resolve()
        self.space = space
        self.model = prepare_model(self.model_path)
        # Partition files are named by content, so a workdir is safely shared between models
        # and between runs.
        self._digest = hashlib.sha1(self.model.SerializeToString()).hexdigest()
        self.workdir = Path(workdir)
        (self.workdir / "parts").mkdir(parents=True, exist_ok=True)
        self.protocol = protocol or Protocol()
        self.threads = threads
        self.options = {b: dict((options or {}).get(b, {})) for b in space.backends}
        self.precision = {b: _precision(b, self.options[b]) for b in space.backends}
        self.reference = self._reference(reference_backend)

    def _reference(self, backend: str | None) -> Path:
        import numpy as np

        backend = backend or next((b for b in self.space.backends if self.precision[b] == "f32"),
                                  "onnxruntime-cpu")
        path = self.workdir / f"reference-{backend}.npz"
        if not path.exists():
            runner = backend_class(backend)(threads=self.threads,
                                            **self.options.get(backend, {})).load(self.model_path)
            try:
                np.savez(path, **runner.infer(onnx_inputs(self.model_path)))
            finally:
                runner.close()
        return path

    def plan(self, ident: int) -> dict[str, Any]:
        """The plan of assignment ``ident``, its partition models written to the workdir."""
        import onnx

        from edgemeter.pareto.partition import extract, partition

        parts = partition(self.model, self.space.node_backends(ident))
        entries = []
        for part in parts:
            key = hashlib.sha1("\n".join([self._digest, part.backend, *part.nodes]).encode()
                               ).hexdigest()[:16]
            path = self.workdir / "parts" / f"{key}.onnx"
            if not path.exists():
                onnx.save(extract(self.model, part), str(path))
            entries.append({"backend": part.backend, "model": str(path.resolve()),
                            "inputs": part.inputs, "outputs": part.outputs})
        used = sorted({p.backend for p in parts})
        loosest = max(TOLERANCE.get(self.precision[b], max(TOLERANCE.values())) for b in used)
        return {"format": PLAN_FORMAT, "model": str(self.model_path),
                "outputs": [o.name for o in self.model.graph.output],
                "options": {b: self.options[b] for b in used}, "partitions": entries,
                "reference": str(self.reference.resolve()), "tolerance": loosest}

    def __call__(self, ident: int):
        from edgemeter.pareto.search import Solution

        try:
            plan = self.plan(ident)
        except EdgemeterError as exc:        # a cut the graph does not allow
            return Solution(ident, error=str(exc))
        path = self.workdir / f"plan-{ident}.json"
        path.write_text(json.dumps(plan, indent=1))
        m = measure(path, PartitionedBackend.name, {"threads": self.threads}, self.protocol)
        path.unlink()
        n_parts = len(plan["partitions"])
        if not m.ok:
            return Solution(ident, error=m.error, partitions=n_parts)
        return Solution(ident, round(m.median_ms, 4), m.max_rss_kb, partitions=n_parts)


def _precision(backend: str, options: dict[str, Any]) -> str:
    return backend_class(backend)(**options).runtime_environment()["precision"]
