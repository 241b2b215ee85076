"""Kernel features: the plain numbers a latency regressor reads (nn-Meter's HW, CIN, COUT …).

The features of a kernel come from its main node (the conv of a conv-bn-relu, the MatMul of an
fc), chosen by kind, plus totals over all member nodes.
"""
from __future__ import annotations

from functools import lru_cache
from math import gcd, prod

from edgemeter.graph import Graph, Node
from edgemeter.kernels.kinds import ACTIVATION_CODES

Features = dict[str, float | int]

_CONV = ("conv", "dwconv", "convtranspose")
_POOL = ("maxpool", "avgpool")
_MATMUL = ("fc", "matmul")
_ROW_WISE = ("softmax", "layernorm")
_MAIN = frozenset(_CONV + _POOL + _MATMUL)
ALIGN_MAX = 16  # floats in an AVX-512 register, the widest block of the CPUs we build for


def kernel_features(graph: Graph, type_: str, nodes: list[Node], kinds: list[str]) -> Features:
    if type_ == "se":  # the block's input, and the width of its squeeze conv
        features = _tensor_features(_first_input_shape(graph, nodes[0]))
        squeeze = next((n for n, k in zip(nodes, kinds) if k == "conv"), None)
        weight = _shape(graph, squeeze.inputs[1]) if squeeze is not None else None
        if weight is not None:
            features["CMID"] = weight[0]
    else:
        features = _main_features(graph, type_, nodes, kinds)
    act = activation_code(type_)
    if act:
        features["ACT"] = act
    _add_cost_features(features, nodes)
    return features


@lru_cache(maxsize=None)  # a handful of kernel types, asked once per kernel
def activation_code(type_: str) -> int:
    """Code of the activation a kernel type ends with (conv-add-relu → relu), 0 if none."""
    last = next((a for a in ACTIVATION_CODES if type_ == a or type_.endswith("-" + a)), None)
    return ACTIVATION_CODES[last] if last else 0


def _main_features(graph: Graph, type_: str, nodes: list[Node], kinds: list[str]) -> Features:
    """Features of the node that dominates the kernel: its conv, pool or matmul if any."""
    main = 0
    for i, kind in enumerate(kinds):
        if kind in _MAIN:
            main = i
            break
    node, kind = nodes[main], kinds[main]
    if kind in _CONV:
        return _conv_features(graph, node)
    if kind in _POOL:
        return _pool_features(graph, node)
    if kind in _MATMUL:
        return _matmul_features(graph, node)
    if kind == "concat":
        return _concat_features(graph, node)
    shape = _first_input_shape(graph, node)
    if kind in _ROW_WISE and shape:  # work along the last axis, whatever the rank
        return {"ROWS": prod(shape[:-1]), "COLS": shape[-1]}
    features = _tensor_features(shape)
    if kind == "split":
        features["OUTPUTS"] = len(node.outputs)
    return features


def _shape(graph: Graph, name: str) -> list[int] | None:
    tensor = graph.tensors.get(name) if name else None
    return tensor.shape if tensor is not None else None


def _first_input_shape(graph: Graph, node: Node) -> list[int] | None:
    for name in node.inputs:
        tensor = graph.tensors.get(name) if name else None
        if tensor is not None and not tensor.constant:
            return tensor.shape
    return None


def _tensor_features(shape: list[int] | None) -> Features:
    """HW and CIN of an NCHW tensor; ROWS × COLS (innermost dim) of any other rank."""
    if shape is None:
        return {}
    if len(shape) == 4:
        return {"CIN": shape[1], "ALIGN": channel_alignment(shape[1]), **_spatial(shape[2:])}
    if not shape:
        return {"ROWS": 1, "COLS": 1}
    return {"ROWS": prod(shape[:-1]), "COLS": shape[-1]}


def _spatial(dims: list[int]) -> Features:
    """HW is the input height; a non-square input also gets H and W."""
    if not dims:
        return {}
    features: Features = {"HW": dims[0]}
    if len(dims) == 2 and dims[0] != dims[1]:
        features.update(H=dims[0], W=dims[1])
    return features


