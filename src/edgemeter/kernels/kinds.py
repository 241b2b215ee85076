"""Op kinds: the coarse classes of ONNX ops that fusion rules and kernel types are written in.

The one home for the ONNX op → kind table. A kind depends on attributes and shapes for a few ops
(a grouped Conv can be depthwise, a Clip can be a ReLU6, a MatMul with a constant weight is a
fully-connected layer), so :func:`node_kind` looks at the node in its graph.
"""
from __future__ import annotations

from edgemeter.graph import Graph, Node

# Kinds whose ops have no dedicated kernel type land in these generic kernels.
GENERIC_KINDS = ("elementwise", "activation", "reduce", "matmul", "data-movement", "other")

_TABLE: dict[str, str] = {
    # convolutions and dense layers (refined by shape in node_kind)
    "Conv": "conv", "ConvInteger": "conv", "QLinearConv": "conv",
    "ConvTranspose": "convtranspose",
    "Gemm": "fc", "MatMul": "matmul", "MatMulInteger": "matmul", "QLinearMatMul": "matmul",
    "Einsum": "matmul",
    # pooling
    "MaxPool": "maxpool", "AveragePool": "avgpool", "LpPool": "avgpool",
    "GlobalAveragePool": "global-avgpool", "GlobalMaxPool": "global-maxpool",
    "GlobalLpPool": "global-avgpool",
    # normalisation
    "BatchNormalization": "bn", "LayerNormalization": "layernorm",
    "InstanceNormalization": "norm", "GroupNormalization": "norm",
    "LpNormalization": "norm", "LRN": "norm", "MeanVarianceNormalization": "norm",
    # activations with a kernel type of their own
    "Relu": "relu", "Clip": "activation", "HardSwish": "hswish", "HardSigmoid": "hsigmoid",
    "Sigmoid": "sigmoid", "Gelu": "gelu",
    # other activations
    "LeakyRelu": "activation", "PRelu": "activation", "Elu": "activation", "Selu": "activation",
    "Celu": "activation", "ThresholdedRelu": "activation", "Softplus": "activation",
    "Softsign": "activation", "Tanh": "activation", "Mish": "activation", "Swish": "activation",
    # element-wise arithmetic
    "Add": "add", "Mul": "mul", "Sum": "add",
    "Sub": "elementwise", "Div": "elementwise", "Pow": "elementwise", "Sqrt": "elementwise",
    "Reciprocal": "elementwise", "Exp": "elementwise", "Log": "elementwise", "Erf": "elementwise",
    "Abs": "elementwise", "Neg": "elementwise", "Max": "elementwise", "Min": "elementwise",
    "Mean": "elementwise", "Floor": "elementwise", "Ceil": "elementwise", "Round": "elementwise",
    "Sign": "elementwise", "Sin": "elementwise", "Cos": "elementwise", "Mod": "elementwise",
    "Equal": "elementwise", "Greater": "elementwise", "GreaterOrEqual": "elementwise",
    "Less": "elementwise", "LessOrEqual": "elementwise", "Not": "elementwise",
    "And": "elementwise", "Or": "elementwise", "Xor": "elementwise", "Where": "elementwise",
    "Cast": "elementwise", "IsNaN": "elementwise", "IsInf": "elementwise",
    "QuantizeLinear": "elementwise", "DequantizeLinear": "elementwise",
    # reductions and softmax
    "ReduceMean": "reduce", "ReduceSum": "reduce", "ReduceMax": "reduce", "ReduceMin": "reduce",
    "ReduceProd": "reduce", "ReduceL1": "reduce", "ReduceL2": "reduce",
    "ReduceLogSum": "reduce", "ReduceLogSumExp": "reduce", "ReduceSumSquare": "reduce",
    "ArgMax": "reduce", "ArgMin": "reduce", "CumSum": "reduce",
    "Softmax": "softmax", "LogSoftmax": "softmax",
    # joining and splitting
    "Concat": "concat", "Split": "split",
    # data movement: no arithmetic, only copies or metadata
    "Reshape": "data-movement", "Transpose": "data-movement", "Flatten": "data-movement",
    "Squeeze": "data-movement", "Unsqueeze": "data-movement", "Slice": "data-movement",
    "Gather": "data-movement", "GatherElements": "data-movement", "GatherND": "data-movement",
    "Scatter": "data-movement", "ScatterElements": "data-movement", "ScatterND": "data-movement",
    "Expand": "data-movement", "Tile": "data-movement", "Pad": "data-movement",
    "Identity": "data-movement", "Dropout": "data-movement", "Shape": "data-movement",
    "Size": "data-movement", "DepthToSpace": "data-movement", "SpaceToDepth": "data-movement",
    "ConstantOfShape": "data-movement", "Range": "data-movement", "Trilu": "data-movement",
    "ReverseSequence": "data-movement", "OneHot": "data-movement",
    # resampling
    "Resize": "resize", "Upsample": "resize", "GridSample": "resize", "RoiAlign": "resize",
    # data-dependent and sequence ops: no kernel type of their own
    "TopK": "other", "NonMaxSuppression": "other", "NonZero": "other", "Unique": "other",
    "LSTM": "other", "GRU": "other", "RNN": "other", "Loop": "other", "If": "other",
    "Scan": "other",
}

