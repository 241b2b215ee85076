"""Per-node cost: FLOPs (a multiply-accumulate counts as 2), parameters, bytes read and written.

Each op family has one rule function that returns the node's FLOPs from its shapes and
attributes; :data:`RULES` maps op types to rules. Counting conventions:

- Conv / ConvTranspose / Gemm / MatMul / Einsum: 2 per MAC, plus 1 per output for a bias.
  Dilation does not change the count (same taps per output); groups do (``W`` is
  ``[Cout, Cin/groups, k…]``).
- Pooling: one op per window element per output; global pooling one per input element.
- BatchNormalization (inference): 2 per element (scale, shift). Layer/Instance/Group norm:
  5 per element for the statistics and normalisation, plus 1 each for scale and bias.
- Activations and elementwise ops: a fixed count per output element (:data:`PER_ELEMENT`),
  counting exp/log/tanh/erf as 1.
- Softmax / LogSoftmax: 5 per element (max, subtract, exp, sum, divide).
- Reductions: 1 per input element (+1 per output for a mean).
- Resize: nearest 0; linear 2 per tap, 2^d taps per output for d resized axes; cubic 4^d taps.
- Data movement (Concat, Reshape, Gather, Transpose, Pad, Cast …): 0 FLOPs; bytes still count.

Params are the elements of a node's weight inputs: constant inputs that are neither int64 (ONNX's
type for shapes, axes and indices) nor scalars (the 3 in ``x + 3``, clip bounds), and not the
scales of a Resize. An op without a rule, or whose shapes are unknown, gets 0 FLOPs and the bytes
of the tensors whose shapes are known, with ``exact=False``, and one warning per op type.
"""
from __future__ import annotations

from math import prod
from typing import Callable

from edgemeter.graph import DTYPE_SIZES, Cost, Graph, Node


class UnknownShape(Exception):
    """A rule needs a shape the graph does not have."""


class _View:
    """What a rule sees of a node: its shapes and attributes."""

    def __init__(self, graph: Graph, node: Node):
        self.graph, self.node = graph, node

    def shape(self, name: str) -> list[int]:
        tensor = self.graph.tensors.get(name) if name else None
        if tensor is None or tensor.shape is None:
            raise UnknownShape(name)
        return tensor.shape

    def input(self, i: int = 0) -> list[int]:
        return self.shape(self.node.inputs[i] if i < len(self.node.inputs) else "")

    def output(self, i: int = 0) -> list[int]:
        return self.shape(self.node.outputs[i])

    def has_input(self, i: int) -> bool:
        return i < len(self.node.inputs) and bool(self.node.inputs[i])

    def attr(self, key: str, default=None):
        return self.node.attrs.get(key, default)


Rule = Callable[[_View], int]


# -- rules, one per family -----------------------------------------------------------------------

# Where the weight and bias sit among the inputs of each convolution flavour.
_CONV_WEIGHT = {"Conv": (1, 2), "ConvInteger": (1, None), "QLinearConv": (3, 8)}


def _conv(v: _View) -> int:
    w, b = _CONV_WEIGHT[v.node.op]
    out = prod(v.output())
    return 2 * out * prod(v.input(w)[1:]) + (out if b is not None and v.has_input(b) else 0)


def _conv_transpose(v: _View) -> int:
    # Every input element scatters into Cout/groups × k… outputs.
    macs = prod(v.input(0)) * prod(v.input(1)[1:])
    return 2 * macs + (prod(v.output()) if v.has_input(2) else 0)


def _matmul(v: _View) -> int:
    # Batched, broadcast and 1-D operands alike: every output element is a K-long dot product.
    return 2 * prod(v.output()) * v.input(0)[-1]


def _gemm(v: _View) -> int:
    a = v.input(0)
    k = a[0] if v.attr("transA", 0) else a[-1]
    out = prod(v.output())
    bias = out if v.has_input(2) and v.attr("beta", 1.0) != 0 else 0
    return 2 * out * k + bias


