"""In-context kernel times: a runtime's per-node profile mapped back to edgemeter kernels.

Runtimes profile the graph they actually execute, not the model: onnxruntime renames the nodes it
fuses into NCHWc kernels after their output tensor (``<tensor>_nchwc``) and inserts
``ReorderInput``/``ReorderOutput`` nodes; OpenVINO runs a fused layer under the name of its first
original (``/conv/Conv/WithoutBiases``, where its ONNX frontend split off the bias) and lists the
fused originals in the runtime model's ``originalLayersNames`` (``node_origins``). Each runtime
node is resolved to the model's nodes it executes, then to their kernels:

>>> result = kernel_times(graph, kernels, m.node_times_ms, m.node_origins, m.node_inputs)
>>> result.kernels[0]        # {"type": "conv-relu", "nodes": [...], "latency_ms": 0.21, ...}
>>> result.reattributed_ms   # runtime-inserted nodes (layout reorders) charged to kernels
>>> result.unattributed_ms   # runtime-inserted nodes no kernel could be found for

A node the runtime inserted itself (a layout reorder, a precision convert) executes no model
node, but the model pays for it in context: models with SE blocks spend 15-18% of onnxruntime's
time in NCHWc reorders. Its time goes to the kernel that consumes its output, following the
runtime graph's edges (``node_inputs``: runtime node -> runtime nodes feeding it), else to the
kernel that produces its input; only what neither reaches stays unattributed. A node the
runtime made from a model node it decomposed carries an original name the model does not have
(OpenVINO turns a LayerNormalization into ``MVN_14515``): its time goes to the kernel that no
runtime node executes and that sits between its neighbours' kernels, where there is one.

Time is never dropped: per-kernel times plus ``unattributed_ms`` equal the sum of the runtime's
per-node times. A runtime node that executes nodes of several kernels (the runtime fused more
than the rules say) splits its time between them in proportion to their FLOPs.
"""
from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from edgemeter.graph import Graph

# Suffixes runtimes append to a node or tensor name when they rewrite it.
# onnxruntime: NCHWc nodes, batch norms folded into them, reshapes it rewrote.
_SUFFIXES = ("_nchwc", "_bn", "_new_reshape")


@dataclass
class KernelTimes:
    """Per-kernel latencies inside one whole-model run (ms, median over profiled runs)."""

    kernels: list[dict[str, Any]]        # {"type", "nodes", "latency_ms", "runtime_nodes"}
    unattributed: dict[str, float] = field(default_factory=dict)  # runtime node -> ms
    reattributed: dict[str, float] = field(default_factory=dict)  # inserted node -> ms, in kernels
    total_ms: float = 0.0                # the runtime's per-node total

    @property
    def unattributed_ms(self) -> float:
        return sum(self.unattributed.values())

    @property
    def reattributed_ms(self) -> float:
        return sum(self.reattributed.values())

    def to_dict(self) -> dict[str, Any]:
        return {"kernels": self.kernels, "unattributed": self.unattributed,
                "unattributed_ms": self.unattributed_ms, "reattributed": self.reattributed,
                "reattributed_ms": self.reattributed_ms, "total_ms": self.total_ms}


class _Resolver:
    """Runtime node name -> the names of the graph nodes it executes."""

    def __init__(self, graph: Graph, origins: dict[str, list[str]] | None):
        self.nodes = {node.name for node in graph.nodes}
        self.producer = {out: node.name for node in graph.nodes for out in node.outputs}
        self.origins = origins or {}

    def renamed(self, runtime_name: str) -> bool:
        """The runtime lists originals for the node, none of them in the model: it made the
        node from a model node it decomposed, under a name of its own."""
        return bool(self.origins.get(runtime_name))

    def __call__(self, runtime_name: str) -> list[str]:
        # A runtime that lists the originals (OpenVINO) is believed, even when it lists none
        # (reorders, converts it inserted itself).
        candidates = self.origins.get(runtime_name, [runtime_name])
        found = dict.fromkeys(hit for name in candidates if (hit := self.match(name)))
        return list(found)

    def match(self, name: str) -> str | None:
        for suffix in _SUFFIXES:
            name = name.removesuffix(suffix)
        # A node name; the output tensor of a node (onnxruntime names fused nodes after it);
        # or a node name with segments added (OpenVINO's ``<node>/WithoutBiases``).
        while True:
            if name in self.nodes:
                return name
            if name in self.producer:
                return self.producer[name]
            head, sep, _ = name.rpartition("/")
            if not sep or not head:
                return None
            name = head