KINDS = tuple(sorted({*_TABLE.values(), "dwconv", "relu6", "global-avgpool"}))
ONNX_OPS = frozenset(_TABLE)

# Numeric code of the activation a kernel applies, so that one regressor can serve a family of
# fused kernel types (conv-relu, conv-hswish …) with plain-number features.
ACTIVATION_CODES = {"relu": 1, "relu6": 2, "hswish": 3, "hsigmoid": 4, "sigmoid": 5, "gelu": 6,
                    "swish": 7, "activation": 8}


def node_kind(graph: Graph, node: Node) -> str:
    refine = _REFINED.get(node.op)  # one lookup for the common case: a kind the op alone gives
    if refine is not None:
        kind = refine(graph, node)
        if kind is not None:
            return kind
    return _TABLE.get(node.op, "other")


def _shape(graph: Graph, name: str) -> list[int] | None:
    tensor = graph.tensors.get(name)
    return tensor.shape if tensor is not None else None


def _is_depthwise(graph: Graph, node: Node) -> bool:
    """group == C_in == C_out (a channel multiplier > 1 is an ordinary grouped conv)."""
    group = node.attrs.get("group", 1)
    weight = _shape(graph, node.inputs[1]) if len(node.inputs) > 1 else None
    return group > 1 and weight is not None and weight[1] == 1 and weight[0] == group


def _scalar(graph: Graph, name: str | None) -> float | None:
    tensor = graph.tensors.get(name) if name else None
    if tensor is None or tensor.value is None:
        return None
    value = tensor.value
    while isinstance(value, list):
        if len(value) != 1:
            return None
        value = value[0]
    return float(value)


def _clip_bounds(graph: Graph, node: Node) -> tuple[float | None, float | None]:
    if "min" in node.attrs or "max" in node.attrs:  # opset < 11 keeps bounds as attributes
        return node.attrs.get("min"), node.attrs.get("max")
    names = node.inputs[1:3] + [None] * (3 - len(node.inputs))
    return _scalar(graph, names[0]), _scalar(graph, names[1])


def _constant_matrix(graph: Graph, names: list[str]) -> bool:
    tensor = graph.tensors.get(names[0]) if names else None
    return tensor is not None and tensor.constant and tensor.shape is not None \
        and len(tensor.shape) == 2


def _is_spatial_mean(graph: Graph, node: Node) -> bool:
    """ReduceMean over H and W of an NCHW tensor, as ``x.mean((2, 3))`` exports."""
    shape = _shape(graph, node.inputs[0])
    if shape is None or len(shape) != 4:
        return False
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1:  # opset 18 moved axes to an input
        tensor = graph.tensors.get(node.inputs[1])
        axes = tensor.value if tensor is not None else None
    return axes is not None and sorted(a % 4 for a in axes) == [2, 3]


# Ops whose kind also depends on attributes or shapes: None keeps the table's kind.
_REFINED = {
    "Conv": lambda graph, node: "dwconv" if _is_depthwise(graph, node) else None,
    "Clip": lambda graph, node: "relu6" if _clip_bounds(graph, node) == (0.0, 6.0) else None,
    "MatMul": lambda graph, node: "fc" if _constant_matrix(graph, node.inputs[1:2]) else None,
    "ReduceMean": lambda graph, node: "global-avgpool" if _is_spatial_mean(graph, node) else None,
}
