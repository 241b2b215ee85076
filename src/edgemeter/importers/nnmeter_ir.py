"""nn-Meter's IR graph: import it as a :class:`Graph`, and export a Graph back to it.

nn-Meter describes a model as a dict of nodes keyed by name::

    {"conv1": {"inbounds": ["input"], "outbounds": ["relu1"],
               "attr": {"type": "Conv2D", "input_shape": [[1, 32, 32, 3]],
                        "output_shape": [[1, 32, 32, 16]], "attr": {"strides": [1, 1], ...}}}}

Edges join nodes, not tensors; 4-D shapes are NHWC; only activations appear in ``input_shape``
(weights are implied by the attributes). Its TensorFlow converter writes TF op names and TF
attributes (``ksize``, ``weight_shape`` as [kh, kw, cin, cout], ``pads`` as [top, bottom, left,
right]); its ONNX converter writes ONNX op names with the ONNX attributes copied verbatim
(``kernel_shape``, ``pads`` as [top, left, bottom, right], ``group``, NCHW axes) next to NHWC
shapes. Both dialects are read here.

Supported types (nn-Meter type → edgemeter/ONNX op):

=============================================================  ===============================
Conv2D, Conv, DepthwiseConv2dNative                            Conv (weights [COUT, CIN/g, kh, kw])
Conv2DBackpropInput, ConvTranspose                             ConvTranspose
MatMul, Gemm                                                   MatMul / Gemm (weights from shapes)
FusedBatchNorm(V2/V3), BatchNormalization                      BatchNormalization
BiasAdd, Add, AddV2 / Sub / Mul / Div, RealDiv / Pow, ...      Add / Sub / Mul / Div / Pow ...
Relu, Relu6 (→ Clip 0..6), Clip, Sigmoid, Tanh, Hswish,        Relu, Clip, Sigmoid, Tanh,
HardSwish, Hsigmoid, HardSigmoid, LeakyRelu, Elu, Exp, ...     HardSwish, HardSigmoid, ...
MaxPool(V2), AvgPool, AveragePool                              MaxPool / AveragePool
GlobalAveragePool; Mean, ReduceMean                            GlobalAveragePool; ReduceMean
ConcatV2, Concat / Split, SplitV / Slice, StridedSlice         Concat / Split / Slice
Reshape, Flatten, Transpose, Squeeze, ExpandDims, Pad,         same ONNX names (ExpandDims →
MirrorPad, Softmax, ResizeBilinear, ResizeNearestNeighbor      Unsqueeze, Resize* → Resize)
Placeholder                                                    a graph input
Const, Identity (nn-Meter strips them; if present)             dropped / passed through
=============================================================  ===============================

An unknown type is kept as an op of that name, with a warning; a node without a type (nn-Meter
writes ``"attr": {}`` where it lost the shapes) becomes op ``Unknown``. Where the IR is silent,
these defaults apply and are documented here rather than guessed per file:

- ONNX-style Conv/ConvTranspose/Gemm have a bias (exported models fold BatchNorm into one);
  TF-style ones do not (their bias is a separate BiasAdd node). An ``attr.bias`` flag overrides.
- A binary op with fewer inbound nodes than operands reads a constant: its shape comes from an
  extra ``input_shape`` entry if there is one, else it is [C] for BiasAdd and [1] otherwise.
- Nodes with no inbound node and no Placeholder read a graph input; inputs of equal shape are
  taken to be the same input (nn-Meter's ONNX converter drops input nodes, so this is unknowable).
- An empty shape means "unknown" (nn-Meter's convention), a missing batch dimension becomes 1.
- A node with several outputs (Split) whose ``outbounds`` has one entry per output feeds its
  i-th output to its i-th outbound node; otherwise every consumer reads output 0, with a warning.
  A node that reads several outputs of one node gets them in output order: node-level edges
  cannot say otherwise (shapes and costs do not depend on it).

The export writes the ONNX dialect, as nn-Meter's own ONNX converter would for the same model,
plus ``Placeholder`` nodes for the graph inputs (which nn-Meter ignores) and, on convolutions,
``weight_shape`` (TF layout, as nn-Meter reads it) and ``bias`` so that a round trip keeps the
parameter count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from edgemeter.converters.layout import same_pads, to_nchw, to_nhwc
from edgemeter.errors import ModelError
from edgemeter.graph import Graph, Node, Tensor

# nn-Meter types (both dialects) → ONNX op; a type missing here is kept as its own op.
TYPE_MAP = {
    "Conv2D": "Conv", "Conv": "Conv", "DepthwiseConv2dNative": "Conv",
    "Conv2DBackpropInput": "ConvTranspose", "ConvTranspose": "ConvTranspose",
    "MatMul": "MatMul", "Gemm": "Gemm",
    "FusedBatchNorm": "BatchNormalization", "FusedBatchNormV2": "BatchNormalization",
    "FusedBatchNormV3": "BatchNormalization", "BatchNormalization": "BatchNormalization",
    "BiasAdd": "Add", "Add": "Add", "AddV2": "Add", "Sub": "Sub", "Subtract": "Sub",
    "Mul": "Mul", "Multiply": "Mul", "Div": "Div", "RealDiv": "Div", "Pow": "Pow",
    "Maximum": "Max", "Max": "Max", "Minimum": "Min", "Min": "Min",
    "Relu": "Relu", "Relu6": "Clip", "Clip": "Clip", "Sigmoid": "Sigmoid", "Tanh": "Tanh",
    "Hswish": "HardSwish", "HardSwish": "HardSwish", "Hsigmoid": "HardSigmoid",
    "HardSigmoid": "HardSigmoid", "LeakyRelu": "LeakyRelu", "Elu": "Elu", "Selu": "Selu",
    "Exp": "Exp", "Sqrt": "Sqrt", "Rsqrt": "Reciprocal", "Erf": "Erf",
    "MaxPool": "MaxPool", "MaxPoolV2": "MaxPool", "AvgPool": "AveragePool",
    "AveragePool": "AveragePool", "GlobalAveragePool": "GlobalAveragePool",
    "Mean": "ReduceMean", "ReduceMean": "ReduceMean",
    "ConcatV2": "Concat", "Concat": "Concat", "Split": "Split", "SplitV": "Split",
    "Slice": "Slice", "StridedSlice": "Slice", "Reshape": "Reshape", "Flatten": "Flatten",
    "Transpose": "Transpose", "Squeeze": "Squeeze", "ExpandDims": "Unsqueeze",
    "Unsqueeze": "Unsqueeze", "Pad": "Pad", "PadV2": "Pad", "MirrorPad": "Pad",
    "Softmax": "Softmax", "ResizeBilinear": "Resize", "ResizeNearestNeighbor": "Resize",
    "Resize": "Resize", "LayerNormalization": "LayerNormalization",
}
# Types whose attributes follow TensorFlow conventions (NHWC axes, [t, b, l, r] pads).
TF_TYPES = {"Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "MatMul", "MaxPool",
            "MaxPoolV2", "AvgPool", "Mean", "ConcatV2", "SplitV", "StridedSlice", "ExpandDims",
            "PadV2", "MirrorPad", "BiasAdd", "AddV2", "RealDiv", "Relu6", "Hswish",
            "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"}
BINARY = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"}
INPUT_TYPES = {"Placeholder"}
DROPPED_TYPES = {"Const", "Identity", "NoOp"}


# -- import -----------------------------------------------------------------------------------
@dataclass
class _Op:
    """One nn-Meter node being translated: what the per-op rules read and fill in."""

    name: str
    type: str
    attr: dict
    in_shapes: list[list[int] | None]   # NCHW, of the activation inputs
    declared: list[list[int] | None]    # the node's own input_shape (may list constants too)
    out_shapes: list[list[int] | None]
    tf: bool
    n_inbounds: int

    def x(self, i: int = 0) -> list[int]:
        shape = self.in_shapes[i] if i < len(self.in_shapes) else None
        if shape is None:
            raise _Unknown
        return shape

    def y(self, i: int = 0) -> list[int]:
        shape = self.out_shapes[i] if i < len(self.out_shapes) else None
        if shape is None:
            raise _Unknown
        return shape

    def pair(self, *keys: str, default: int) -> list[int]:
        """A 2-D spatial attribute under any of ``keys``; TF writes 4-D NHWC versions."""
        for key in keys:
            if key in self.attr and self.attr[key] is not None:
                value = self.attr[key]
                value = [value, value] if isinstance(value, int) else list(value)
                return value[1:3] if len(value) == 4 else value
        return [default, default]


class _Unknown(Exception):
    """A shape a rule needs is missing; the node keeps only what it has."""


# Per-op rules: fill attrs and return the constant inputs (suffix, shape, value) that follow the
# activation inputs, in ONNX input order.
Const = tuple[str, list[int], list | None]
Rule = Callable[[_Op, dict], list[Const]]


def _spatial_pads(op: _Op, kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
    """ONNX pads [top, left, bottom, right] from whichever form the node carries."""
    pads = op.attr.get("pads")
    if isinstance(pads, list) and len(pads) == 4:
        return [pads[0], pads[2], pads[1], pads[3]] if op.tf else list(pads)
    padding = op.attr.get("padding", "VALID")
    padding = padding.decode() if isinstance(padding, bytes) else str(padding)
    if padding.upper() != "SAME":
        return [0, 0, 0, 0]
    return same_pads(op.x()[2:], kernel, strides, dilations)


def _bias(op: _Op) -> bool:
    return bool(op.attr.get("bias", not op.tf))


def _conv(op: _Op, attrs: dict) -> list[Const]:
    cin, cout = op.x()[1], op.y()[1]
    weight = op.attr.get("weight_shape")  # TF layout [kh, kw, cin/g (or cin), cout (or mult)]
    kernel = op.pair("kernel_shape", "ks", default=0)
    if kernel == [0, 0]:
        kernel = list(weight[:2]) if weight else [1, 1]
    if op.type == "DepthwiseConv2dNative":
        group = cin
    elif "group" in op.attr:
        group = int(op.attr["group"])
    else:
        group = cin // weight[2] if weight and op.tf and weight[2] else 1
    strides, dilations = op.pair("strides", default=1), op.pair("dilations", default=1)
    attrs.update(kernel_shape=kernel, strides=strides, dilations=dilations, group=group,
                 pads=_spatial_pads(op, kernel, strides, dilations))
    if op.type in ("ConvTranspose", "Conv2DBackpropInput"):
        consts = [("W", [cin, cout // group, *kernel], None)]
    else:
        consts = [("W", [cout, cin // group, *kernel], None)]
    return consts + ([("B", [cout], None)] if _bias(op) else [])


def _gemm(op: _Op, attrs: dict) -> list[Const]:
    k, n = op.x()[-1], op.y()[-1]
    if op.n_inbounds >= 2 or len(op.in_shapes) >= 2:
        return []  # both operands are activations (attention)
    trans_b = int(op.attr.get("transB", op.attr.get("transpose_b", 0)))
    if op.type == "Gemm":
        attrs["transB"] = trans_b
    consts = [("W", [n, k] if trans_b else [k, n], None)]
    return consts + ([("B", [n], None)] if op.type == "Gemm" and _bias(op) else [])


def _batchnorm(op: _Op, attrs: dict) -> list[Const]:
    attrs["epsilon"] = float(op.attr.get("epsilon", 1e-5))
    c = op.x()[1]
    return [(s, [c], None) for s in ("scale", "B", "mean", "var")]


def _binary(op: _Op, attrs: dict) -> list[Const]:
    if op.n_inbounds >= 2:
        return []
    extra = [s for s in op.declared[op.n_inbounds:] if s]
    if extra:
        shape = extra[0]
    elif op.type == "BiasAdd":
        shape = [op.y()[1]]
    else:
        shape = [1]
    return [("C", shape, None)]


def _clip(op: _Op, attrs: dict) -> list[Const]:
    if op.type == "Relu6":
        low, high = 0.0, 6.0
    else:
        low, high = op.attr.get("min"), op.attr.get("max")
    if low is None and high is None:
        return []
    return [("min", [], None if low is None else [float(low)]),
            ("max", [], None if high is None else [float(high)])]


def _pool(op: _Op, attrs: dict) -> list[Const]:
    kernel = op.pair("kernel_shape", "ksize", "ks", default=1)
    strides = op.pair("strides", default=1)
    attrs.update(kernel_shape=kernel, strides=strides,
                 pads=_spatial_pads(op, kernel, strides, [1, 1]))
    return []


def _reduce_axes(op: _Op) -> tuple[list[int], int]:
    """Axes (NCHW) and keepdims of a reduction, read from the shapes, which are unambiguous,
    unlike TF's NHWC axes hidden in a stripped Const."""
    x, y = op.x(), op.y()
    if len(x) == len(y):
        return [i for i, (a, b) in enumerate(zip(x, y)) if a != b and b == 1], 1
    axes, j = [], 0
    for i, size in enumerate(x):  # the kept dims of x appear in y in order
        if j < len(y) and y[j] == size:
            j += 1
        else:
            axes.append(i)
    return axes, 0