def _einsum(v: _View) -> int:
    equation = str(v.attr("equation", "")).replace(" ", "")
    operands = equation.split("->")[0].split(",")
    if "..." in equation or len(operands) != len(v.node.inputs):
        raise UnknownShape("einsum with ellipsis")
    sizes: dict[str, int] = {}
    for i, letters in enumerate(operands):
        sizes.update(zip(letters, v.input(i)))
    # A MAC per operand pair for every combination of the indices involved; one operand alone
    # (a sum or transpose) is one op per element.
    pairs = len(operands) - 1
    return 2 * pairs * prod(sizes.values()) if pairs else prod(sizes.values())


def _pool(v: _View) -> int:
    return prod(v.output()) * prod(v.attr("kernel_shape", [1]))


def _per_input(v: _View) -> int:
    return prod(v.input())


def _per_element(flops: int) -> Rule:
    def rule(v: _View) -> int:
        # Variadic ops (Sum, Max, Mean …) do one op per extra operand.
        operands = max(len([i for i in v.node.inputs if i]) - 1, 1) if v.node.op in _VARIADIC else 1
        return flops * operands * prod(v.output())
    return rule


def _normalization(per_element: int) -> Rule:
    def rule(v: _View) -> int:
        affine = sum(v.has_input(i) for i in (1, 2))
        return (per_element + affine) * prod(v.input())
    return rule


def _batch_norm(v: _View) -> int:
    return 2 * prod(v.input())


def _softmax(v: _View) -> int:
    return 5 * prod(v.input())


def _reduce(v: _View) -> int:
    extra = prod(v.output()) if v.node.op in ("ReduceMean", "ReduceL2", "ReduceLogSumExp") else 0
    return prod(v.input()) + extra


def _resize(v: _View) -> int:
    mode = str(v.attr("mode", "nearest"))
    if mode == "nearest":
        return 0
    resized = sum(a != b for a, b in zip(v.input(), v.output()))
    taps = (4 if mode == "cubic" else 2) ** resized
    return 2 * taps * prod(v.output())


def _zero(v: _View) -> int:
    return 0


# FLOPs per output element; exp, log, tanh, erf and sqrt count as one.
PER_ELEMENT = {
    # arithmetic, comparison, logic
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean",
                     "Neg", "Abs", "Sign", "Reciprocal", "Floor", "Ceil", "Round", "Sqrt", "Exp",
                     "Log", "Erf", "Tanh", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh",
                     "Cosh", "Asinh", "Acosh", "Atanh", "Equal", "Greater", "GreaterOrEqual",
                     "Less", "LessOrEqual", "And", "Or", "Xor", "Not", "Where", "IsNaN", "IsInf",
                     "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot", "Relu",
                     "CumSum"), 1),
    "Clip": 2,               # max, min
    "LeakyRelu": 2,          # compare, multiply
    "PRelu": 2,
    "ThresholdedRelu": 2,
    "Shrink": 2,
    "Softsign": 3,           # abs, add, divide
    "Softplus": 3,           # exp, add, log
    "Elu": 4,                # compare, exp, subtract, multiply
    "Celu": 4,
    "Selu": 5,
    "Sigmoid": 4,            # negate, exp, add, divide
    "HardSigmoid": 4,        # multiply, add, min, max
    "HardSwish": 5,          # hard sigmoid, multiply
    "Mish": 5,               # exp, add, log (softplus), tanh, multiply
    "Gelu": 5,               # divide, erf, add, multiply, multiply
    "QuantizeLinear": 2,     # divide by scale, add zero point (rounding, saturation free)
    "DequantizeLinear": 2,
}
_VARIADIC = {"Sum", "Mean", "Max", "Min"}

DATA_MOVEMENT = (
    "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND", "ScatterND",
    "ScatterElements", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Pad", "Expand",
    "Tile", "Cast", "CastLike", "DepthToSpace", "SpaceToDepth", "Identity", "Dropout", "Shape",
    "Size", "ConstantOfShape", "Range", "ReverseSequence", "Trilu", "EyeLike", "OneHot",
    "NonZero", "Compress", "Constant",
)

