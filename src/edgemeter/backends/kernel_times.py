"""In-context kernel times: a runtime's per-node profile mapped back to edgemeter kernels.

Runtimes profile the graph they actually execute, not the model: onnxruntime renames the nodes it
fuses into NCHWc kernels after their output tensor (``<tensor>_nchwc``) and inserts
``ReorderInput``/``ReorderOutput`` nodes; OpenVINO runs a fused layer under the name of its first
original (``/conv/Conv/WithoutBiases``, where its ONNX frontend split off the bias) and lists the
fused originals in the runtime model's ``originalLayersNames`` (``node_origins``). Each runtime
node is resolved to the model's nodes it executes, then to their kernels:

>>> result = kernel_times(graph, kernels, m.node_times_ms, m.node_origins)
>>> result.kernels[0]        # {"type": "conv-relu", "nodes": [...], "latency_ms": 0.21, ...}
>>> result.unattributed_ms   # layout reorders and other runtime-inserted work

Time is never dropped: per-kernel times plus ``unattributed_ms`` equal the sum of the runtime's
per-node times. A runtime node that executes nodes of several kernels (the runtime fused more
than the rules say) splits its time between them in proportion to their FLOPs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgemeter.graph import Graph

# Suffixes runtimes append to a node or tensor name when they rewrite it.
# onnxruntime: NCHWc nodes, batch norms folded into them, reshapes it rewrote.
_SUFFIXES = ("_nchwc", "_bn", "_new_reshape")


@dataclass
class KernelTimes:
    """Per-kernel latencies inside one whole-model run (ms, mean over profiled runs)."""

    kernels: list[dict[str, Any]]        # {"type", "nodes", "latency_ms", "runtime_nodes"}
    unattributed: dict[str, float] = field(default_factory=dict)  # runtime node -> ms
    total_ms: float = 0.0                # the runtime's per-node total

    @property
    def unattributed_ms(self) -> float:
        return sum(self.unattributed.values())

    def to_dict(self) -> dict[str, Any]:
        return {"kernels": self.kernels, "unattributed": self.unattributed,
                "unattributed_ms": self.unattributed_ms, "total_ms": self.total_ms}


class _Resolver:
    """Runtime node name -> the names of the graph nodes it executes."""

    def __init__(self, graph: Graph, origins: dict[str, list[str]] | None):
        self.nodes = {node.name for node in graph.nodes}
        self.producer = {out: node.name for node in graph.nodes for out in node.outputs}
        self.origins = origins or {}

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
                 origins: dict[str, list[str]] | None = None) -> KernelTimes:
    """Attribute ``node_times`` (runtime node name -> ms, as in ``Measurement.node_times_ms``)
    to ``kernels`` (from :func:`edgemeter.kernels.detect` on ``graph``). ``origins`` (runtime
    node -> original node names, ``Measurement.node_origins``) is used where the runtime gives
    it; names are matched otherwise. Kernels no runtime node executes get 0 ms and no
    ``runtime_nodes`` (the runtime folded them away or ran them inside a neighbour)."""
    owner = {name: i for i, kernel in enumerate(kernels) for name in kernel.nodes}
    flops = {node.name: (node.cost.flops if node.cost else 0) for node in graph.nodes}
    resolve = _Resolver(graph, origins)
    latency = [0.0] * len(kernels)
    runtime_nodes: list[list[str]] = [[] for _ in kernels]
    result = KernelTimes([], total_ms=sum(node_times.values()))
    for runtime_name, ms in node_times.items():
        share: dict[int, float] = {}
        for name in resolve(runtime_name):
            if name in owner:
                share[owner[name]] = share.get(owner[name], 0.0) + flops.get(name, 0)
        if not share:
            result.unattributed[runtime_name] = ms
            continue
        total = sum(share.values())
        for k, weight in share.items():
            latency[k] += ms * (weight / total if total else 1 / len(share))
            runtime_nodes[k].append(runtime_name)
    result.kernels = [{"type": kernel.type, "nodes": list(kernel.nodes), "latency_ms": latency[i],
                       "runtime_nodes": runtime_nodes[i]} for i, kernel in enumerate(kernels)]
    return result


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
    return kernel_times(graph, kernels, m.node_times_ms, m.node_origins)