def _reduce(op: _Op, attrs: dict) -> list[Const]:
    if op.tf or "axes" not in op.attr:
        attrs["axes"], attrs["keepdims"] = _reduce_axes(op)
    else:
        attrs["axes"], attrs["keepdims"] = list(op.attr["axes"]), int(op.attr.get("keepdims", 1))
    return []


def _changed_axis(shape_in: list[int], shape_out: list[int]) -> int | None:
    """The one dim two shapes differ in: the concat/split axis, whatever the dialect says."""
    diffs = [i for i, (a, b) in enumerate(zip(shape_in, shape_out)) if a != b]
    return diffs[0] if len(diffs) == 1 else None


def _axis_attr(op: _Op) -> int:
    """An ``axis`` attribute in NCHW terms (TF axes index NHWC dims)."""
    axis = int(op.attr.get("axis", 1 if not op.tf else -1))
    if op.tf and len(op.y()) == 4:
        axis = [0, 2, 3, 1][axis % 4]
    return axis


def _concat(op: _Op, attrs: dict) -> list[Const]:
    axis = _changed_axis(op.x(), op.y())
    attrs["axis"] = _axis_attr(op) if axis is None else axis
    return []


def _split(op: _Op, attrs: dict) -> list[Const]:
    axis = _changed_axis(op.x(), op.y())
    axis = _axis_attr(op) if axis is None else axis
    attrs["axis"] = axis
    sizes = [op.y(i)[axis] for i in range(len(op.out_shapes))]
    return [("split", [len(sizes)], sizes)]


