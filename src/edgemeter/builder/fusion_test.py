"""Fusion-rule tester: which op pairs a runtime runs as one kernel, by timing and by its graph.

For every pair ``a → b`` (``b`` consumes ``a``'s only output) the tester builds three models —
``a`` alone, ``b`` alone, ``a → b`` — and measures them through the workspace store. With ``T0``
the time of a trivial model (what any model costs), a fused pair
hides most of the cheaper op's own time, a separate pair none of it::

    saving = (T(a) + T(b) − T0 − T(a→b)) / max(min(T(a), T(b)) − T0, 2·noise)

``T0`` is one Relu on a single number: the call every test model pays once (about 4 µs on
onnxruntime, 0.5 µs on LiteRT). A model that only moves the test tensor is no baseline: its
copy costs as much as an element-wise op (onnxruntime) or more (LiteRT: a Transpose and a
copy), which made element-wise ops look free and their pairs slower together than apart.
``b`` alone runs on the tensor ``a`` makes. When the cheaper op's own time is within the
noise, there is nothing for a fusion to hide: the saving is unclear and the graph decides.

It is "fused" when the saving is above ``margin`` by more than twice its standard error, "not
fused" when below by as much; otherwise the pair is measured again (new weights, a new process)
up to ``max_repeats`` times and then decided by the mean, flagged ``clear: false``. The standard
error comes from each measurement's own spread (IQR of its samples) and, from the second repeat
on, from the spread between repeats.

Where the runtime shows the graph it executes (onnxruntime's optimised model, OpenVINO's runtime
model, the operators LiteRT's profiler reports for XNNPACK), the tester also counts compute
nodes: fewer for ``a → b`` than for ``a`` and ``b`` apart means fused. The graph is the
decision when there is one (it is exact); disagreements with the timing are reported: an
element-wise op right after its producer often costs less than alone (its input is still in
the cache) without being fused. The multiple-outbound case (``a`` feeding two consumers)
decides the rules' ``multiple_consumers`` policy. Output: a rules YAML in the format of
:mod:`edgemeter.kernels.rules`, with the patterns of the backend's shipped rules (multi-op
patterns are not tested) and the pairs found here.
"""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgemeter.backends import Measurement, Protocol
from edgemeter.builder import collect
from edgemeter.builder.onnx_graphs import GraphBuilder
from edgemeter.builder.workspace import FUSION_OPS, Workspace

# Ops that follow another in the tested pairs: the tails runtimes fuse into a kernel.
FOLLOWERS = ("relu", "relu6", "hswish", "sigmoid", "bn", "add", "mul")
# Followers with a second operand. In a pair, that operand is made by a sibling of the first op,
# as in a residual block: onnxruntime fuses Conv+Add only when both inputs of the Add come from
# convs (NCHWc layout), never with a model input.
BINARY = ("add", "mul")
# Consumers that need a 4-D NCHW input (cannot follow a reshape).
_NEEDS_4D = ("conv", "dwconv", "convtranspose", "bn", "maxpool", "avgpool", "global-avgpool")
# Test op name → kind in the rules file.
RULE_KIND = {"reshape": "data-movement"}
RULES_FILE = "results/fusion_rules.yaml"  # in the workspace
# Graph nodes that are layout plumbing, not compute.
_PLUMBING = {"ReorderInput", "ReorderOutput", "Input", "Output", "Parameter", "Result", "Const",
             "Constant", "Reorder", "Convert"}