def kernel_times(graph: Graph, kernels: list[Any], node_times: dict[str, float],
                 origins: dict[str, list[str]] | None = None,
                 inputs: dict[str, list[str]] | None = None) -> KernelTimes:
    """Attribute ``node_times`` (runtime node name -> ms, as in ``Measurement.node_times_ms``)
    to ``kernels`` (from :func:`edgemeter.kernels.detect` on ``graph``). ``origins`` (runtime
    node -> original node names, ``Measurement.node_origins``) is used where the runtime gives
    it; names are matched otherwise. ``inputs`` (runtime node -> runtime nodes feeding it,
    ``Measurement.node_inputs``) lets nodes the runtime inserted go to a neighbouring kernel.
    Kernels no runtime node executes get 0 ms and no ``runtime_nodes`` (the runtime folded them
    away or ran them inside a neighbour)."""
    owner = {name: i for i, kernel in enumerate(kernels) for name in kernel.nodes}
    flops = {node.name: (node.cost.flops if node.cost else 0) for node in graph.nodes}
    resolve = _Resolver(graph, origins)
    shares: dict[str, dict[int, float]] = {}  # runtime node -> kernel -> fraction of its time
    for runtime_name in node_times:
        weights: dict[int, float] = {}
        for name in resolve(runtime_name):
            if name in owner:
                weights[owner[name]] = weights.get(owner[name], 0.0) + flops.get(name, 0)
        if weights:
            total = sum(weights.values())
            shares[runtime_name] = {k: w / total if total else 1 / len(weights)
                                    for k, w in weights.items()}
    latency = [0.0] * len(kernels)
    runtime_nodes: list[list[str]] = [[] for _ in kernels]
    result = KernelTimes([], total_ms=sum(node_times.values()))
    feeds = _consumers(inputs or {})
    untimed = None  # built at the first renamed node: most runtimes make none
    for runtime_name, ms in node_times.items():
        share = shares.get(runtime_name)
        if share is None:
            after = _nearest(runtime_name, feeds, shares)
            if resolve.renamed(runtime_name):
                if untimed is None:
                    untimed = _untimed_successors(graph, kernels, owner, flops, shares)
                share = _between(_nearest(runtime_name, inputs or {}, shares), after, untimed)
            # The consumer needs the layout the node makes; a graph output has none, so the
            # producer, whose result is reordered, pays.
            share = share or after or _nearest(runtime_name, inputs or {}, shares)
            if share is None:
                result.unattributed[runtime_name] = ms
                continue
            result.reattributed[runtime_name] = ms
        for k, fraction in share.items():
            latency[k] += ms * fraction
            runtime_nodes[k].append(runtime_name)
    result.kernels = [{"type": kernel.type, "nodes": list(kernel.nodes), "latency_ms": latency[i],
                       "runtime_nodes": runtime_nodes[i]} for i, kernel in enumerate(kernels)]
    return result


