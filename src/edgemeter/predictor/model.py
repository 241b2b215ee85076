"""Model latency prediction: detect a model's kernels, predict each, add them up.

A predictor package holds one regressor per regressor group
(:func:`edgemeter.kernels.groups.regressor_group`) and, in ``package.extra``, two fitted terms:

``model_term``  ``{"scale": s, "per_node_ms": c, "intercept_ms": e, "node_count": "kernels",
    "group_scale": {group: s_g, ...}}``::

        model_ms = Σ_kernels s_g(kernel) · kernel prediction + c · N + e

    ``s_g`` is the kernel's regressor group's entry of ``group_scale`` (optional), else ``s``.
    ``N`` counts the kernels detection finds (the nodes a runtime executes after fusion), or the
    graph's nodes with ``"node_count": "nodes"``. Kernel regressors learn in-context kernel
    times, which leave out the runtime's scheduling between nodes (a few µs each); ``c`` puts it
    back, ``s`` and ``e`` correct what is left, and a group's own scale corrects a bias of that
    group's kernel times (the profiler's share of a small depthwise kernel, say). A package
    without the term uses ``s=1, c=e=0``. Other keys (the builder records how many models it was
    fitted on) are ignored.
``fallback``    ``{"ms_per_gflop": a, "ms_per_mb": b, "ms_per_kernel": k}``: kernels whose group
    has no regressor are estimated as ``a · GFLOPs + b · MB + k`` (MB = 10⁶ bytes read and
    written) and flagged, never counted as zero.

:mod:`edgemeter.builder.train` fits both when it builds a package.

The batch API (:meth:`Predictor.predict_batch`, :meth:`Predictor.predict_kernels`) stacks the
kernels of many models into one matrix per regressor group, so each regressor runs once per
batch: that is what makes thousands of predictions per second possible for NAS.
"""
from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgemeter.errors import ConfigError, ModelError
from edgemeter.graph import Graph
from edgemeter.kernels.detect import Kernel, detect
from edgemeter.kernels.groups import regressor_group
from edgemeter.predictor.batch import check_engine
from edgemeter.predictor.package import PredictorPackage, load_package

if TYPE_CHECKING:  # the backends package is imported only when a prediction needs it
    from edgemeter.backends.anchor import Sensitivity

InputShape = Sequence[int] | Mapping[str, Sequence[int]] | str | Sequence[str] | None


@dataclass
class Prediction:
    """A model's predicted latency with its breakdown.

    ``kernels``: ``{"type", "nodes", "latency_ms", "covered"}`` in graph order, where
    ``latency_ms`` already carries the model term's scale; ``overhead_ms`` is the per-node and
    constant part, so ``latency_ms == sum of kernel latencies + overhead_ms``. ``coverage``: the
    share (0-1) of kernels and of FLOPs predicted by a trained regressor rather than the fallback.
    """

    latency_ms: float
    kernels: list[dict[str, Any]]
    coverage: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    overhead_ms: float = 0.0
    predictor: str = ""
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelTerm:
    """``model_ms = Σ scale_g · kernel ms + per_node_ms · N + intercept_ms``; ``scale_g`` is
    the kernel group's ``group_scale``, else ``scale`` (N: see :meth:`count`)."""

    scale: float = 1.0
    per_node_ms: float = 0.0
    intercept_ms: float = 0.0
    node_count: str = "kernels"
    group_scale: Mapping[str, float] = field(default_factory=dict)

    NODE_COUNTS: ClassVar[tuple[str, ...]] = ("kernels", "nodes")

    def count(self, kernels: Sequence[Kernel]) -> int:
        """N of one model: its kernels, or every node of its graph (each is in one kernel)."""
        return len(kernels) if self.node_count == "kernels" else sum(len(k.nodes) for k in kernels)

    def scale_of(self, group: str) -> float:
        return self.group_scale.get(group, self.scale)

    def overhead(self, count: np.ndarray | int) -> np.ndarray | float:
        return self.per_node_ms * count + self.intercept_ms

    def times(self, factor: float) -> ModelTerm:
        """Every term ``factor`` times larger: the same predictor at another machine speed."""
        return replace(self, scale=self.scale * factor, per_node_ms=self.per_node_ms * factor,
                       intercept_ms=self.intercept_ms * factor,
                       group_scale={g: v * factor for g, v in self.group_scale.items()})