def add_op(g: GraphBuilder, op: str, x: str, other: str | None = None) -> str:
    """Append test op ``op`` after ``x`` (shapes kept small and valid); ``other`` is the second
    operand of a binary op (default: a new model input)."""
    channels = g.shapes[x][1]
    if op == "conv":
        return g.conv(x, channels, 3)
    if op == "dwconv":
        return g.dwconv(x, 3)
    if op == "convtranspose":
        return g.convtranspose(x, channels, 2, 2)
    if op == "fc":
        return g.fc(x, g.shapes[x][-1])
    if op == "matmul":
        return g.matmul(x, g.input([*g.shapes[x][:-2], g.shapes[x][-1], g.shapes[x][-1]]))
    if op in ("maxpool", "avgpool"):
        return g.pool(x, op, 3, 1)
    if op == "global-avgpool":
        return g.global_pool(x)
    if op == "concat":
        return g.op("Concat", [x, g.input(g.shapes[x])],
                    [g.shapes[x][0], 2 * channels, *g.shapes[x][2:]], axis=1)
    return g.apply(op, x, other)


def test_model(ops: list[str] | tuple[str, ...], hw: int, channels: int, seed: int,
               branches: tuple[str, ...] = (), operand: str | None = None,
               shape: tuple[int, ...] | None = None) -> Any:
    """``ops`` chained after one input (of ``shape``, else ``[1, channels, hw, hw]``);
    ``branches`` are extra consumers of the first op; ``operand``: the op that makes the second
    operand of binary ops, on an input of its own (on the same input, onnxruntime merges it with
    a weightless first op)."""
    g = GraphBuilder(seed, name="-".join(ops))
    x = g.input(list(shape) if shape else [1, channels, hw, hw])
    other = add_op(g, operand, g.input(g.shapes[x])) if operand else None
    first = y = add_op(g, ops[0], x, other)
    for op in ops[1:]:
        y = add_op(g, op, y, other)
    g.output(y)
    for op in branches:
        g.output(add_op(g, op, first))
    return g.model()


def output_shape(op: str, hw: int, channels: int) -> tuple[int, ...] | None:
    """The shape test op ``op`` makes of the test tensor; None where it keeps it."""
    dims = test_model((op,), hw, channels, 0).graph.output[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value for d in dims)
    return None if shape == (1, channels, hw, hw) else shape


def valid_pair(a: str, b: str) -> bool:
    return not (a == "reshape" and b in _NEEDS_4D) and not (a == "global-avgpool" and b == "bn")


@dataclass
class PairResult:
    first: str
    second: str
    saving: float | None = None          # mean relative saving (see module doc)
    stderr: float | None = None
    repeats: int = 0
    timing: bool | None = None           # fused by timing
    clear: bool = False
    graph: bool | None = None            # fused by the runtime's graph (None: not visible)
    error: str | None = None

    @property
    def fused(self) -> bool:
        return bool(self.graph if self.graph is not None else self.timing)

    @property
    def disagree(self) -> bool:
        """Graph and timing decided differently; a timing still unclear after max_repeats is a
        guess (its saving's side of the margin), not a verdict to hold against the graph."""
        return (self.graph is not None and self.timing is not None and self.clear
                and self.graph != self.timing)


@dataclass
class FusionTestResult:
    path: Path                           # the rules YAML
    pairs: list[PairResult] = field(default_factory=list)
    multiple_consumers: str = "stop"
    baseline_ms: float | None = None     # T0

    def disagreements(self) -> list[PairResult]:
        return [p for p in self.pairs if p.disagree]