def _untimed_successors(graph: Graph, kernels: list[Any], owner: dict[str, int],
                        flops: dict[str, float], shares: dict[str, dict[int, float]]
                        ) -> dict[int, dict[int, set[int]]]:
    """Kernel -> the computing kernels it feeds that no runtime node executes, each with the
    kernels that one feeds. Kernels without FLOPs the runtime skips (reshapes) are looked
    through both ways."""
    timed = {k for share in shares.values() for k in share}
    work = [0.0] * len(kernels)
    for name, k in owner.items():
        work[k] += flops.get(name, 0)
    producer = {out: owner[node.name] for node in graph.nodes if node.name in owner
                for out in node.outputs}
    direct: dict[int, set[int]] = {}
    for node in graph.nodes:
        k = owner.get(node.name)
        for tensor in node.inputs:
            source = producer.get(tensor)
            if k is not None and source is not None and source != k:
                direct.setdefault(source, set()).add(k)

    def reached(k: int) -> set[int]:
        seen, todo = set(), list(direct.get(k, ()))
        while todo:
            j = todo.pop()
            if j not in seen:
                seen.add(j)
                if not work[j] and j not in timed:
                    todo.extend(direct.get(j, ()))
        return seen

    return {k: {j: reached(j) for j in reached(k) if work[j] and j not in timed}
            for k in range(len(kernels))}


def _between(before: dict[int, float] | None, after: dict[int, float] | None,
             untimed: dict[int, dict[int, set[int]]]) -> dict[int, float] | None:
    """Shares over the untimed computing kernels fed by a kernel of ``before`` and feeding one
    of ``after``; None if there are none."""
    if not before or not after:
        return None
    found = dict.fromkeys(j for k in before for j, fed in untimed[k].items() if fed & after.keys())
    return {j: 1 / len(found) for j in found} or None


def _consumers(inputs: dict[str, list[str]]) -> dict[str, list[str]]:
    consumers: dict[str, list[str]] = {}
    for node, sources in inputs.items():
        for source in dict.fromkeys(sources):
            consumers.setdefault(source, []).append(node)
    return consumers


def _nearest(start: str, edges: dict[str, list[str]],
             shares: dict[str, dict[int, float]]) -> dict[int, float] | None:
    """The kernel shares of the first attributed runtime nodes reached from ``start`` along
    ``edges``, averaged (a reorder feeding two kernels serves both); None if none is reached.
    The walk goes on through unattributed nodes: reorder chains, in-place reshapes."""
    seen, queue, found = {start}, deque(edges.get(start, [])), []
    while queue:
        node = queue.popleft()
        if node in seen:
            continue
        seen.add(node)
        if node in shares:
            found.append(shares[node])
        else:
            queue.extend(edges.get(node, []))
    if not found:
        return None
    average: dict[int, float] = {}
    for share in found:
        for k, fraction in share.items():
            average[k] = average.get(k, 0.0) + fraction / len(found)
    return average


def median_node_times(per_run: list[dict[str, float]]) -> dict[str, float]:
    """Per-node median over profiled runs (runtime node -> ms, one dict per run): one run the
    shared machine preempted does not skew a node, as it skews a mean. A node missing from a run
    took 0 ms in it."""
    names = dict.fromkeys(name for run in per_run for name in run)
    return {name: statistics.median(run.get(name, 0.0) for run in per_run) for name in names}


def measured_kernel_times(m: Any) -> KernelTimes | None:
    """:func:`kernel_times` of a profiled :class:`~edgemeter.backends.Measurement`, with the
    kernels its backend's fusion rules find in the model; None without per-node times, fusion
    rules or a model edgemeter can import."""
    from edgemeter.backends import get_backend
    from edgemeter.errors import EdgemeterError
    from edgemeter.importers import load_graph
    from edgemeter.kernels import detect, load_rules

    if not m.node_times_ms:
        return None
    try:
        rules = get_backend(m.backend, **m.config).rules
        if rules is None:
            return None
        graph = load_graph(m.model)
        kernels = detect(graph, load_rules(rules))
    except EdgemeterError:
        return None
    return kernel_times(graph, kernels, m.node_times_ms, m.node_origins, m.node_inputs)