def _reshape(op: _Op, attrs: dict) -> list[Const]:
    return [("shape", [len(op.y())], op.y())]


def _flatten(op: _Op, attrs: dict) -> list[Const]:
    attrs["axis"] = int(op.attr.get("axis", 1))
    return []


def _pad(op: _Op, attrs: dict) -> list[Const]:
    x, y = op.x(), op.y()
    diff = [b - a for a, b in zip(x, y)]
    pads = [d // 2 for d in diff] + [d - d // 2 for d in diff]
    if op.type == "MirrorPad":
        attrs["mode"] = "reflect"
    return [("pads", [len(pads)], pads)]


def _resize(op: _Op, attrs: dict) -> list[Const]:
    mode = op.attr.get("mode", "linear" if op.type == "ResizeBilinear" else "nearest")
    attrs["mode"] = mode.decode() if isinstance(mode, bytes) else mode
    return [("roi", [0], None), ("scales", [0], None), ("sizes", [len(op.y())], op.y())]


def _softmax(op: _Op, attrs: dict) -> list[Const]:
    attrs["axis"] = -1 if op.tf else int(op.attr.get("axis", -1))
    return []


def _transpose(op: _Op, attrs: dict) -> list[Const]:
    if "perm" in op.attr and not op.tf:
        attrs["perm"] = list(op.attr["perm"])
    return []


def _copy_attrs(op: _Op, attrs: dict) -> list[Const]:
    """Ops with no weights: keep scalar attributes (alpha, epsilon …) as they are."""
    attrs.update({k: v for k, v in op.attr.items() if isinstance(v, (int, float, str, list))})
    return []


RULES: dict[str, Rule] = {
    "Conv": _conv, "ConvTranspose": _conv, "MatMul": _gemm, "Gemm": _gemm,
    "BatchNormalization": _batchnorm, "Clip": _clip, "MaxPool": _pool, "AveragePool": _pool,
    "ReduceMean": _reduce, "Concat": _concat, "Split": _split, "Reshape": _reshape,
    "Flatten": _flatten, "Pad": _pad, "Resize": _resize, "Softmax": _softmax,
    "Transpose": _transpose, **{op: _binary for op in BINARY},
}


def import_nnmeter_ir(data: dict, name: str = "nnmeter") -> Graph:
    """Translate an nn-Meter IR dict into a Graph (ONNX op names, NCHW shapes, weight shapes)."""
    nodes = _validate(data)
    warnings: list[str] = []
    tensors: dict[str, Tensor] = {}
    graph_inputs: list[str] = []
    implicit_inputs: dict[tuple, str] = {}

    def add_input(tensor_name: str, shape: list[int] | None) -> str:
        tensors[tensor_name] = Tensor(tensor_name, shape)
        graph_inputs.append(tensor_name)
        return tensor_name

    # Output tensors per node, first, so that the dict need not be in topological order.
    outputs: dict[str, list[str]] = {}
    for node_name, node in nodes.items():
        kind = node["attr"].get("type")
        out_shapes = [_shape(s, node_name, warnings) for s in node["attr"].get("output_shape", [])]
        if kind in INPUT_TYPES:
            shape = out_shapes[0] if out_shapes else _shape(
                node["attr"].get("attr", {}).get("shape"), node_name, warnings)
            outputs[node_name] = [add_input(node_name, shape)]
        elif kind not in DROPPED_TYPES:
            names = [node_name] if len(out_shapes) <= 1 else [
                f"{node_name}:{i}" for i in range(len(out_shapes))]
            for tensor_name, shape in zip(names, out_shapes or [None]):
                tensors[tensor_name] = Tensor(tensor_name, shape)
            outputs[node_name] = names

    graph_nodes: list[Node] = []
    for node_name, node in nodes.items():
        attr = node["attr"]
        kind = attr.get("type")
        if node_name not in outputs or kind in INPUT_TYPES:
            continue
        declared = [_shape(s, node_name, warnings) for s in attr.get("input_shape", [])]
        sources = [_through_identity(nodes, s) for s in _inbounds(node)]
        sources = [s for s in sources if s in outputs]
        inputs = [_source_tensor(nodes, outputs, src, node_name, occurrence, warnings)
                  for occurrence, src in _occurrences(sources)]
        # Activations that come from no node are graph inputs (shared by shape, see docstring);
        # a binary op's extra operand is a constant instead.
        missing = declared[len(inputs):]
        if TYPE_MAP.get(kind) in BINARY:
            missing = [] if inputs else missing[:1]
        for shape in missing:
            key = tuple(shape or ())
            if key not in implicit_inputs:
                implicit_inputs[key] = add_input(
                    "input" if not implicit_inputs else f"input_{len(implicit_inputs)}", shape)
            inputs.append(implicit_inputs[key])
        for tensor_name, shape in zip(inputs, declared):
            if tensors[tensor_name].shape is None and shape is not None:
                tensors[tensor_name].shape = shape
        graph_nodes.append(_translate(node_name, kind, attr, inputs, outputs[node_name],
                                      declared, tensors, warnings))

    consumed = {t for n in graph_nodes for t in n.inputs}
    graph_outputs = [t for n in graph_nodes for t in n.outputs if t not in consumed]
    graph = Graph(name, graph_nodes, tensors, graph_inputs, graph_outputs, warnings)
    graph.sort()
    return graph


def _inbounds(node: dict) -> list[str]:
    return node.get("inbounds", [])


def _through_identity(nodes: dict, src: str) -> str:
    """The node an Identity chain starting at ``src`` forwards (nn-Meter normally strips them)."""
    seen = set()
    while nodes[src]["attr"].get("type") == "Identity" and _inbounds(nodes[src]):
        if src in seen:
            raise ModelError(f"nn-Meter node '{src}': Identity nodes form a cycle")
        seen.add(src)
        src = _inbounds(nodes[src])[0]
    return src


def _occurrences(sources: list[str]) -> list[tuple[int, str]]:
    """Pair each inbound with how many times the same node was listed before it."""
    seen: dict[str, int] = {}
    result = []
    for src in sources:
        result.append((seen.get(src, 0), src))
        seen[src] = seen.get(src, 0) + 1
    return result


def _source_tensor(nodes: dict, outputs: dict[str, list[str]], src: str, consumer: str,
                   occurrence: int, warnings: list[str]) -> str:
    names = outputs[src]
    if len(names) == 1:
        return names[0]
    outbounds = nodes[src].get("outbounds", [])
    slots = [i for i, c in enumerate(outbounds) if c == consumer]
    if len(outbounds) == len(names) and occurrence < len(slots):
        return names[slots[occurrence]]
    warnings.append(f"node '{consumer}' reads multi-output node '{src}': cannot tell which "
                    "output, assumed the first")
    return names[0]


def _translate(name: str, kind: str | None, attr: dict, inputs: list[str], outputs: list[str],
               declared: list, tensors: dict[str, Tensor], warnings: list[str]) -> Node:
    if kind is None:
        warnings.append(f"node '{name}' has no type (nn-Meter lost its shapes); kept as 'Unknown'")
        return Node(name, "Unknown", inputs, outputs)
    op_type = TYPE_MAP.get(kind)
    if op_type is None:
        warnings.append(f"node '{name}': nn-Meter type '{kind}' has no mapping; kept as is")
        return Node(name, kind, inputs, outputs, _plain(attr.get("attr", {})))
    op = _Op(name, kind, attr.get("attr") or {}, [tensors[t].shape for t in inputs], declared,
             [tensors[t].shape for t in outputs], kind in TF_TYPES, len(inputs))
    attrs: dict[str, Any] = {}
    try:
        consts = RULES.get(op_type, _copy_attrs)(op, attrs)
    except _Unknown:
        warnings.append(f"node '{name}' ({kind}): shapes missing, its weights are unknown")
        consts = []
    except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError) as exc:
        raise ModelError(f"nn-Meter node '{name}' ({kind}): bad attributes ({exc!r})") from None
    for suffix, shape, value in consts:
        tensor_name = f"{name}/{suffix}"
        dtype = "int64" if suffix in ("shape", "pads", "sizes", "split") else "float32"
        tensors[tensor_name] = Tensor(tensor_name, shape, dtype, constant=True, value=value)
        inputs = inputs + [tensor_name]
    return Node(name, op_type, inputs, outputs, attrs)


