"""TFLite flatbuffer → :class:`Graph`, read with the ``tflite`` schema bindings (``litert`` extra).

TFLite's builtins become ONNX ops and its layouts ONNX's, so the cost rules and kernel detection
see the same graph as for the ONNX model a .tflite file came from:

- 4-D activations are NHWC in TFLite (its convention) and become NCHW shapes; filters become
  ONNX layout: CONV_2D ``[O, kh, kw, I/g]`` → Conv ``[O, I/g, kh, kw]`` (group = CIN / I/g),
  DEPTHWISE_CONV_2D ``[1, kh, kw, O]`` → Conv ``[O, 1, kh, kw]`` (group = CIN), TRANSPOSE_CONV
  ``[O, kh, kw, I]`` → ConvTranspose ``[I, O, kh, kw]``. SAME/VALID padding becomes explicit pads.
- FULLY_CONNECTED → Gemm (transB=1) on a 2-D input, else MatMul (+ Add for the bias).
- Axes (CONCATENATION, MEAN, ARG_MAX, SPLIT, SOFTMAX, TRANSPOSE perm, PAD) are remapped to NCHW;
  MEAN / REDUCE_MAX over H, W with kept dims → GlobalAveragePool / GlobalMaxPool.
- A fused activation (``fused_activation_function`` RELU, RELU6, RELU_N1_TO_1, TANH) becomes an
  explicit node after the op, named ``<op>/fused_<activation>``; the op writes
  ``<output>/pre_activation``.
- DEQUANTIZE of a constant (fp16 weights) is folded into a float32 constant.

Documented differences from the ONNX graph the file was converted from: TFLite convolutions
always carry a bias (1 FLOP per output more where the ONNX Conv had none); RELU6 is Clip(0, 6);
Flatten/Squeeze/Unsqueeze are Reshape; a MatMul with a constant 2-D weight is Gemm;
decomposed ops (HardSigmoid, BatchNormalization, LayerNormalization) stay decomposed; layout
TRANSPOSE/RESHAPE ops a converter inserted stay as nodes. A 4-D tensor is always taken to be
NHWC, even one a converter transposed to NCHW before a reshape (only its shape is then off; such
nodes do no arithmetic). Builtins not listed in :data:`OPS` keep their TFLite name as op type,
with a warning. Only the main subgraph is read.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgemeter.converters.layout import NCHW_AXIS, NHWC_TO_NCHW, same_pads, to_nchw
from edgemeter.errors import ModelError, import_extra
from edgemeter.graph import Graph, Node, Tensor

# Constants up to this many elements keep their value (axes, shapes, clip bounds).
SMALL = 64

DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool",
          7: "int16", 9: "int8", 10: "float64"}
NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8,
             "int64": np.int64, "bool": np.bool_, "int16": np.int16, "int8": np.int8,
             "float64": np.float64}
# Builtins that map one-to-one, inputs unchanged (apart from layout).
SIMPLE = {"ADD": "Add", "SUB": "Sub", "MUL": "Mul", "DIV": "Div", "MAXIMUM": "Max",
          "MINIMUM": "Min", "POW": "Pow", "LOGISTIC": "Sigmoid", "RELU": "Relu", "TANH": "Tanh",
          "HARD_SWISH": "HardSwish", "LEAKY_RELU": "LeakyRelu", "GELU": "Gelu", "EXP": "Exp",
          "SQRT": "Sqrt", "NEG": "Neg", "ABS": "Abs", "BATCH_MATMUL": "MatMul", "CAST": "Cast",
          "GATHER": "Gather", "SQUARED_DIFFERENCE": "SquaredDifference", "PRELU": "PRelu",
          "RSQRT": "Rsqrt", "QUANTIZE": "QuantizeLinear", "DEQUANTIZE": "DequantizeLinear"}
ACTIVATIONS = {1: ("RELU", "Relu", None), 2: ("RELU_N1_TO_1", "Clip", (-1.0, 1.0)),
               3: ("RELU6", "Clip", (0.0, 6.0)), 4: ("TANH", "Tanh", None)}


def import_tflite(path: str | Path) -> Graph:
    """Import a .tflite file (its main subgraph) as a Graph in ONNX vocabulary and NCHW."""
    tflite = import_extra("tflite", "tflite", "litert")
    path = Path(path)
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelError(f"{path}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    try:
        return _Importer(tflite, tflite.Model.GetRootAs(buf, 0), path.stem).run()
    except (IndexError, struct.error, UnicodeDecodeError, ValueError, TypeError,
            AttributeError, KeyError) as exc:
        raise ModelError(f"{path}: corrupt TFLite file ({type(exc).__name__}: {exc})") from None


class _Importer:
    def __init__(self, tflite: Any, model: Any, name: str):
        self.tfl, self.model, self.name = tflite, model, name
        if model.SubgraphsLength() < 1:
            raise ModelError(f"TFLite model '{name}' has no subgraph")
        self.sub = model.Subgraphs(0)
        self.warnings: list[str] = []
        if model.SubgraphsLength() > 1:
            self.warnings.append(f"{model.SubgraphsLength()} subgraphs: only the main one read")
        self.tensors: dict[str, Tensor] = {}
        self.arrays: dict[str, np.ndarray] = {}  # constant data, TFLite layout
        self.raw: dict[str, list[int]] = {}  # shapes as TFLite stores them
        self.names = self._tensor_names()
        self.nodes: list[Node] = []
        self.node_names: set[str] = set()
        self.builtin_names = {v: k for k, v in vars(tflite.BuiltinOperator).items()
                              if not k.startswith("_")}
        self.option_names = {v: k for k, v in vars(tflite.BuiltinOptions).items()
                             if not k.startswith("_")}

    # -- tensors ---------------------------------------------------------------------------------
    def _tensor_names(self) -> list[str]:
        names, seen = [], set()
        for i in range(self.sub.TensorsLength()):
            t = self.sub.Tensors(i)
            name = (t.Name() or b"").decode() or f"tensor_{i}"
            if name in seen:
                name = f"{name}#{i}"
            seen.add(name)
            names.append(name)
            dtype = DTYPES.get(t.Type(), f"tflite_type_{t.Type()}")
            shape = t.ShapeAsNumpy().tolist() if t.ShapeLength() else []
            self.raw[name] = shape
            data = self._data(t, dtype, shape)
            constant = data is not None
            if constant:
                self.arrays[name] = data
            # 4-D: NHWC → NCHW. Filters are re-laid out by their op (their shape is not NHWC).
            self.tensors[name] = Tensor(name, shape if constant else to_nchw(shape), dtype,
                                        constant, self._small(data, shape))
        return names

    def _data(self, t: Any, dtype: str, shape: list[int]) -> np.ndarray | None:
        index = t.Buffer()
        if index <= 0 or index >= self.model.BuffersLength():
            return None
        buffer = self.model.Buffers(index)
        if buffer.DataLength() > 0 and dtype in NP_DTYPES:
            return buffer.DataAsNumpy().view(NP_DTYPES[dtype]).reshape(shape)
        if buffer.Offset() > 1:  # stored outside the flatbuffer (>2 GB models): shape only
            return np.empty(0)
        return None

    @staticmethod
    def _small(data: np.ndarray | None, shape: list[int]) -> list | None:
        if data is None or data.size == 0 or data.size > SMALL or len(shape) > 1:
            return None
        return data.tolist() if shape else [data.item()]

    def constant(self, name: str, shape: list[int], value: list | None = None,
                 dtype: str = "float32") -> str:
        self.tensors[name] = Tensor(name, shape, dtype, True, value)
        return name

    def relayout(self, name: str, shape: list[int]) -> str:
        """Give a constant filter its ONNX shape (its bytes are not needed: only the shape)."""
        self.tensors[name].shape, self.tensors[name].value = shape, None
        return name

    # -- nodes -----------------------------------------------------------------------------------
    def add(self, op: str, inputs: list[str], outputs: list[str], attrs: dict | None = None,
            name: str | None = None) -> Node:
        name = name or outputs[0]
        if name in self.node_names:
            name = f"{name}#{len(self.nodes)}"
        self.node_names.add(name)
        node = Node(name, op, inputs, outputs, attrs or {})
        self.nodes.append(node)
        return node

    def run(self) -> Graph:
        for i in range(self.sub.OperatorsLength()):
            op = self.sub.Operators(i)
            code_table = self.model.OperatorCodes(op.OpcodeIndex())
            code = max(code_table.BuiltinCode(), code_table.DeprecatedBuiltinCode())
            kind = self.builtin_names.get(code, f"BUILTIN_{code}")
            if kind == "CUSTOM":
                kind = (code_table.CustomCode() or b"CUSTOM").decode()
            inputs = [self.names[j] if j >= 0 else "" for j in op.InputsAsNumpy().tolist()] \
                if op.InputsLength() else []
            outputs = [self.names[j] for j in op.OutputsAsNumpy().tolist()] \
                if op.OutputsLength() else []
            options = self._options(op)
            fused = getattr(options, "FusedActivationFunction", lambda: 0)()
            if fused in ACTIVATIONS:
                final = outputs[0]
                outputs = [f"{final}/pre_activation", *outputs[1:]]
                self.tensors[outputs[0]] = Tensor(outputs[0], self.tensors[final].shape,
                                                  self.tensors[final].dtype)
            node = OPS.get(kind, _unmapped)(self, kind, inputs, outputs, options)
            if fused in ACTIVATIONS and node is not None:
                self._activation(node, fused, final)
            elif fused not in (0, *ACTIVATIONS):
                self.warnings.append(f"{kind}: fused activation {fused} not imported")
        graph_inputs = [self.names[j] for j in self.sub.InputsAsNumpy().tolist()] \
            if self.sub.InputsLength() else []
        graph_outputs = [self.names[j] for j in self.sub.OutputsAsNumpy().tolist()] \
            if self.sub.OutputsLength() else []
        used = {t for n in self.nodes for t in (*n.inputs, *n.outputs)} | set(graph_inputs)
        tensors = {k: v for k, v in self.tensors.items() if k in used}
        graph = Graph(self.name, self.nodes, tensors, graph_inputs, graph_outputs, self.warnings)
        graph.sort()
        return graph

    def _options(self, op: Any) -> Any:
        table = op.BuiltinOptions()
        if table is None:
            return None
        cls = getattr(self.tfl, self.option_names.get(op.BuiltinOptionsType(), ""), None)
        if cls is None:
            return None
        options = cls()
        options.Init(table.Bytes, table.Pos)
        return options

    def _activation(self, node: Node, code: int, output: str) -> None:
        label, op, bounds = ACTIVATIONS[code]
        inputs = [node.outputs[0]]
        if bounds:
            inputs += [self.constant(f"{node.name}/fused_min", [], [bounds[0]]),
                       self.constant(f"{node.name}/fused_max", [], [bounds[1]])]
        self.add(op, inputs, [output], name=f"{node.name}/fused_{label.lower()}")

    def shape(self, name: str) -> list[int]:
        return self.tensors[name].shape

    def padding(self, options: Any, x: str, kernel: list[int], strides: list[int],
                dilations: list[int]) -> list[int]:
        if options.Padding() == self.tfl.Padding.SAME:
            return same_pads(self.shape(x)[2:], kernel, strides, dilations)
        return [0, 0, 0, 0]


Rule = Callable[[_Importer, str, list[str], list[str], Any], "Node | None"]


def _conv(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
    x, w = inputs[0], inputs[1]
    cout, kh, kw, cin_g = im.raw[w]
    cin = im.shape(x)[1]
    strides, dilations = [o.StrideH(), o.StrideW()], [o.DilationHFactor(), o.DilationWFactor()]
    if kind == "DEPTHWISE_CONV_2D":
        _, kh, kw, cout = im.raw[w]
        group, weight = cin, [cout, 1, kh, kw]
    else:
        group, weight = cin // cin_g, [cout, cin_g, kh, kw]
    attrs = {"kernel_shape": [kh, kw], "strides": strides, "dilations": dilations,
             "group": group, "pads": im.padding(o, x, [kh, kw], strides, dilations)}
    return im.add("Conv", [x, im.relayout(w, weight), *inputs[2:3]], outputs, attrs)



def _transpose_conv(im: _Importer, kind: str, inputs: list[str], outputs: list[str],
                    o: Any) -> Node:
    _, w, x = inputs[:3]
    cout, kh, kw, cin = im.raw[w]
    strides = [o.StrideH(), o.StrideW()]
    y = im.shape(outputs[0])
    full = [(n - 1) * s + k for n, s, k in zip(im.shape(x)[2:], strides, [kh, kw])]
    begin = [(f - n) // 2 for f, n in zip(full, y[2:])]
    pads = begin + [f - n - b for f, n, b in zip(full, y[2:], begin)]
    attrs = {"kernel_shape": [kh, kw], "strides": strides, "group": 1, "pads": pads}
    return im.add("ConvTranspose", [x, im.relayout(w, [cin, cout, kh, kw]), *inputs[3:4]],
                  outputs, attrs)


def _fully_connected(im: _Importer, kind: str, inputs: list[str], outputs: list[str],
                     o: Any) -> Node:
    x, w = inputs[:2]
    bias = inputs[2] if len(inputs) > 2 and inputs[2] else ""
    n, k = im.raw[w]
    if len(im.shape(x)) != 2 and not o.KeepNumDims():  # TFLite flattens x to [-1, K] first
        flat = f"{x}/flat"
        im.tensors[flat] = Tensor(flat, [int(np.prod(im.shape(x))) // k, k])
        _reshape(im, "RESHAPE", [x], [flat], None)
        x = flat
    if len(im.shape(x)) == 2:
        return im.add("Gemm", [x, w, bias] if bias else [x, w], outputs, {"transB": 1})
    weight = im.relayout(w, [k, n])
    if not bias:
        return im.add("MatMul", [x, weight], outputs)
    product = f"{outputs[0]}/matmul"
    im.tensors[product] = Tensor(product, im.shape(outputs[0]))
    im.add("MatMul", [x, weight], [product])
    return im.add("Add", [product, bias], outputs, name=f"{outputs[0]}/bias")


def _pool(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
    kernel, strides = [o.FilterHeight(), o.FilterWidth()], [o.StrideH(), o.StrideW()]
    attrs = {"kernel_shape": kernel, "strides": strides,
             "pads": im.padding(o, inputs[0], kernel, strides, [1, 1])}
    return im.add("MaxPool" if kind == "MAX_POOL_2D" else "AveragePool", inputs[:1], outputs,
                  attrs)


def _nchw_axes(im: _Importer, x: str, axes: list[int]) -> list[int]:
    rank = len(im.shape(x))
    axes = [a % rank for a in axes]
    return sorted(NCHW_AXIS[a] for a in axes) if rank == 4 else axes


def _reduce(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
    x = inputs[0]
    axes = _nchw_axes(im, x, np.atleast_1d(im.arrays[inputs[1]]).tolist())
    keep = bool(o.KeepDims()) if o is not None else False
    if keep and axes == [2, 3] and kind in ("MEAN", "REDUCE_MAX"):
        return im.add("GlobalAveragePool" if kind == "MEAN" else "GlobalMaxPool", [x], outputs)
    op = {"MEAN": "ReduceMean", "SUM": "ReduceSum", "REDUCE_MAX": "ReduceMax"}[kind]
    return im.add(op, [x], outputs, {"axes": axes, "keepdims": int(keep)})


def _arg_extreme(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
    axis = _axis(im, inputs[0], int(np.ravel(im.arrays[inputs[1]])[0]))
    return im.add("ArgMax" if kind == "ARG_MAX" else "ArgMin", inputs[:1], outputs,
                  {"axis": axis, "keepdims": 0})


def _reshape(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
    shape = im.shape(outputs[0])
    target = im.constant(f"{outputs[0]}/shape", [len(shape)], list(shape), "int64")
    return im.add("Reshape", [inputs[0], target], outputs)


def _axis(im: _Importer, tensor: str, axis: int) -> int:
    rank = len(im.shape(tensor))
    axis %= rank
    return NCHW_AXIS[axis] if rank == 4 else axis


def _concat(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
    return im.add("Concat", inputs, outputs, {"axis": _axis(im, outputs[0], o.Axis())})


def _split(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
    axis_tensor, x = (inputs[0], inputs[1]) if kind == "SPLIT" else (inputs[2], inputs[0])
    axis = _axis(im, x, int(im.arrays[axis_tensor]))
    sizes = [im.shape(t)[axis] for t in outputs]
    split = im.constant(f"{outputs[0]}/split", [len(sizes)], sizes, "int64")
    return im.add("Split", [x, split], outputs, {"axis": axis})


def _softmax(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
    return im.add("Softmax", inputs[:1], outputs, {"axis": _axis(im, inputs[0], -1)})


def _transpose(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
    perm = im.arrays[inputs[1]].tolist()
    if len(perm) == 4:  # both sides NCHW views of NHWC tensors
        perm = [NCHW_AXIS[perm[NHWC_TO_NCHW[i]]] for i in range(4)]
    return im.add("Transpose", inputs[:1], outputs, {"perm": perm})


def _pad(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
    paddings = im.arrays[inputs[1]].tolist()
    if len(paddings) == 4:
        paddings = [paddings[i] for i in NHWC_TO_NCHW]
    pads = [p[0] for p in paddings] + [p[1] for p in paddings]
    attrs = {"mode": "reflect"} if kind == "MIRROR_PAD" else {}
    extra = inputs[2:3] if kind == "PADV2" else []
    return im.add("Pad", [inputs[0], im.constant(f"{outputs[0]}/pads", [len(pads)], pads,
                                                  "int64"), *extra], outputs, attrs)


def _resize(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
    y = im.shape(outputs[0])
    sizes = im.constant(f"{outputs[0]}/sizes", [4], list(y), "int64")
    mode = "linear" if kind == "RESIZE_BILINEAR" else "nearest"
    return im.add("Resize", [inputs[0], "", "", sizes], outputs, {"mode": mode})


def _slice(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
    return im.add("Slice", inputs[:1], outputs)


def _clip(low: float, high: float) -> Rule:
    def rule(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
        bounds = [im.constant(f"{outputs[0]}/{k}", [], [v]) for k, v in (("min", low),
                                                                          ("max", high))]
        return im.add("Clip", [inputs[0], *bounds], outputs)
    return rule


def _simple(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node | None:
    if kind == "DEQUANTIZE" and inputs[0] in im.arrays:  # fp16 weights: fold into a constant
        data = im.arrays[inputs[0]]
        im.tensors[outputs[0]] = Tensor(outputs[0], list(data.shape), "float32", True)
        im.arrays[outputs[0]] = data.astype(np.float32)
        return None
    for name in inputs:  # 4-D broadcast constants (e.g. [1, 1, 1, C]) are NHWC too
        if name in im.arrays and len(im.shape(name)) == 4 and im.arrays[name].size:
            im.tensors[name].shape = to_nchw(list(im.arrays[name].shape))
    return im.add(SIMPLE[kind], inputs, outputs)


def _unmapped(im: _Importer, kind: str, inputs: list[str], outputs: list[str], o: Any) -> Node:
    message = f"TFLite op {kind} has no ONNX mapping: kept as is"
    if message not in im.warnings:
        im.warnings.append(message)
    return im.add(kind, [i for i in inputs], outputs)


OPS: dict[str, Rule] = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _conv, "TRANSPOSE_CONV": _transpose_conv,
    "FULLY_CONNECTED": _fully_connected, "AVERAGE_POOL_2D": _pool, "MAX_POOL_2D": _pool,
    "MEAN": _reduce, "SUM": _reduce, "REDUCE_MAX": _reduce, "ARG_MAX": _arg_extreme,
    "ARG_MIN": _arg_extreme, "RESHAPE": _reshape,
    "SQUEEZE": _reshape, "EXPAND_DIMS": _reshape, "CONCATENATION": _concat, "SPLIT": _split,
    "SPLIT_V": _split, "SOFTMAX": _softmax, "TRANSPOSE": _transpose, "PAD": _pad, "PADV2": _pad,
    "MIRROR_PAD": _pad, "RESIZE_BILINEAR": _resize, "RESIZE_NEAREST_NEIGHBOR": _resize,
    "STRIDED_SLICE": _slice, "SLICE": _slice, "RELU6": _clip(0.0, 6.0),
    "RELU_N1_TO_1": _clip(-1.0, 1.0), **{k: _simple for k in SIMPLE},
}