class _Tester:
    def __init__(self, ws: Workspace, collector: collect.Collector):
        self.ws, self.cfg = ws, ws.fusion_test
        self.folder = ws.subdir("models/fusion")
        # Short rounds: a decision needs a few comparable medians, not a polished latency.
        protocol = ws.protocol()
        self.collector = collect.Collector(collector.store, collector.backend, collector.config,
                                           Protocol(warmup=5, repeats=max(protocol.repeats, 20),
                                                    rounds=1, max_rounds=1,
                                                    timeout_s=protocol.timeout_s))
        self.parent = collector
        self.graph_counts: dict[str, int | None] = {}

    @staticmethod
    def name(ops: tuple[str, ...], branches: tuple[str, ...] = (),
             operand: str | None = None, shape: tuple[int, ...] | None = None) -> str:
        """A test model's name, without its seed."""
        return ("-".join(ops) + ("+" + "+".join(branches) if branches else "")
                + (f"~{operand}" if operand else "")
                + ("@" + "x".join(map(str, shape)) if shape else ""))

    def model(self, ops: tuple[str, ...], seed: int, branches: tuple[str, ...] = (),
              operand: str | None = None, shape: tuple[int, ...] | None = None) -> Path:
        model = test_model(ops, self.cfg["hw"], self.cfg["channels"], seed, branches, operand,
                           shape)
        return collect.save_model(
            model, self.folder / f"{self.name(ops, branches, operand, shape)}-r{seed}.onnx")

    def shape_after(self, op: str) -> tuple[int, ...] | None:
        return output_shape(op, self.cfg["hw"], self.cfg["channels"])

    def time(self, ops: tuple[str, ...], seed: int, operand: str | None = None,
             shape: tuple[int, ...] | None = None) -> tuple[float, float]:
        """Median ms of a test model and the standard error of that median."""
        m = self.collector.measure(self.model(ops, seed, operand=operand, shape=shape),
                                   profile=False)
        if not m.ok:
            raise RuntimeError(m.error)
        return m.median_ms, _median_stderr(m)

    def baseline(self) -> float:
        """T0: a model that does next to nothing (one Relu on one number)."""
        g = GraphBuilder(name="baseline")
        g.output(g.apply("relu", g.input([1, 1, 1, 1])))
        path = collect.save_model(g.model(), self.folder / "baseline.onnx")
        m = self.collector.measure(path, profile=False)
        if not m.ok:
            raise collect.BackendFailure(f"the backend cannot run a one-Relu model: {m.error}")
        return m.median_ms

    def compute_nodes(self, ops: tuple[str, ...], branches: tuple[str, ...] = (),
                      operand: str | None = None, shape: tuple[int, ...] | None = None
                      ) -> int | None:
        key = self.name(ops, branches, operand, shape)
        if key not in self.graph_counts:
            path = self.model(ops, 0, branches, operand, shape)
            self.graph_counts[key] = executed_nodes(self.ws, path)
        return self.graph_counts[key]

    def pair(self, a: str, b: str, t0: float) -> PairResult:
        result = PairResult(a, b)
        savings: list[float] = []
        errors: list[float] = []
        # A binary b takes its other operand from a sibling of a, so the pair model runs a
        # twice. b alone adds two model inputs: with a's sibling there, a runtime would fuse b
        # into it (OpenVINO does) and b would look free. b alone runs on the tensor a makes
        # (a global pool's 64 numbers, not the test tensor's 200,000).
        copies = 2 if b in BINARY else 1
        models = (((a,), None, None), ((b,), None, self.shape_after(a)),
                  ((a, b), a if copies == 2 else None, None))
        try:
            for seed in range(self.cfg["max_repeats"]):
                (ta, ea), (tb, eb), (tab, eab) = (self.time(ops, seed, o, shape)
                                                  for ops, o, shape in models)
                noise = math.sqrt((copies * ea) ** 2 + eb ** 2 + eab ** 2)
                # An own time under the noise cannot be told from zero: a fusion has nothing
                # to hide and the timing cannot judge the pair (the graph, where there is one,
                # does). Dividing by the noise then keeps the saving finite.
                own_time = min(ta, tb) - t0
                judged = own_time >= 2 * noise
                own = max(own_time, 2 * noise, 1e-6)
                savings.append((copies * (ta - t0) + tb - tab) / own)
                errors.append(noise / own)
                mean = statistics.fmean(savings)
                se = math.sqrt(statistics.fmean(e ** 2 for e in errors) / len(errors))
                if len(savings) > 1:
                    se = max(se, statistics.stdev(savings) / math.sqrt(len(savings)))
                margin = self.cfg["margin"]
                result.saving, result.stderr, result.repeats = mean, se, len(savings)
                result.clear = judged and abs(mean - margin) > 2 * se
                result.timing = mean > margin
                if result.clear or not judged:
                    break
        except RuntimeError as exc:
            result.error = str(exc)
        counts = [self.compute_nodes(ops, operand=o, shape=shape) for ops, o, shape in models]
        if None not in counts:
            result.graph = counts[2] < copies * counts[0] + counts[1]
        return result