def _plain(attr: dict) -> dict:
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in attr.items()}


def _shape(raw: Any, node: str, warnings: list[str]) -> list[int] | None:
    """NHWC shape → NCHW; [] or None mean unknown; an unknown batch dimension becomes 1."""
    if not raw:
        return None
    if not isinstance(raw, list) or not all(d is None or isinstance(d, int) for d in raw):
        raise ModelError(f"nn-Meter node '{node}': bad shape {raw!r} (expected a list of ints)")
    dims = list(raw)
    if dims[0] is None or dims[0] < 1:
        dims[0] = 1
    if any(d is None or d < 0 for d in dims):
        warnings.append(f"node '{node}': shape {raw} has unknown dimensions")
        return None
    return to_nchw(dims)


def _validate(data: Any) -> dict[str, dict]:
    if not isinstance(data, dict) or not data:
        raise ModelError("not an nn-Meter IR: expected a non-empty dict of nodes")
    for name, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("attr"), dict):
            raise ModelError(f"not an nn-Meter IR: node '{name}' has no 'attr' dict")
        for key in ("inbounds", "outbounds"):
            if not isinstance(node.get(key, []), list):
                raise ModelError(f"not an nn-Meter IR: node '{name}' has a non-list '{key}'")
        missing = [s for s in _inbounds(node) if s not in data]
        if missing:
            raise ModelError(f"nn-Meter node '{name}' has inbound '{missing[0]}', "
                             "which is not a node")
    return data