def _conv_features(graph: Graph, node: Node) -> Features:
    shape = _first_input_shape(graph, node)
    weight = _shape(graph, node.inputs[1]) if len(node.inputs) > 1 else None
    attrs = node.attrs
    group = attrs.get("group", 1)
    features: Features = {}
    if shape is not None:
        features = _spatial(shape[2:])
        features["CIN"] = shape[1]
    if weight is not None:
        # ConvTranspose weights are C_in × C_out/group × k …, Conv weights C_out × C_in/group × k …
        features["COUT"] = weight[1] * group if node.op == "ConvTranspose" else weight[0]
    kernel = attrs.get("kernel_shape") or (weight[2:] if weight is not None else None)
    if kernel:
        features["KERNEL_SIZE"] = kernel[0]
    features["STRIDES"] = (attrs.get("strides") or [1])[0]
    features["GROUPS"] = group
    if "CIN" in features and "COUT" in features:
        per_group = features["CIN_PER_GROUP"] = features["CIN"] // group
        # A depthwise conv blocks its channels, not its one channel per group.
        blocked = (features["CIN"], features["COUT"]) if per_group == 1 else (
            per_group, features["COUT"] // group)
        features["ALIGN"] = channel_alignment(*blocked)
    features["DILATION"] = (attrs.get("dilations") or [1])[0]
    return features


def channel_alignment(*channels: int) -> int:
    """The largest power of two up to :data:`ALIGN_MAX` that divides every count: runtimes
    block channels for their vector width, and a group's width off the block takes a slower
    path (onnxruntime, measured in RegNet variants: a 3×3 conv of 16 channels per group ran at
    twice the FLOP rate of one of 24). A tensor off the block also costs its neighbours:
    onnxruntime reorders it out of and back into the blocked layout, and in a profiled GhostNet
    a concat of two 12-channel 12×12 inputs took 1.4 times as long as one of two 48-channel
    inputs of the same size."""
    low = gcd(*channels)
    low &= -low  # the largest power of two dividing every count (0 when all are 0)
    return ALIGN_MAX if low == 0 or low > ALIGN_MAX else low


def _pool_features(graph: Graph, node: Node) -> Features:
    shape = _first_input_shape(graph, node)
    features = _tensor_features(shape)
    kernel = node.attrs.get("kernel_shape") or [1]
    features.update(KERNEL_SIZE=kernel[0], STRIDES=(node.attrs.get("strides") or [1])[0])
    return features


def _matmul_features(graph: Graph, node: Node) -> Features:
    """M × K times K × N, repeated BATCH times; an fc's K and N are also its CIN and COUT."""
    a = _shape(graph, node.inputs[0])
    b = _shape(graph, node.inputs[1]) if len(node.inputs) > 1 else None
    if a is None or b is None or not a or not b:
        return {}
    if node.op == "Gemm":
        m, k = (a[1], a[0]) if node.attrs.get("transA") else (a[0], a[1])
        n = b[0] if node.attrs.get("transB") else b[1]
        batch = 1
    else:
        a2 = [1] + a if len(a) == 1 else a
        m, k = a2[-2], a2[-1]
        n = b[-1] if len(b) > 1 else 1
        batch = prod(a2[:-2]) if len(a2) >= len(b) else prod(b[:-2])
    return {"M": m, "K": k, "N": n, "BATCH": batch, "CIN": k, "COUT": n}


def _concat_features(graph: Graph, node: Node) -> Features:
    shapes = [graph.tensors[i].shape for i in node.inputs if i and i in graph.tensors]
    axis = node.attrs.get("axis", 1)
    features = _tensor_features(shapes[0] if shapes else None)
    features["INPUTS"] = len(shapes)
    parts = []
    for n, shape in enumerate(shapes, 1):
        if shape is not None and -len(shape) <= axis < len(shape):
            features[f"CIN{n}"] = shape[axis]
            parts.append(shape[axis])
    if "ALIGN" in features:  # every part is blocked alike, or the runtime reorders around it
        features["ALIGN"] = channel_alignment(*parts)
    return features


def _add_cost_features(features: Features, nodes: list[Node]) -> None:
    """Totals over the member nodes (written in place: this runs for every kernel)."""
    flops = params = nbytes = 0
    for node in nodes:
        cost = node.cost
        if cost is not None:
            flops += cost.flops
            params += cost.params
            nbytes += cost.bytes_read + cost.bytes_written
    features["FLOPS"] = flops
    features["PARAMS"] = params
    features["BYTES"] = nbytes
    features["OPS"] = len(nodes)