@dataclass(frozen=True)
class Fallback:
    """Latency of a kernel no regressor covers: ``a · GFLOPs + b · MB + k``."""

    ms_per_gflop: float
    ms_per_mb: float
    ms_per_kernel: float

    def predict(self, flops: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
        return self.ms_per_gflop * flops / 1e9 + self.ms_per_mb * nbytes / 1e6 + self.ms_per_kernel


def _terms(cls: type, data: Any, what: str, package: PredictorPackage) -> Any:
    """Build ``cls`` from ``package.extra[what]``: its numeric fields as finite numbers (all
    required), ``node_count`` one of the known counts, ``group_scale`` group -> finite number,
    other keys ignored."""
    numbers = [f.name for f in fields(cls) if f.type == "float"]
    if not isinstance(data, Mapping) or not all(
            isinstance(data.get(k), (int, float)) and not isinstance(data.get(k), bool)
            and np.isfinite(data[k]) for k in numbers):
        raise ModelError(f"{package.label}: extra.{what} must map {', '.join(numbers)} to "
                         f"numbers, found {data!r}")
    values = {k: float(data[k]) for k in numbers}
    if "node_count" in data and cls is ModelTerm:
        if data["node_count"] not in ModelTerm.NODE_COUNTS:
            raise ModelError(f"{package.label}: extra.{what}.node_count must be one of "
                             f"{', '.join(ModelTerm.NODE_COUNTS)}, found {data['node_count']!r}")
        values["node_count"] = data["node_count"]
    if "group_scale" in data and cls is ModelTerm:
        scales = data["group_scale"]
        if not isinstance(scales, Mapping) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                for v in scales.values()):
            raise ModelError(f"{package.label}: extra.{what}.group_scale must map regressor "
                             f"groups to numbers, found {scales!r}")
        values["group_scale"] = {str(g): float(v) for g, v in scales.items()}
    return cls(**values)


# -- the predictor ------------------------------------------------------------------------------

def _input_shapes(spec: InputShape) -> dict[str, list[int]] | None:
    """``[1, 3, 224, 224]``, ``{"input": [...]}``, ``"1x3x224x224"`` or ``["input=1x3x..."]``."""
    from edgemeter.importers import parse_input_shapes

    if spec is None:
        return None
    if isinstance(spec, str):
        return parse_input_shapes([spec])
    if isinstance(spec, Mapping):
        return {str(k): [int(d) for d in v] for k, v in spec.items()}
    items = list(spec)
    if all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in items):
        return {"": [int(d) for d in items]}
    if all(isinstance(s, str) for s in items):
        return parse_input_shapes(items)
    raise ConfigError(f"bad input_shape {spec!r}: give a list of ints, a name -> shape mapping "
                      "or 'NAME=DxDx...' strings")


def positive(value: Any, what: str) -> float:
    """``value`` as a float where it is a finite number above 0, else a ConfigError naming
    ``what``: a zero or negative speed or level would scale every prediction to nonsense."""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and np.isfinite(value)
                                       and value > 0):
        raise ConfigError(f"{what} must be a positive number, got {value!r}")
    return float(value)


