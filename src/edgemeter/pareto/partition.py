"""Cut an ONNX model into maximal same-backend subgraphs that can run one after another.

Nodes start in runs of consecutive same-backend nodes (topological order), then same-backend
partitions merge pairwise while the partition graph stays acyclic, so independent branches on one
backend share a session. The result is maximal: no two partitions of one backend can merge without
one having to wait for the other.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from pathlib import Path

import onnx
from onnx import helper, numpy_helper, shape_inference

from edgemeter.errors import ModelError

_CONTROL_FLOW = {"If", "Loop", "Scan"}


@dataclass
class Partition:
    backend: str
    nodes: list[str]       # node names, topological order
    inputs: list[str]      # activations it reads from graph inputs or earlier partitions
    outputs: list[str]     # activations later partitions or the graph outputs read


def prepare_model(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    """Load ``model`` and make it cuttable: unique node names, ``Constant`` nodes and
    ``Identity`` nodes of initializers turned into initializers (a constant is data, not a
    decision, and must not cross a partition border), and inferred shapes for every intermediate
    tensor (each subgraph needs typed inputs)."""
    if not isinstance(model, onnx.ModelProto):
        try:
            model = onnx.load(str(model))
        except Exception as exc:  # DecodeError, OSError ...
            raise ModelError(f"{model}: not a readable ONNX model ({exc})") from None
    model = onnx.ModelProto.FromString(model.SerializeToString())   # never edit the caller's
    graph = model.graph
    kept, seen = [], set()
    initializers = {init.name: init for init in graph.initializer}
    for i, node in enumerate(graph.node):
        if node.op_type in _CONTROL_FLOW:
            raise ModelError(f"node {node.name or i} ({node.op_type}): control-flow ops cannot be "
                             "split across backends")
        constant = _constant_value(node, initializers)
        if constant is not None:
            graph.initializer.append(numpy_helper.from_array(constant, node.output[0]))
            initializers[node.output[0]] = graph.initializer[-1]
            continue
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    try:
        return shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:
        raise ModelError(f"shape inference failed: {exc}") from None


def _constant_value(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]):
    """The value ``node`` always produces, for ``Constant`` (tensor form) and ``Identity`` of an
    initializer; None for anything else."""
    if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
        return numpy_helper.to_array(node.attribute[0].t)
    if node.op_type == "Identity" and node.input[0] in initializers:
        return numpy_helper.to_array(initializers[node.input[0]])
    return None


def partition(model: onnx.ModelProto, assignment: dict[str, str]) -> list[Partition]:
    """Maximal same-backend partitions of ``model`` (prepared) under ``assignment`` (node name ->
    backend), in an order where each partition's inputs are produced before it runs."""
    nodes = list(model.graph.node)
    producer = {out: i for i, n in enumerate(nodes) for out in n.output}
    # Start: runs of consecutive nodes on one backend (a chain, hence acyclic).
    group = []
    for i, node in enumerate(nodes):
        same = i > 0 and assignment[node.name] == assignment[nodes[i - 1].name]
        group.append(group[-1] if same else (group[-1] + 1 if group else 0))
    while _merge_once(nodes, producer, group, assignment):
        pass
    return _partitions(model, nodes, producer, group, assignment)


def _edges(nodes, producer, group) -> dict[int, set[int]]:
    """Partition -> partitions that read its outputs."""
    succ: dict[int, set[int]] = {g: set() for g in group}
    for i, node in enumerate(nodes):
        for t in node.input:
            if t in producer and group[producer[t]] != group[i]:
                succ[group[producer[t]]].add(group[i])
    return succ


def _topological(succ: dict[int, set[int]]) -> list[int]:
    indeg = {g: 0 for g in succ}
    for g in succ:
        for h in succ[g]:
            indeg[h] += 1
    ready, order = sorted(g for g in indeg if indeg[g] == 0), []
    while ready:
        g = ready.pop(0)
        order.append(g)
        for h in sorted(succ[g]):
            indeg[h] -= 1
            if indeg[h] == 0:
                ready.append(h)
    return order