# -- export -----------------------------------------------------------------------------------
def export_nnmeter_ir(graph: Graph) -> dict:
    """Write ``graph`` as nn-Meter IR in its ONNX dialect (NHWC shapes, activations only)."""
    producer = {t: n.name for n in graph.nodes for t in n.outputs}
    result: dict[str, dict] = {}
    for name in graph.inputs:
        shape = _nhwc(graph.tensors[name])
        result[name] = {"inbounds": [], "outbounds": _consumers(graph, [name]),
                        "attr": {"type": "Placeholder", "input_shape": [],
                                 "output_shape": [shape], "attr": {"shape": shape}}}
        producer[name] = name
    for node in graph.nodes:
        acts = graph.activation_inputs(node)
        result[node.name] = {
            "inbounds": [producer[t.name] for t in acts if t.name in producer],
            "outbounds": _consumers(graph, node.outputs),
            "attr": {"type": node.op, "input_shape": [_nhwc(t) for t in acts],
                     "output_shape": [_nhwc(graph.tensors[t]) for t in node.outputs],
                     "attr": _export_attrs(graph, node)},
        }
    return result


def _nhwc(tensor: Tensor) -> list[int]:
    return to_nhwc(tensor.shape) if tensor.shape is not None else []


def _consumers(graph: Graph, outputs: list[str]) -> list[str]:
    return [c.name for t in outputs for c in graph.consumers(t)]


def _export_attrs(graph: Graph, node: Node) -> dict:
    attrs = {k: v for k, v in node.attrs.items() if isinstance(v, (int, float, str, list))}
    consts = [graph.tensors[t] for t in node.inputs[1:] if t and graph.tensors[t].constant]
    if node.op in ("Conv", "ConvTranspose") and len(node.inputs) > 1:
        weight = graph.tensors[node.inputs[1]].shape
        if weight and len(weight) == 4:
            attrs.setdefault("kernel_shape", weight[2:])
            # TF layout [kh, kw, in, out]: nn-Meter reads the kernel size from its first two.
            attrs["weight_shape"] = [*weight[2:], weight[1], weight[0]]
        attrs["bias"] = len(node.inputs) > 2 and bool(node.inputs[2])
    elif node.op == "Gemm":
        attrs["bias"] = len(node.inputs) > 2 and bool(node.inputs[2])
    elif node.op == "Clip":
        for key, tensor in zip(("min", "max"), consts):
            if tensor.value is not None:
                attrs[key] = _scalar(tensor.value)
    return attrs


def _scalar(value: Any) -> Any:
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value