class Predictor:
    """Predicts model latency with one predictor package (see the module docstring)."""

    def __init__(self, package: PredictorPackage, engine: str = "numpy"):
        self.package = package
        self.engine = check_engine(engine)
        if engine != "numpy":  # compiled now: a missing runtime fails here, not mid-loop
            package.batch(engine)
        self.rules = package.rules()
        extra = package.extra
        self.model_term = (_terms(ModelTerm, extra["model_term"], "model_term", package)
                           if "model_term" in extra else ModelTerm())
        self._fallback = (_terms(Fallback, extra["fallback"], "fallback", package)
                          if "fallback" in extra else None)
        self._group_of: dict[str, str] = {}
        # The machine speed now over the build's, as the anchor's times (:meth:`calibrated`).
        self.speed_ratio = 1.0
        # Every prediction's factor, as reference models measured now set it (:meth:`leveled`),
        # and that measurement (None for a level set by hand): its spread says how far to trust it.
        self.level = 1.0
        self.reference_level: dict[str, Any] | None = None

    @classmethod
    def from_package(cls, package: PredictorPackage | str | Path,
                     engine: str = "numpy") -> Predictor:
        """From a loaded package, or a package folder / .zip path (whose regressors are read as
        models first need them: :func:`~edgemeter.predictor.package.load_package`)."""
        if not isinstance(package, PredictorPackage):
            package = load_package(package, lazy=True)
        return cls(package, engine)

    @property
    def name(self) -> str:
        return self.package.name

    @property
    def version(self) -> str:
        return self.package.version

    @property
    def backend(self) -> str:
        return self.package.backend

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def anchor_ms(self) -> float | None:
        """The speed anchor's time at the machine speed this predictor's milliseconds are at
        (:mod:`edgemeter.backends.anchor`); None for a package built without the anchor, or
        with another version of it (whose times do not compare with today's anchor)."""
        value = self._anchor.get("anchor_ms")
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    @cached_property
    def sensitivity(self) -> Sensitivity:
        """How much of the anchor's move a model shares, by its FLOPs; slope 1 for every model
        in a package built before the builder fitted it."""
        from edgemeter.backends.anchor import Sensitivity

        data = self._anchor.get("sensitivity")
        return (Sensitivity() if data is None
                else _terms(Sensitivity, data, "anchor.sensitivity", self.package))

    @property
    def _anchor(self) -> Mapping[str, Any]:
        from edgemeter.backends.anchor import ANCHOR_VERSION

        anchor = self.package.extra.get("anchor")
        ok = isinstance(anchor, Mapping) and anchor.get("version") == ANCHOR_VERSION
        return anchor if ok else {}

    def at_own_speed(self, latency_ms: float, anchor_ms: float | None, flops: float,
                     rounds: tuple[Sequence[float], Sequence[float]] | None = None) -> float:
        """A model of ``flops`` measured ``latency_ms`` while the anchor took ``anchor_ms``, at
        this predictor's machine speed (as measured when the build ran): what its prediction
        is to be compared with. ``rounds``: the measurement's round medians and the anchor's
        beside them, for a median put at speed round by round
        (:func:`~edgemeter.backends.anchor.measured_at_speed`)."""
        from edgemeter.backends.anchor import measured_at_speed

        return measured_at_speed(latency_ms, anchor_ms, self.anchor_ms,
                                 self.sensitivity.slope(flops), rounds)

    def calibrated(self, anchor_ms: float | None = None) -> Predictor:
        """This predictor at the machine speed where the anchor takes ``anchor_ms``; None times
        the anchor now on the predictor's backend, with the settings it was built with (the
        runtime must be installed). Each prediction scales by the ratio of the anchor times to
        the power of the model's slope (:attr:`sensitivity`). Where the anchor was measured not
        to follow the backend's models, :attr:`anchor_caveat` says so, and where it ran far
        slower than at the build, :attr:`speed_caveat`."""
        if self.anchor_ms is None:
            raise ConfigError(f"{self.package.label} was built without the speed anchor (or "
                              "with another version of it) and cannot be calibrated")
        calibrated = Predictor(self.package, self.engine)
        calibrated.speed_ratio = (self.anchor_now() if anchor_ms is None else positive(
            anchor_ms, "an anchor time")) / self.anchor_ms
        return calibrated

    def leveled(self, level: float | None = None, **options: Any) -> Predictor:
        """This predictor with every prediction ``level`` times larger; None measures the
        level now: reference zoo models run on this predictor's backend, their median measured
        over predicted latency (:func:`~edgemeter.predictor.calibration.measure_level`, with
        ``options``). The speed anchor is small enough to run from the core's caches and misses
        what the host's neighbours do to models that do not; reference models feel it as other
        models do. A measured level is kept with its measurement as ``reference_level`` (the
        references' ``spread`` and ``expected_within_10`` among it). Apply it last:
        :meth:`calibrated` starts from the package again."""
        found = None
        if level is None:
            from edgemeter.predictor.calibration import measure_level

            found = measure_level(self, **options)
            level = found["median"]
        leveled = copy.copy(self)
        leveled.level, leveled.reference_level = positive(level, "a level"), found
        return leveled

    @property
    def anchor_caveat(self) -> str | None:
        """What was measured where the speed anchor did not follow this predictor's backend's
        models (the backend's ``anchor_caveat``), else None: there :meth:`leveled` comes
        closer than :meth:`calibrated`."""
        from edgemeter.backends import backend_class

        return backend_class(self.backend).anchor_caveat

    @property
    def speed_caveat(self) -> str | None:
        """Where :meth:`calibrated` found the anchor slower than
        :data:`~edgemeter.predictor.calibration.TRUSTED_ANCHOR_RATIO` times its build time, what
        was measured where it ran so slow, else None."""
        from edgemeter.predictor.calibration import SLOW_ANCHOR_EVIDENCE, TRUSTED_ANCHOR_RATIO

        if self.speed_ratio <= TRUSTED_ANCHOR_RATIO:
            return None
        return (f"the speed anchor ran {self.speed_ratio:.2f} times its time at the build: "
                f"{SLOW_ANCHOR_EVIDENCE}")

    def anchor_now(self) -> float:
        """The speed anchor's time now on this predictor's backend, with the settings it was
        built with (the runtime must be installed)."""
        from edgemeter.backends.anchor import measure_anchor

        return measure_anchor(self.backend, self.package.extra.get("backend_settings"))

    def _speed_factor(self, flops: np.ndarray | float) -> np.ndarray | float:
        """What a model of ``flops`` is multiplied by at the calibrated speed."""
        slope = np.vectorize(self.sensitivity.slope, otypes=[float])(flops)
        return self.speed_ratio ** slope

    def __repr__(self) -> str:
        return f"Predictor({self.label!r}, backend={self.backend!r})"

    def fallback(self, kernel_types: Iterable[str]) -> Fallback:
        """The package's fallback rates; a package without them cannot predict ``kernel_types``
        (never guessed as zero)."""
        if self._fallback is None:
            missing = ", ".join(sorted(set(kernel_types)))
            raise ModelError(f"{self.package.label} has no regressor for {missing} "
                             "and no fallback rates (extra.fallback) to estimate them")
        return self._fallback

    @cached_property
    def machine_warnings(self) -> list[str]:
        """How this machine differs from the one the predictor was measured on."""
        diffs = self.package.machine_differences()
        return [f"predictor {self.label} was built on another machine, predictions may be off: "
                f"{'; '.join(diffs)}"] if diffs else []

    def group(self, kernel_type: str) -> str:
        group = self._group_of.get(kernel_type)
        if group is None:
            group = self._group_of[kernel_type] = regressor_group(kernel_type)
        return group

    # -- graphs and kernels ------------------------------------------------------------------
    def detect(self, model: Any, input_shape: InputShape = None) -> tuple[Graph, list[Kernel]]:
        """Import ``model`` (anything :func:`edgemeter.importers.load_graph` reads) and split it
        into the kernels this predictor's runtime executes."""
        from edgemeter.importers import load_graph

        graph = load_graph(model, _input_shapes(input_shape))
        return graph, detect(graph, self.rules)

    def kernel_latencies(self, kernels: Sequence[Kernel]) -> tuple[np.ndarray, np.ndarray]:
        """Raw predicted ms of each kernel (before the model term's scale) and whether a trained
        regressor covered it, all regressors in one merged pass."""
        ms, covered, _ = self._kernel_times(kernels)
        return ms, covered

    def kernel_parts(self, kernels: Sequence[Kernel], rows: KernelRows | None = None
                     ) -> np.ndarray:
        """Each kernel's part of its model's predicted latency (ms): the regressor's (or the
        fallback's) time with its group's model-term scale, at the calibrated speed of a model
        of the kernel's ``MODEL_FLOPS``. A model's prediction is the sum of its kernels' parts
        plus the overhead; ``rows``: the kernels' rows, if already read."""
        ms, _, scale = self._kernel_times(kernels, rows)
        parts = ms * scale
        if self.speed_ratio == 1.0:
            return parts
        return parts * self._speed_factor(
            np.array([k.features.get("MODEL_FLOPS", 0.0) for k in kernels], dtype=np.float64))

    def _kernel_times(self, kernels: Sequence[Kernel], rows: KernelRows | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`kernel_latencies` and each kernel's model-term scale (set per group here,
        where the kernels are already grouped); ``rows``: the kernels' rows, if already read."""
        rows = rows or KernelRows(kernels, self.group)
        ms = np.empty(len(kernels))
        covered = np.zeros(len(kernels), dtype=bool)
        scale = np.empty(len(kernels))
        scale_of = self.model_term.scale_of
        regressors = self.package.regressors
        uncovered: list[int] = []
        matrices: dict[str, np.ndarray] = {}
        slots: dict[str, list[int]] = {}
        for group, index in rows.by_group.items():
            scale[index] = scale_of(group)
            regressor = regressors.get(group)
            if regressor is None:
                uncovered.extend(index)
                continue
            slots[group], matrices[group] = rows.distinct(group, regressor.feature_names_)
        # Every group's trees run in one pass per call (one merged walk, or one session run).
        for group, predicted in self.package.batch(self.engine).predict(matrices).items():
            ms[rows.by_group[group]] = predicted[slots[group]]
            covered[rows.by_group[group]] = True
        if uncovered:
            flops = np.array([kernels[i].features.get("FLOPS", 0.0) for i in uncovered], float)
            nbytes = np.array([kernels[i].features.get("BYTES", 0.0) for i in uncovered], float)
            fallback = self.fallback(kernels[i].type for i in uncovered)
            ms[uncovered] = fallback.predict(flops, nbytes)
        return ms, covered, scale

    def predict_kernels(self, kernel_lists: Sequence[Sequence[Kernel]]) -> np.ndarray:
        """Model latencies (ms) of many models given as their detected kernels: the NAS fast
        path, with every regressor called once for the whole batch."""
        latencies = self._latencies(kernel_lists)
        return latencies if self.level == 1.0 else latencies * self.level

    def _latencies(self, kernel_lists: Sequence[Sequence[Kernel]],
                   rows: KernelRows | None = None) -> np.ndarray:
        flat = [k for kernels in kernel_lists for k in kernels]
        owner = np.repeat(np.arange(len(kernel_lists)), [len(ks) for ks in kernel_lists])
        ms, _, scale = self._kernel_times(flat, rows)
        sums = np.bincount(owner, weights=ms * scale, minlength=len(kernel_lists))
        counts = np.array([self.model_term.count(ks) for ks in kernel_lists], dtype=np.float64)
        latency = sums + self.model_term.overhead(counts)
        if self.speed_ratio == 1.0:
            return latency
        flops = np.bincount(owner, weights=[k.features.get("FLOPS", 0.0) for k in flat],
                            minlength=len(kernel_lists))
        return latency * self._speed_factor(flops)

    # -- models ------------------------------------------------------------------------------
    def predict(self, model: Any, input_shape: InputShape = None) -> Prediction:
        """Predict one model: an ONNX path or ModelProto, a torch ``nn.Module`` (give
        ``input_shape``), a .tflite path, an edgemeter or nn-Meter IR (dict or .json path), or
        a :class:`~edgemeter.graph.Graph`."""
        return self.predict_batch([model], input_shape)[0]

    def predict_batch(self, models: Sequence[Any], input_shape: InputShape = None
                      ) -> list[Prediction]:
        """Predict several models at once (same results as :meth:`predict` one by one); each
        regressor runs once for all their kernels."""
        return self.predict_detected([self.detect(model, input_shape) for model in models],
                                     models)

    def predict_detected(self, detected: Sequence[tuple[Graph, list[Kernel]]],
                         models: Sequence[Any] | None = None) -> list[Prediction]:
        """Predictions for graphs already split into kernels (:meth:`detect`); ``models`` (what
        was imported: paths are kept as the ``model`` label) default to the graphs' names."""
        models = models if models is not None else [graph.name for graph, _ in detected]
        return [self._prediction(model, graph, kernels, self.level * ms, self.level * overhead,
                                 covered)
                for model, (graph, kernels), (ms, overhead, covered)
                in zip(models, detected, self._parts(detected))]

    def _parts(self, detected: Sequence[tuple[Graph, list[Kernel]]],
               rows: KernelRows | None = None) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Per model: its kernels' ms (the model term's scale and the calibrated speed
        applied), the per-node and constant overhead (at that speed too), and which kernels a
        trained regressor covered."""
        flat = [k for _, kernels in detected for k in kernels]
        ms, covered, scale = self._kernel_times(flat, rows)
        scaled = ms * scale
        term = self.model_term
        parts, start = [], 0
        for _, kernels in detected:
            end = start + len(kernels)
            kernel_ms, overhead = scaled[start:end], term.overhead(term.count(kernels))
            if self.speed_ratio != 1.0:
                factor = float(self._speed_factor(sum(k.features.get("FLOPS", 0.0)
                                                      for k in kernels)))
                kernel_ms, overhead = kernel_ms * factor, overhead * factor
            parts.append((kernel_ms, float(overhead), covered[start:end]))
            start = end
        return parts

    def _prediction(self, model: Any, graph: Graph, kernels: list[Kernel], scaled: np.ndarray,
                    overhead: float, covered: np.ndarray) -> Prediction:
        flops = np.array([k.features.get("FLOPS", 0.0) for k in kernels], dtype=np.float64)
        n = len(kernels)
        by_kernels = float(covered.sum() / n) if n else 1.0
        total_flops = flops.sum()
        coverage = {
            "kernels": by_kernels,
            "flops": float(flops[covered].sum() / total_flops) if total_flops > 0 else by_kernels,
        }
        return Prediction(
            latency_ms=float(scaled.sum() + overhead),
            # tolist(): Python floats and bools at once, not one numpy scalar per kernel.
            kernels=[{"type": k.type, "nodes": list(k.nodes), "latency_ms": t, "covered": c}
                     for k, t, c in zip(kernels, scaled.tolist(), covered.tolist())],
            coverage=coverage,
            warnings=self._warnings(graph, kernels, scaled, covered),
            overhead_ms=float(overhead), predictor=self.label,
            model=str(model) if isinstance(model, (str, Path)) else graph.name)

    def _warnings(self, graph: Graph, kernels: list[Kernel], ms: np.ndarray,
                  covered: np.ndarray) -> list[str]:
        warnings = list(graph.warnings)
        if not covered.all():
            types = Counter(k.type for k, c in zip(kernels, covered) if not c)
            listed = ", ".join(f"{t} ×{n}" if n > 1 else t for t, n in sorted(types.items()))
            share = ms[~covered].sum() / ms.sum() if ms.sum() > 0 else 0.0
            warnings.append(f"{int((~covered).sum())} of {len(kernels)} kernels have no trained "
                            f"regressor in predictor {self.label} and were estimated from their "
                            f"FLOPs and bytes ({share:.0%} of the kernel time): {listed}")
        others = [name for k in kernels if k.type == "other" for name in k.nodes]
        if others:  # the name → op map only for models that need it
            op_of = {node.name: node.op for node in graph.nodes}
            unknown = sorted({op_of[name] for name in others})
            warnings.append(f"ops edgemeter has no kernel type for: {', '.join(unknown)}")
        return warnings + self.machine_warnings


class KernelRows:
    """A batch of kernels grouped by regressor group, with each group's distinct feature rows
    read once per column set however many packages ask (an ensemble's members share them).
    Only distinct rows are kept: NAS batches repeat kernel configurations, and hashing tuples
    here is far cheaper than predicting (or sorting) the repeats."""

    def __init__(self, kernels: Sequence[Kernel], group_of: Callable[[str], str]):
        self.kernels = kernels
        self.by_group: dict[str, list[int]] = {}
        for i, kernel in enumerate(kernels):
            self.by_group.setdefault(group_of(kernel.type), []).append(i)
        self._read: dict[tuple, tuple[list[int], np.ndarray]] = {}

    def distinct(self, group: str, names: Sequence[str]) -> tuple[list[int], np.ndarray]:
        """The row of ``names`` columns each kernel of ``group`` reads, and those rows."""
        key = (group, tuple(names))
        found = self._read.get(key)
        if found is None:
            distinct: dict[tuple, int] = {}
            row, kernels = row_reader(names), self.kernels
            slots = [distinct.setdefault(row(kernels[i].features), len(distinct))
                     for i in self.by_group[group]]
            found = self._read[key] = (slots, np.array(list(distinct), dtype=np.float64)
                                       .reshape(len(distinct), -1))
        return found


def row_reader(names: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple]:
    """Features → tuple in ``names`` order, a missing feature read as 0 (the builder trains on
    rows filled the same way). ``map`` over ``dict.get`` runs at C speed, and most kernels miss
    some feature (ACT, H, W), so there is no faster common case to try first."""
    zeros = (0,) * len(names)

    def read(features: Mapping[str, Any]) -> tuple:
        return tuple(map(features.get, names, zeros))

    return read


def load_predictor(name: str | Path | None = None, version: str | None = None,
                   engine: str = "numpy") -> Predictor:
    """A predictor by name (``None``: the shipped default), the version
    :func:`~edgemeter.predictor.registry.find_predictor` picks unless ``version`` is given; or
    a package folder / .zip given by path. Unknown names or versions raise
    :class:`~edgemeter.errors.ConfigError` listing the available ones.

    ``engine`` runs the regressors' trees: ``numpy`` (ready at once) or ``onnxruntime``
    (compiled here, about a second; then each graph is predicted several times faster: the
    choice for a process that predicts many, such as a NAS loop)."""
    from edgemeter.predictor.registry import ENSEMBLE, find_predictor

    path = Path(name) if name is not None and _looks_like_path(name) else \
        find_predictor(name, version).path
    if path.suffix == ENSEMBLE:  # an ensemble of versions beside it
        from edgemeter.predictor.ensemble import load_ensemble

        return load_ensemble(path, engine)
    return Predictor.from_package(path, engine)


def _looks_like_path(name: str | Path) -> bool:
    from edgemeter.predictor.registry import ENSEMBLE

    text = str(name)
    # Registered names never contain a separator (package.check_name), so no ambiguity.
    return (isinstance(name, Path) or "/" in text or "\\" in text
            or text.endswith((".zip", ENSEMBLE)))