def _merge_once(nodes, producer, group, assignment) -> bool:
    """Merge the first pair of same-backend partitions whose union keeps the graph acyclic:
    neither may reach the other through a third partition."""
    succ = _edges(nodes, producer, group)
    backend = {group[i]: assignment[n.name] for i, n in enumerate(nodes)}
    reach: dict[int, int] = {}          # partition -> bit set of itself and its descendants
    for g in reversed(_topological(succ)):
        reach[g] = 1 << g
        for h in succ[g]:
            reach[g] |= reach[h]

    def indirect(a: int, b: int) -> bool:
        return any(reach[x] >> b & 1 for x in succ[a] if x != b)

    ids = sorted(succ)
    for ai, a in enumerate(ids):
        for b in ids[ai + 1:]:
            if backend[a] == backend[b] and not (indirect(a, b) or indirect(b, a)):
                group[:] = [a if g == b else g for g in group]
                return True
    return False


def _partitions(model, nodes, producer, group, assignment) -> list[Partition]:
    graph = model.graph
    succ = _edges(nodes, producer, group)
    order = _topological(succ)
    consumers: dict[str, set[int]] = {}
    for i, node in enumerate(nodes):
        for t in node.input:
            consumers.setdefault(t, set()).add(group[i])
    graph_inputs = {v.name for v in graph.input} - {init.name for init in graph.initializer}
    graph_outputs = {v.name for v in graph.output}
    parts = []
    for g in order:
        members = [i for i in range(len(nodes)) if group[i] == g]
        inside = {t for i in members for t in nodes[i].output}
        inputs = _unique(t for i in members for t in nodes[i].input
                         if t and t not in inside and (t in producer or t in graph_inputs))
        outputs = _unique(t for i in members for t in nodes[i].output
                          if t in graph_outputs or consumers.get(t, set()) - {g})
        parts.append(Partition(assignment[nodes[members[0]].name],
                               [nodes[i].name for i in members], inputs, outputs))
    return parts


def _unique(items) -> list:
    return list(dict.fromkeys(items))


def extract(model: onnx.ModelProto, part: Partition) -> onnx.ModelProto:
    """The stand-alone ONNX model of one partition, with its own copy of the weights it uses."""
    graph = model.graph
    wanted = set(part.nodes)
    nodes = [n for n in graph.node if n.name in wanted]
    used = {t for n in nodes for t in n.input}
    values = {v.name: v for v in [*graph.value_info, *graph.input, *graph.output]}
    missing = [t for t in [*part.inputs, *part.outputs] if t not in values]
    if missing:
        raise ModelError(f"no inferred type for tensor {missing[0]!r}; cannot cut the graph there")
    sub = helper.make_graph(
        nodes, f"{graph.name}_{part.backend}_{part.nodes[0]}",
        [values[t] for t in part.inputs], [values[t] for t in part.outputs],
        initializer=[init for init in graph.initializer if init.name in used],
        value_info=[v for v in graph.value_info if v.name in used])
    out = helper.make_model(sub, opset_imports=model.opset_import, producer_name="edgemeter")
    out.ir_version = model.ir_version
    return out


def tensor_bytes(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor name -> size in bytes, for initializers and tensors whose shape is fully known."""
    from onnx.helper import tensor_dtype_to_np_dtype

    sizes = {init.name: prod(init.dims) * tensor_dtype_to_np_dtype(init.data_type).itemsize
             for init in model.graph.initializer}
    for value in [*model.graph.value_info, *model.graph.output, *model.graph.input]:
        t = value.type.tensor_type
        if t.elem_type and t.shape.dim and all(d.HasField("dim_value") for d in t.shape.dim):
            sizes[value.name] = (prod(d.dim_value for d in t.shape.dim)
                                 * tensor_dtype_to_np_dtype(t.elem_type).itemsize)
    return sizes