def _median_stderr(m: Measurement) -> float:
    """Standard error of a median from its samples' IQR (σ ≈ IQR/1.35, se ≈ 1.25 σ/√n), or the
    spread between rounds when that is larger."""
    n = max(len(m.samples_ms), 1)
    se = 1.25 * (m.spread.get("iqr_ms") or 0.0) / 1.35 / math.sqrt(n)
    between = m.spread.get("cv_between")
    return max(se, (between or 0.0) * (m.median_ms or 0.0))


def executed_nodes(ws: Workspace, path: Path) -> int | None:
    """Compute nodes in the graph the runtime executes (None: the runtime does not show it)."""
    backend = ws.backend["backend"]
    try:
        if backend.startswith("onnxruntime"):
            return _ort_nodes(ws, path)
        if backend.startswith("openvino"):
            return _openvino_nodes(ws, path)
        if backend.startswith("litert"):
            return _litert_nodes(ws, path)
    except Exception:  # a runtime that cannot show this model's graph: timing decides
        return None
    return None


def _ort_nodes(ws: Workspace, path: Path) -> int:
    import onnx

    from edgemeter.backends import get_backend

    backend = get_backend(ws.backend["backend"], **ws.backend_config())
    ort = backend.runtime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = backend.threads
    opts.log_severity_level = 3  # the "hardware specific" warning on saving NCHWc graphs
    level = backend.config.get("graph_optimization_level", "all")
    from edgemeter.backends.onnxruntime import OPTIMIZATION_LEVELS
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[level])
    optimized = path.with_suffix(".optimized.onnx")
    opts.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    nodes = onnx.load(str(optimized)).graph.node
    optimized.unlink()
    return sum(1 for n in nodes if n.op_type not in _PLUMBING)


def _openvino_nodes(ws: Workspace, path: Path) -> int:
    from edgemeter.backends import get_backend

    backend = get_backend(ws.backend["backend"], **ws.backend_config())
    runtime_model = backend.compile(path).get_runtime_model()
    return sum(1 for op in runtime_model.get_ordered_ops()
               if op.get_rt_info()["layerType"].astype(str) not in _PLUMBING)


def _litert_nodes(ws: Workspace, path: Path) -> int:
    """Operators of one profiled run: a TFLite op's fused activation that XNNPACK still runs as
    a Clamp of its own (an ADD's) counts, as it costs a pass over the tensor; copies and
    reshapes do not."""
    from edgemeter.backends import get_backend
    from edgemeter.backends.litert_profile import operator_class, operator_times

    backend = get_backend(ws.backend["backend"], **ws.backend_config())
    labels = [label for label, _ in operator_times(backend.tflite(path), 1, backend.threads)]
    return sum(1 for label in labels if operator_class(label.split(" ", 1)[1]) != "move")


def pairs_to_test(ops: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a in ops for b in ops if b in FOLLOWERS and valid_pair(a, b)]


