"""Data collection: measure models through the results store and turn them into training rows.

Two sources of kernel rows:

- **zoo models** (in context): a whole model measured with ``profile=True`` gives its median
  (unprofiled runs: the model term's target) and per-node times, which
  :func:`edgemeter.backends.kernel_times.kernel_times` maps to the kernels of the backend's
  fusion rules: one row per kernel, timed as it runs inside a real model.
- **sampled kernels**: on runtimes with per-node times, a batch model of independent kernels,
  profiled once (:func:`edgemeter.builder.kernel_models.emit_batch`); elsewhere one model per
  kernel, whose whole median is the kernel's time.

Every measurement goes through :class:`Collector`, which asks the store first: a rerun after an
interruption re-measures nothing that completed (failures included: a model the backend rejected
is not retried, it is listed) and takes up an unfinished measurement from its stored rounds.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from edgemeter.backends import Measurement, Protocol, get_backend, measure, measure_models
from edgemeter.errors import EdgemeterError
from edgemeter.kernels.groups import regressor_group
from edgemeter.store import Store

Row = dict[str, Any]


class BackendFailure(EdgemeterError):
    """The backend fails even on a model it ran before: stop the build (data so far is kept)."""


@dataclass
class Collector:
    store: Store
    backend: str
    config: dict[str, Any]
    protocol: Protocol
    canary: Path | None = None            # a model the backend ran: is it still working?
    measured: int = 0                     # fresh measurements this session
    reused: int = 0                       # measurements an earlier run left in the store
    failures: dict[str, str] = field(default_factory=dict)   # model -> error
    _consecutive_failures: int = 0

    def __post_init__(self) -> None:
        self.settings = get_backend(self.backend, **self.config).settings()

    def measure(self, path: Path, profile: bool) -> Measurement:
        """The stored measurement of ``path`` if there is one (a failed one too), else a fresh
        measurement, stored before it is returned."""
        [(_, m)] = self.measure_all([path], profile)
        return m

    def measure_all(self, paths: Iterable[Path], profile: bool,
                    until: Callable[[], bool] | None = None,
                    on_round: Callable[[], None] | None = None,
                    protocol: Protocol | None = None) -> list[tuple[Path, Measurement]]:
        """``(path, measurement)`` of ``paths`` as :meth:`measure` gives them (with
        ``protocol`` instead of the collector's, if given), in passes when the protocol
        interleaves; ``paths`` is read lazily and no further model starts once ``until()`` says
        True (see :func:`~edgemeter.backends.measure_models`)."""
        started: list[Path] = []
        reported = iter(started)  # results come back in the order the models started

        def start() -> Iterator[Path]:
            for path in paths:
                started.append(path)
                yield path

        def account(m: Measurement, reused: bool) -> None:
            if reused:
                self.reused += 1
            else:
                self.measured += 1
            self._check(next(reported), m)

        results = measure_models(start(), self.backend, self.config, protocol or self.protocol,
                                 profile=profile, store=self.store, reuse_failures=True,
                                 until=until, on_result=account, on_round=on_round)
        return list(zip(started, results))

    def _check(self, path: Path, m: Measurement) -> None:
        if m.ok:
            self._consecutive_failures = 0
            return
        self.failures[str(path)] = m.error or "failed"
        self._consecutive_failures += 1
        # One kind of kernel can be beyond the backend; when the canary fails too, the backend
        # itself broke (device gone, runtime crashing on everything).
        if self._consecutive_failures >= 5 and self.canary is not None:
            check = measure(self.canary, self.backend, self.config, self.protocol)
            if not check.ok:
                raise BackendFailure(f"backend {self.backend} stopped working (a model it "
                                     f"ran before now fails: {check.error})")
            self._consecutive_failures = 0


def kernel_rows(path: Path, m: Measurement, rules: Any, source: str,
                statistic: str = "median") -> list[Row]:
    """Rows (``source``, ``type``, ``group``, features, ``latency_ms``) of a profiled model's
    kernels (:func:`in_context_ms`); kernels the runtime did not run on their own (0 ms, no
    runtime node) are left out."""
    kernels, times = in_context_ms(path, m, rules, statistic)
    return [{"source": source, "type": kernel.type, "group": regressor_group(kernel.type),
             **kernel.features, "latency_ms": ms, **_anchor(m)}
            for kernel, ms in zip(kernels, times) if ms > 0]


def in_context_ms(path: Path, m: Measurement, rules: Any, statistic: str = "median"
                  ) -> tuple[list[Any], list[float]]:
    """The kernels of a profiled model (``rules``) and each one's time as it ran in the model
    (ms; 0 where the runtime ran it inside another kernel's nodes, or no time is known).

    Profiling gives each kernel's SHARE of the run; the unprofiled latency (``statistic``)
    gives the total. The profiled run is another process at another moment: on a busy machine
    its per-node times summed to 0.65-2.8x the unprofiled median of the same model (76 zoo
    models, median 1.1x), so raw profiler times would carry that run's luck into every kernel
    of the model. The profiler's own cost per node is taken off first
    (:func:`net_node_times`), so shares are of the work, not of the node count."""
    from edgemeter.backends.kernel_times import kernel_times
    from edgemeter.importers import load_graph
    from edgemeter.kernels import detect

    graph = load_graph(path)
    kernels = detect(graph, rules)
    total = m.latency_ms(statistic)
    if not m.node_times_ms or not total:
        return kernels, [0.0] * len(kernels)
    times = kernel_times(graph, kernels, net_node_times(m.node_times_ms, total), m.node_origins,
                         m.node_inputs)
    scale = total / times.total_ms if times.total_ms else 0.0
    return kernels, [timed["latency_ms"] * scale if timed["runtime_nodes"] else 0.0
                     for timed in times.kernels]


# The most per-node profiler cost taken off a node's time (ms); a larger excess of the profiled
# sum over the unprofiled latency is the profiled run's luck, which the shares scale away.
PROFILER_COST_MAX_MS = 0.005
# What is left of a node's time at least when its profiler cost is taken off.
PROFILER_COST_FLOOR = 0.1


def net_node_times(node_times: Mapping[str, float], total_ms: float) -> dict[str, float]:
    """Per-node times with the profiler's own cost per node taken off.

    A profiled node's time includes a cost of the profiler that does not scale with the node's
    work: over the 304 zoo models of a 30-minute onnxruntime build, the per-node times summed
    to more than the unprofiled median by 2.0 µs per runtime node in median (quartiles 1.5 and
    2.9 µs), 1.2 µs in batch models. Shared out in proportion to time, that cost scaled the big
    kernels of a GhostNet variant with 229 runtime nodes to 0.59 of their time. Here each
    node gives up the same cost: the excess per node, between 0 and
    :data:`PROFILER_COST_MAX_MS`, never more than ``1 - PROFILER_COST_FLOOR`` of its time."""
    if not node_times:
        return {}
    excess = (sum(node_times.values()) - total_ms) / len(node_times)
    cost = min(max(excess, 0.0), PROFILER_COST_MAX_MS)
    return {name: max(ms - cost, PROFILER_COST_FLOOR * ms) for name, ms in node_times.items()}


def _anchor(m: Measurement) -> Row:
    """The anchor's time beside the measurement, carried in each row so that training can put
    rows measured at different moments on one machine speed (:func:`train.at_anchor_speed`)."""
    return {"anchor_ms": m.anchor_ms} if m.anchor_ms else {}


def standalone_row(path: Path, m: Measurement, rules: Any, source: str,
                   statistic: str = "median") -> list[Row]:
    """The row of a one-kernel model timed whole (runtimes without per-node times)."""
    from edgemeter.importers import load_graph
    from edgemeter.kernels import detect

    kernels = detect(load_graph(path), rules)
    latency = m.latency_ms(statistic)
    if len(kernels) != 1 or not latency:  # the rules split it: the time is not one kernel's
        return []
    kernel = kernels[0]
    return [{"source": source, "type": kernel.type, "group": regressor_group(kernel.type),
             **kernel.features, "latency_ms": latency, **_anchor(m)}]


def save_model(model: onnx.ModelProto, path: Path) -> Path:
    """Write ``model`` unless the same bytes are there (keeps file times and content keys)."""
    data = model.SerializeToString()
    if not (path.exists() and path.read_bytes() == data):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


@dataclass
class ModelRecord:
    """A whole zoo model: its measured latency and its kernels (for the model term), its size
    and its round medians beside the anchor's (for the anchor sensitivity)."""

    name: str
    path: str
    latency_ms: float
    kernels: list[Any]                  # edgemeter.kernels.Kernel
    anchor_ms: float | None = None
    flops: float = 0.0
    round_medians_ms: list[float] = field(default_factory=list)
    anchor_round_medians_ms: list[float] = field(default_factory=list)


def model_record(name: str, path: Path, m: Measurement, rules: Any,
                 statistic: str = "median") -> ModelRecord:
    from edgemeter.importers import load_graph
    from edgemeter.kernels import detect

    graph = load_graph(path)
    return ModelRecord(name, str(path), float(m.latency_ms(statistic)), detect(graph, rules),
                       m.anchor_ms, graph.total_cost().flops, list(m.round_medians_ms),
                       list(m.anchor_round_medians_ms or ()))


def zoo_variants(families: Sequence[str], per_family: int, seed: int
                 ) -> list[tuple[str, str, dict[str, Any]]]:
    """``(name, family, variant)`` of ``per_family`` random variants per family, drawn from
    one generator per family and seed (so adding a family changes no other's variants). Round
    by round: the first variant of every family, then the second, ... so a budget that ends
    the list early still leaves every family represented."""
    drawn = _family_draws(families, per_family, seed)
    return [drawn[family][i] for i in range(per_family) for family in families]


def _family_draws(families: Sequence[str], per_family: int, seed: int
                  ) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    """Each family's ``(name, family, variant)`` draws, in the order its generator gives them."""
    import numpy as np

    from edgemeter import zoo

    drawn = {}
    for index, family in enumerate(families):
        rng = np.random.default_rng([seed, index])
        drawn[family] = [(f"{family}-s{seed}-{i}", family, zoo.sample_variant(family, rng))
                         for i in range(per_family)]
    return drawn


SPREAD_POOL = 2  # a family's k-th training variant is chosen among its first 2k draws


def spread_zoo_variants(families: Sequence[str], per_family: int, seed: int,
                        size: Callable[[str, dict[str, Any]], tuple[int, int]] | None = None,
                        weights: Mapping[str, int] | None = None
                        ) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The variants of :func:`zoo_variants`, in the same round-by-round order of families, each
    family's picked so that any prefix spreads over its sizes: the first draw first, then the
    draw farthest (in log weights and log multiply-accumulates, ``size``: :func:`zoo.size`) from
    those picked, among the first ``SPREAD_POOL`` × k draws for the k-th pick. Lazy, so that
    a budget that ends the list early sizes about twice the variants it measures. A family of
    weight w (``weights``, default 1) gives w picks per round and has w × ``per_family`` draws.

    Why: with the 15-16 random variants per family a 30-minute build measures, the largest
    repeat errors of the Xeon builds (2026-12-03) were held-out models far from every training
    variant of their family in those two sizes. The weights: GhostNet variants stray from
    their kernels' sum twice as far as most families' do; more of them narrowed that in a
    retrain trial, less in one 30-minute build, which had fewer of every other family
    (bench/RESULTS.md, 2026-12-06)."""
    import numpy as np

    from edgemeter import zoo

    size = size or zoo.size
    weights = {family: (weights or {}).get(family, 1) for family in families}
    drawn = _family_draws(families, per_family * max(weights.values(), default=1), seed)
    points: dict[str, list[Any]] = {family: [] for family in families}
    picked: dict[str, list[int]] = {family: [] for family in families}

    def point(family: str, i: int) -> Any:
        while len(points[family]) <= i:
            _, _, variant = drawn[family][len(points[family])]
            points[family].append(np.log(np.maximum(size(family, variant), 1)))
        return points[family][i]

    def gap(family: str, i: int) -> float:
        return min(float(np.linalg.norm(point(family, i) - point(family, j)))
                   for j in picked[family])

    for _ in range(per_family):
        for family in families:
            for _ in range(weights[family]):
                k = len(picked[family])
                pool = [i for i in range(min(per_family * weights[family], SPREAD_POOL * (k + 1)))
                        if i not in picked[family]]
                best = (max(pool, key=lambda i: (gap(family, i), -i)) if picked[family]
                        else pool[0])
                picked[family].append(best)
                yield drawn[family][best]


def export_variant(folder: Path, name: str, family: str, variant: Mapping[str, Any]) -> Path:
    """The ONNX file of a zoo variant, exported once per workspace (its content keys the store)."""
    from edgemeter import zoo

    path = folder / f"{name}.onnx"
    if not path.exists():
        module, shape = zoo.build(family, dict(variant))
        tmp = zoo.export_onnx(module, shape, path.with_suffix(".tmp.onnx"))
        tmp.replace(path)
    return path