RULES: dict[str, Rule] = {
    **dict.fromkeys(_CONV_WEIGHT, _conv),
    "ConvTranspose": _conv_transpose,
    **dict.fromkeys(("MatMul", "MatMulInteger", "QLinearMatMul"), _matmul),
    "Gemm": _gemm,
    "Einsum": _einsum,
    **dict.fromkeys(("MaxPool", "AveragePool", "LpPool"), _pool),
    **dict.fromkeys(("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"), _per_input),
    "BatchNormalization": _batch_norm,
    **dict.fromkeys(("LayerNormalization", "InstanceNormalization", "GroupNormalization"),
                    _normalization(5)),
    "MeanVarianceNormalization": _normalization(5),
    **dict.fromkeys(("Softmax", "LogSoftmax"), _softmax),
    "Hardmax": _per_input,
    **dict.fromkeys(("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
                     "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                     "ReduceSumSquare", "ArgMax", "ArgMin", "TopK"), _reduce),
    **dict.fromkeys(("Resize", "Upsample"), _resize),
    **{op: _per_element(flops) for op, flops in PER_ELEMENT.items()},
    **dict.fromkeys(DATA_MOVEMENT, _zero),
}

# Constant inputs that configure an op rather than weigh it (besides int64 ones and scalars).
_CONTROL_INPUTS = {"Resize": {1, 2}, "Upsample": {1}}


# -- annotation --------------------------------------------------------------------------------

def node_cost(graph: Graph, node: Node) -> Cost:
    """The cost of one node; ``exact`` is False when it has no rule or unknown shapes."""
    # One pass over the inputs (bytes, and weights among them) and one over the outputs: every
    # prediction from a graph annotates it anew, so this runs for each node of each model.
    tensors = graph.tensors
    control = _CONTROL_INPUTS.get(node.op, ())
    known = True
    params = bytes_read = bytes_written = 0
    for i, name in enumerate(node.inputs):
        if not name:
            continue
        tensor = tensors[name]
        if tensor.shape is None:
            known = False
            continue
        size = prod(tensor.shape)
        bytes_read += size * DTYPE_SIZES.get(tensor.dtype, 4)
        if tensor.constant and tensor.dtype != "int64" and i not in control and size > 1:
            params += size
    for name in node.outputs:
        if not name:
            continue
        tensor = tensors[name]
        if tensor.shape is None:
            known = False
        else:
            bytes_written += prod(tensor.shape) * DTYPE_SIZES.get(tensor.dtype, 4)
    cost = Cost(0, params, bytes_read, bytes_written, exact=False)
    rule = RULES.get(node.op)
    if rule is None or not known:
        return cost
    try:
        cost.flops = rule(_View(graph, node))
    except UnknownShape:
        return cost
    except (IndexError, TypeError, ValueError):
        return cost  # malformed attributes or ranks: keep the bytes, say it is not exact
    cost.exact = True
    return cost


def annotate(graph: Graph) -> Graph:
    """Set ``node.cost`` on every node; warn once per op type about costs that are not exact."""
    no_rule: dict[str, int] = {}
    no_shape: dict[str, int] = {}
    for node in graph.nodes:
        node.cost = node_cost(graph, node)
        if not node.cost.exact:
            bucket = no_rule if node.op not in RULES else no_shape
            bucket[node.op] = bucket.get(node.op, 0) + 1
    for op, count in sorted(no_rule.items()):
        _warn(graph, f"no cost rule for {op} ({count} node{'s' * (count > 1)}): "
                     "counted its bytes only")
    for op, count in sorted(no_shape.items()):
        _warn(graph, f"{op} ({count} node{'s' * (count > 1)}): shapes unknown, cost approximate")
    return graph


def _warn(graph: Graph, message: str) -> None:
    if message not in graph.warnings:
        graph.warnings.append(message)