def run_fusion_test(ws: Workspace, collector: collect.Collector,
                    log: Callable[[str], None] = print, progress: bool = True) -> FusionTestResult:
    """Test the configured op pairs and write ``results/fusion_rules.yaml`` (and a JSON with
    every pair's figures). Measurements are stored, so a rerun only re-reads them."""
    from tqdm import tqdm

    tester = _Tester(ws, collector)
    ops = list(FUSION_OPS) if ws.fusion_test["ops"] == "all" else list(ws.fusion_test["ops"])
    t0 = tester.baseline()
    results = []
    for a, b in tqdm(pairs_to_test(ops), desc="fusion pairs", disable=not progress, leave=False):
        results.append(tester.pair(a, b, t0))
    multiple = _multiple_consumers(tester, results, t0)
    ws.subdir("results")
    out = FusionTestResult(ws.path / RULES_FILE, results, multiple, t0)
    write_rules(out, ws)
    for p in out.disagreements():
        log(f"fusion {p.first}→{p.second}: graph says {'fused' if p.graph else 'separate'}, "
            f"timing says {'fused' if p.timing else 'separate'} (saving {p.saving:.0%} ± "
            f"{p.stderr:.0%})")
    # The parent's counters include the tester's measurements.
    collector.measured += tester.collector.measured
    collector.reused += tester.collector.reused
    collector.failures.update(tester.collector.failures)
    return out


def _multiple_consumers(tester: _Tester, results: list[PairResult], t0: float) -> str:
    """``fuse-first`` if a producer with two consumers still fuses one of them, else ``stop``.
    Tested on the first fused pair whose producer can feed a second follower."""
    fused = next((p for p in results if p.fused and p.second in ("relu", "sigmoid", "relu6")),
                 None)
    if fused is None:
        return "stop"
    other = "sigmoid" if fused.second != "sigmoid" else "relu"
    alone = [((fused.first,), None)] + [((op,), tester.shape_after(fused.first))
                                        for op in (fused.second, other)]
    apart = [tester.compute_nodes(ops, shape=shape) for ops, shape in alone]
    together = tester.compute_nodes((fused.first, fused.second), (other,))
    if None not in apart and together is not None:
        return "fuse-first" if together < sum(apart) else "stop"
    t_apart = sum(tester.time(ops, 0, shape=shape)[0] for ops, shape in alone) - 2 * t0
    t_together = tester.time((fused.first, fused.second), 0, (other,))[0]
    return "fuse-first" if t_together < (1 - tester.cfg["margin"]) * t_apart else "stop"


def write_rules(result: FusionTestResult, ws: Workspace) -> None:
    """The rules YAML: shipped patterns of the backend, the measured pairs and policy."""
    from importlib import resources

    from edgemeter.backends import backend_class
    from edgemeter.kernels.rules import FORMAT, parse_rules

    shipped_name = backend_class(ws.backend["backend"]).rules
    patterns = {}
    if shipped_name:
        shipped = resources.files("edgemeter") / "data" / "fusion" / f"{shipped_name}.yaml"
        patterns = yaml.safe_load(shipped.read_text()).get("patterns") or {}
    pairs: dict[str, list[str]] = {}
    for p in result.pairs:
        if p.fused:
            left, right = RULE_KIND.get(p.first, p.first), RULE_KIND.get(p.second, p.second)
            pairs.setdefault(left, []).append(right)
    # A fused bn or add passes on what follows it: conv-bn takes the activations conv takes.
    for left, rights in list(pairs.items()):
        for middle in ("bn", "add"):
            tails = [r for r in rights if r not in ("bn", "add")]
            if middle in rights and tails:
                pairs[f"{left}-{middle}"] = tails
    data = {"format": FORMAT, "runtime": ws.backend["backend"],
            "description": f"measured by edgemeter fusion-test on {ws.backend['backend']}",
            "multiple_consumers": result.multiple_consumers, "patterns": patterns,
            "pairs": pairs}
    parse_rules(data, source=str(result.path))  # what detection will accept, checked now
    header = ("# Fusion rules measured by 'edgemeter fusion-test'; pairs and multiple_consumers "
              "from this machine,\n# patterns copied from the backend's shipped rules. Figures "
              "per pair: fusion_test.json\n")
    result.path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    figures = [{**asdict(p), "fused": p.fused, "disagree": p.disagree} for p in result.pairs]
    result.path.with_name("fusion_test.json").write_text(json.dumps(
        {"multiple_consumers": result.multiple_consumers, "baseline_ms": result.baseline_ms,
         "pairs": figures}, indent=2) + "\n")
