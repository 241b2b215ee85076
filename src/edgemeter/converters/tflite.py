"""ONNX → .tflite (float32) without TensorFlow: the conversion path of the LiteRT backend.

``litert-torch`` (~2 GB with jax) and ``tensorflow-cpu`` (~1.3 GB) can write .tflite files; this
module writes them directly with the flatbuffer schema shipped in ``ai-edge-litert`` (the
``litert`` extra), for the ops of the CNNs and kernel models edgemeter generates.

Layout. TFLite's spatial ops work on NHWC, ONNX's on NCHW. Every tensor is stored either NHWC
(4-D tensors produced by convolutions, pooling, and whatever layout-neutral op follows them) or in
its ONNX layout (the rest). A TRANSPOSE is inserted only where an op needs the other layout
(Reshape/Flatten/MatMul on an NHWC tensor, a convolution on an ONNX-layout one), and becomes a
RESHAPE when only size-1 dims move (an SE vector ``[N, C, 1, 1]``). 4-D model inputs and outputs
are NHWC: feed ``x.transpose(0, 2, 3, 1)``.

Before conversion, symbolic batch dims are fixed to 1, shapes are inferred and constant
subgraphs (``Shape → Gather → Concat → Reshape``) are folded, so every shape is static.

Supported ONNX ops → TFLite builtins:

- Conv → CONV_2D, DEPTHWISE_CONV_2D (group == channels), grouped CONV_2D (filter with CIN/g
  channels, which LiteRT's XNNPACK delegate runs); ConvTranspose (group 1, no dilation) →
  TRANSPOSE_CONV (+ STRIDED_SLICE when ONNX's padding is not TFLite's SAME/VALID).
- Gemm, MatMul with a constant 2-D weight → FULLY_CONNECTED; MatMul of two activations →
  BATCH_MATMUL.
- Add, Sub, Mul, Div, Max, Min (broadcast constants are re-laid out), Pow with exponent 2.
- Relu, Clip (0..6 → RELU6, -1..1 → RELU_N1_TO_1, others → MAXIMUM/MINIMUM), LeakyRelu,
  Sigmoid, Tanh, HardSwish, HardSigmoid (→ MUL, ADD+RELU6, MUL), Exp, Sqrt, Neg, Abs, Erf-GELU
  pattern and Gelu → GELU; Relu/Clip after a conv, FC, add, … fuse into it as TFLite does.
- MaxPool, AveragePool (SAME/VALID, else an explicit PAD: -inf for max pooling; zeros for
  average pooling, whose window means a MUL then rescales to ONNX's divisor, so both
  count_include_pad values and ceil_mode match), GlobalAveragePool/GlobalMaxPool →
  MEAN/REDUCE_MAX; ReduceMean/Max/Sum; ArgMax/ArgMin → ARG_MAX/ARG_MIN (int64 indices,
  + RESHAPE for keepdims; not select_last_index).
- Concat, Gather (constant indices), Split (SPLIT_V), Slice (STRIDED_SLICE, positive steps), Reshape, Flatten, Squeeze,
  Unsqueeze, Transpose, Pad (constant → PAD/PADV2, reflect → MIRROR_PAD), Softmax (any axis),
  Resize (nearest with asymmetric/floor, linear with half_pixel, pytorch_half_pixel,
  asymmetric or align_corners), BatchNormalization (→ MUL, ADD), LayerNormalization
  (decomposed into MEAN, SUB, MUL, ADD, RSQRT), Identity, Dropout, Cast to float (CAST for
  integer indices).

Anything else raises :class:`ModelError` naming the op (and the node).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from edgemeter.converters.layout import NCHW_TO_NHWC, NHWC_AXIS, NHWC_TO_NCHW, same_pads
from edgemeter.errors import ModelError, import_extra

FLOAT_LOWEST = float(np.finfo(np.float32).min)


def onnx_to_tflite(model: str | Path | onnx.ModelProto, out_path: str | Path) -> Path:
    """Convert an ONNX model (path or ModelProto) to a float32 .tflite file at ``out_path``."""
    flatbuffers = import_extra("flatbuffers", "ai-edge-litert", "litert")
    fb = import_extra("ai_edge_litert.schema_py_generated", "ai-edge-litert", "litert")
    proto = prepare(_load(model))
    model_t = _Converter(proto, fb).convert()
    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    out_path = Path(out_path)
    out_path.write_bytes(builder.Output())
    return out_path


def _load(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        return onnx.load(path)
    except Exception as exc:  # protobuf raises several unrelated types for a corrupt file
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None


# -- preparation: static shapes and folded constants ---------------------------------------------
def prepare(proto: onnx.ModelProto, max_rounds: int = 5) -> onnx.ModelProto:
    """A copy of ``proto`` with batch dims fixed to 1, constant subgraphs folded into
    initializers and every value's shape inferred."""
    proto = _fuse_erf_gelu(_static_inputs(proto))
    for _ in range(max_rounds):
        proto = shape_inference.infer_shapes(proto, data_prop=True)
        folded = _fold_constants(proto)
        if folded is None:
            return proto
        proto = folded
    return shape_inference.infer_shapes(proto, data_prop=True)


def _static_inputs(proto: onnx.ModelProto) -> onnx.ModelProto:
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    initializers = {i.name for i in proto.graph.initializer}
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            if i != 0:
                raise ModelError(f"input '{value.name}' has a symbolic dim {i} "
                                 f"('{dim.dim_param}'): export it with a static shape")
            dim.Clear()
            dim.dim_value = 1
    del proto.graph.value_info[:]
    return proto


def _fold_constants(proto: onnx.ModelProto) -> onnx.ModelProto | None:
    """Evaluate nodes whose inputs are all known; None when there is nothing to fold."""
    from onnx.reference import ReferenceEvaluator

    graph = proto.graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    shapes = _shapes(graph)
    kept, folded = [], False
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t) \
                if node.attribute[0].name == "value" else ReferenceEvaluator(node).run(None, {})[0]
        elif node.op_type == "Shape" and shapes.get(node.input[0]) is not None:
            start = next((a.i for a in node.attribute if a.name == "start"), 0)
            end = next((a.i for a in node.attribute if a.name == "end"), None)
            values[node.output[0]] = np.array(shapes[node.input[0]][start:end], np.int64)
        elif inputs and all(i in values for i in inputs) and not node.op_type.startswith("Random"):
            outputs = ReferenceEvaluator(node).run(None, {i: values[i] for i in inputs})
            values.update(zip(node.output, (np.asarray(o) for o in outputs)))
        else:
            kept.append(node)
            continue
        folded = True
    if not folded:
        return None
    used = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    new = onnx.ModelProto.FromString(proto.SerializeToString())
    del new.graph.node[:], new.graph.initializer[:], new.graph.value_info[:]
    new.graph.node.extend(kept)
    new.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in values.items()
                                 if k in used)
    return new


def _shapes(graph: onnx.GraphProto) -> dict[str, list[int] | None]:
    shapes: dict[str, list[int] | None] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        shapes[value.name] = dims if t.HasField("shape") and all(d >= 0 for d in dims) else None
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _fuse_erf_gelu(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Replace torch's exact-GELU expansion ``x * 0.5 * (1 + erf(x / √2))`` (5 nodes) by one
    ``Gelu`` node, which TFLite runs as a single GELU op."""
    graph = proto.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                   if n.op_type == "Constant" and n.attribute[0].name == "value"})
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for i in node.input:
            users.setdefault(i, []).append(node)

    def only_user(tensor: str, op: str) -> onnx.NodeProto | None:
        found = users.get(tensor, [])
        return found[0] if len(found) == 1 and found[0].op_type == op else None

    def const_input(node: onnx.NodeProto, value: float) -> str | None:
        other = [i for i in node.input if i in consts and np.allclose(consts[i], value, 1e-3)]
        return next((i for i in node.input if i not in other), None) if other else None

    remove, add = set(), []
    for div in graph.node:
        x = const_input(div, np.sqrt(2.0)) if div.op_type == "Div" else None
        erf = only_user(div.output[0], "Erf") if x else None
        plus = only_user(erf.output[0], "Add") if erf else None
        if not plus or const_input(plus, 1.0) != erf.output[0]:
            continue
        mul = only_user(plus.output[0], "Mul")
        if mul is None or set(mul.input) != {x, plus.output[0]}:
            continue
        half = only_user(mul.output[0], "Mul")
        if half is None or const_input(half, 0.5) != mul.output[0]:
            continue
        remove.update(n.name or id(n) for n in (div, erf, plus, mul, half))
        add.append((div, onnx.helper.make_node("Gelu", [x], list(half.output),
                                               name=f"{div.name}_gelu", domain="")))
    if not add:
        return proto
    nodes = []
    for node in graph.node:
        nodes.extend(g for d, g in add if d is node)
        if (node.name or id(node)) not in remove:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(o.domain in ("", "ai.onnx") and o.version >= 20 for o in proto.opset_import):
        # Gelu is an opset-20 op; inference needs to know it (the rest of the model is unchanged).
        for opset in proto.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = max(opset.version, 20)
    return proto


# -- conversion -----------------------------------------------------------------------------------
class _Converter:
    """Walks the prepared ONNX graph once, emitting TFLite tensors and operators."""

    def __init__(self, proto: onnx.ModelProto, fb: Any):
        self.fb = fb
        graph = proto.graph
        self.graph = graph
        self.values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.shapes = _shapes(graph)
        # Integer ONNX values (ArgMax's indices) keep their type; everything else is float32.
        self.dtypes = {v.name: {onnx.TensorProto.INT64: fb.TensorType.INT64,
                                onnx.TensorProto.INT32: fb.TensorType.INT32}.get(
                                    v.type.tensor_type.elem_type)
                       for v in (*graph.value_info, *graph.output)}
        self.tensors: list = []
        self.buffers = [fb.BufferT()]  # buffer 0: the empty buffer of activations
        self.operators: list = []
        self.codes: dict[int, int] = {}
        # ONNX name -> (TFLite tensor index, stored NHWC?); converted copies are cached.
        self.stored: dict[str, tuple[int, bool]] = {}
        self.layout_copies: dict[tuple[str, bool], int] = {}
        self.fused = _fusable_activations(graph, self.values)
        self.skipped = {act.name for act, _ in self.fused.values()}

    # -- tensors --------------------------------------------------------------------------------
    def shape(self, name: str) -> list[int]:
        shape = self.values[name].shape if name in self.values else self.shapes.get(name)
        if shape is None:
            raise ModelError(f"cannot convert to TFLite: the shape of '{name}' is unknown")
        return list(shape)

    def new_tensor(self, name: str, shape: list[int], data: np.ndarray | None = None,
                   dtype: int | None = None) -> int:
        t = self.fb.TensorT()
        t.name, t.shape = name, [int(d) for d in shape]
        t.type = self.fb.TensorType.FLOAT32 if dtype is None else dtype
        if data is not None:
            buffer = self.fb.BufferT()
            buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            self.buffers.append(buffer)
            t.buffer = len(self.buffers) - 1
            t.type = {np.dtype(np.float32): self.fb.TensorType.FLOAT32,
                      np.dtype(np.int32): self.fb.TensorType.INT32}[data.dtype]
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, array: Any, name: str, dtype: type = np.float32) -> int:
        array = np.asarray(array, dtype)
        return self.new_tensor(name, list(array.shape), array)

    def define(self, name: str, nhwc: bool) -> int:
        shape = self.shape(name)
        nhwc = nhwc and len(shape) == 4
        index = self.new_tensor(name, [shape[i] for i in NCHW_TO_NHWC] if nhwc else shape,
                                dtype=self.dtypes.get(name))
        self.stored[name] = (index, nhwc)
        return index

    def alias(self, name: str, source: str) -> None:
        self.stored[name] = self.stored[source]

    def nhwc(self, name: str) -> bool:
        return name in self.stored and self.stored[name][1]

    def get(self, name: str, nhwc: bool | None = None, rank: int | None = None) -> int:
        """TFLite tensor of ONNX value ``name`` in the asked layout (None: as stored). Constants
        are first broadcast-aligned to ``rank`` (ONNX aligns trailing dims)."""
        key = (name, nhwc, rank)
        if key in self.layout_copies:
            return self.layout_copies[key]
        if name in self.values:
            array = self.values[name]
            array = array.astype(np.float32 if array.dtype.kind == "f" else np.int32)
            if rank and array.ndim < rank:
                array = array.reshape((1,) * (rank - array.ndim) + array.shape)
            if nhwc and array.ndim == 4:
                array = array.transpose(NCHW_TO_NHWC)
            self.layout_copies[key] = self.const(array, name, array.dtype.type)
            return self.layout_copies[key]
        index, stored_nhwc = self.stored[name]
        shape = self.shape(name)
        if rank and len(shape) < rank:  # a lower-rank activation broadcast against a 4-D one
            shape = [1] * (rank - len(shape)) + shape
            target = [shape[i] for i in NCHW_TO_NHWC] if nhwc and rank == 4 else shape
            self.layout_copies[key] = self.reshape(index, target, f"{name}/rank{rank}")
            return self.layout_copies[key]
        if nhwc is None or stored_nhwc == nhwc or len(shape) != 4:
            return index
        if key not in self.layout_copies:
            perm = NCHW_TO_NHWC if nhwc else NHWC_TO_NCHW
            stored_shape = self.tensors[index].shape
            self.layout_copies[key] = self.transpose(
                index, perm, stored_shape, f"{name}/{'nhwc' if nhwc else 'nchw'}")
        return self.layout_copies[key]

    # -- operators -------------------------------------------------------------------------------
    def emit(self, code: int, inputs: list[int], outputs: list[int], options: Any = None) -> None:
        self.codes.setdefault(code, len(self.codes))
        op = self.fb.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = self.codes[code], inputs, outputs
        if options is not None:
            op.builtinOptionsType = getattr(self.fb.BuiltinOptions, type(options).__name__[:-1])
            op.builtinOptions = options
        self.operators.append(op)

    def emit_node(self, node: onnx.NodeProto, code: int, inputs: list[int], nhwc: bool,
                  options: Any = None) -> None:
        """Emit the op computing ``node``'s output; a Relu/Clip that follows it fuses in."""
        name = node.output[0]
        if node.name in self.fused:
            act, code_act = self.fused[node.name]
            name, options.fusedActivationFunction = act.output[0], code_act
        self.emit(code, inputs, [self.define(name, nhwc)], options)

    def op(self, code: int, inputs: list[int], shape: list[int], name: str,
           options: Any = None, dtype: int | None = None) -> int:
        """Emit an intermediate op and return its (new) output tensor (float32 by default)."""
        out = self.new_tensor(name, shape, dtype=dtype)
        self.emit(code, inputs, [out], options)
        return out

    def reshape(self, index: int, shape: list[int], name: str) -> int:
        options = self.fb.ReshapeOptionsT()
        options.newShape = list(shape)
        return self.op(self.B.RESHAPE, [index, self.const(shape, f"{name}/shape", np.int32)],
                       shape, name, options, self.tensors[index].type)

    def transpose(self, index: int, perm: list[int], shape: list[int], name: str) -> int:
        out_shape = [shape[p] for p in perm]
        moving = [p for p in perm if shape[p] != 1]
        if moving == sorted(moving):  # only size-1 dims move: the bytes stay in order
            return self.reshape(index, out_shape, name)
        return self.op(self.B.TRANSPOSE, [index, self.const(perm, f"{name}/perm", np.int32)],
                       out_shape, name, dtype=self.tensors[index].type)

    @property
    def B(self) -> Any:
        return self.fb.BuiltinOperator

    # -- driver ----------------------------------------------------------------------------------
    def convert(self) -> Any:
        for value in self.graph.input:
            if value.name not in self.values:
                self.define(value.name, nhwc=True)
        # Name every unsupported op type at once (its first node), not only the first met.
        missing = {n.op_type: n.name for n in self.graph.node if n.op_type not in HANDLERS}
        if missing:
            listed = ", ".join(f"ONNX op {op} (node '{name}')" for op, name in missing.items())
            raise ModelError(f"cannot convert {listed} to TFLite: not supported")
        for node in self.graph.node:
            if node.name not in self.skipped:
                HANDLERS[node.op_type](self, node, _attrs(node))
        sub = self.fb.SubGraphT()
        sub.tensors, sub.operators, sub.name = self.tensors, self.operators, "main"
        sub.inputs = [self.stored[v.name][0] for v in self.graph.input if v.name not in self.values]
        sub.outputs = [self.get(v.name, nhwc=True) for v in self.graph.output]
        model = self.fb.ModelT()
        model.version, model.description = 3, "edgemeter onnx_to_tflite"
        model.subgraphs, model.buffers = [sub], self.buffers
        model.operatorCodes = [None] * len(self.codes)
        for code, index in self.codes.items():
            opcode = self.fb.OperatorCodeT()
            opcode.builtinCode, opcode.deprecatedBuiltinCode, opcode.version = \
                code, min(code, 127), 1
            model.operatorCodes[index] = opcode
        return model

    # -- helpers for handlers --------------------------------------------------------------------
    def weight(self, node: onnx.NodeProto, i: int) -> np.ndarray:
        if i >= len(node.input) or node.input[i] not in self.values:
            raise ModelError(f"cannot convert {node.op_type} node '{node.name}' to TFLite: "
                             f"its input {i} must be a constant")
        return self.values[node.input[i]].astype(np.float32)

    def optional(self, node: onnx.NodeProto, i: int) -> np.ndarray | None:
        if i < len(node.input) and node.input[i]:
            return self.weight(node, i)
        return None

    def pad_spatial(self, index: int, pads: list[int], value: float, name: str) -> int:
        """Explicit PAD/PADV2 of an NHWC tensor; pads are ONNX's [hb, wb, he, we]."""
        shape = self.tensors[index].shape
        paddings = [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]]
        out_shape = [d + b + e for d, (b, e) in zip(shape, paddings)]
        inputs = [index, self.const(paddings, f"{name}/paddings", np.int32)]
        if value == 0:
            return self.op(self.B.PAD, inputs, out_shape, name)
        inputs.append(self.const(np.array(value, np.float32), f"{name}/value"))
        return self.op(self.B.PADV2, inputs, out_shape, name)

    def spatial_padding(self, node: onnx.NodeProto, index: int, attrs: dict, kernel: list[int],
                        pad_value: float) -> tuple[int, int]:
        """TFLite padding for a conv/pool node: SAME or VALID, with an explicit PAD of
        ``pad_value`` in front when ONNX's padding is neither."""
        padding, pads = self.padding(node, attrs, kernel)
        if pads is None:
            return padding, index
        return padding, self.pad_spatial(index, pads, pad_value, f"{node.output[0]}/pad")

    def padding(self, node: onnx.NodeProto, attrs: dict, kernel: list[int],
                same_ok: bool = True) -> tuple[int, list[int] | None]:
        """(TFLite padding, None) when SAME (if ``same_ok``) or VALID give ONNX's windows, else
        (VALID, the explicit pads that do: ONNX's, ceil_mode's extra end rows added)."""
        x, y = self.shape(node.input[0]), self.shape(node.output[0])
        strides = attrs.get("strides", [1, 1])
        dilations = attrs.get("dilations", [1, 1])
        pads = _onnx_pads(attrs, x[2:], kernel, strides, dilations)
        if attrs.get("ceil_mode", 0) and any((y[2 + a] - 1) * strides[a] >= x[2 + a] + pads[a]
                                             for a in range(2)):
            raise ModelError(f"cannot convert {node.op_type} node '{node.name}' to TFLite: "
                             "its last ceil_mode window starts in the end padding (ONNX's shape "
                             "inference keeps it, onnxruntime drops it)")
        extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
        if not any(pads) and y[2:] == _valid_out(x[2:], extent, strides):
            return self.fb.Padding.VALID, None
        if same_ok and pads == same_pads(x[2:], kernel, strides, dilations) and \
                y[2:] == [-(-s // st) for s, st in zip(x[2:], strides)]:
            return self.fb.Padding.SAME, None
        # ceil_mode: pad the end until VALID windows give ONNX's output size.
        explicit = list(pads)
        for axis in range(2):
            while _valid_out([x[2 + axis] + explicit[axis] + explicit[axis + 2]],
                             [extent[axis]], [strides[axis]])[0] < y[2 + axis]:
                explicit[axis + 2] += 1
        return self.fb.Padding.VALID, explicit


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _onnx_pads(attrs: dict, size: list[int], kernel: list[int], strides: list[int],
               dilations: list[int]) -> list[int]:
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = same_pads(size, kernel, strides, dilations)
        return pads[2:] + pads[:2] if auto == "SAME_LOWER" else pads
    if auto == "VALID":
        return [0, 0, 0, 0]
    return list(attrs.get("pads", [0, 0, 0, 0]))


def _valid_out(size: list[int], extent: list[int], strides: list[int]) -> list[int]:
    return [(n - e) // s + 1 for n, e, s in zip(size, extent, strides)]


def _clip_bounds(node: onnx.NodeProto, values: dict, attrs: dict) -> tuple[float, float]:
    low, high = attrs.get("min", -np.inf), attrs.get("max", np.inf)
    if len(node.input) > 1 and node.input[1]:
        low = float(values[node.input[1]]) if node.input[1] in values else None
    if len(node.input) > 2 and node.input[2]:
        high = float(values[node.input[2]]) if node.input[2] in values else None
    return low, high


def _fusable_activations(graph: onnx.GraphProto, values: dict) -> dict[str, tuple]:
    """Producer node name → (activation node, TFLite activation code) for Relu/Relu6/Relu1 nodes
    that are the only consumer of a conv/FC/elementwise/pool output."""
    from ai_edge_litert.schema_py_generated import ActivationFunctionType as Act

    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for i in node.input:
            users.setdefault(i, []).append(node)
    outputs = {o.name for o in graph.output}
    # Not Concat: XNNPACK ignores CONCATENATION's fused activation (the reference kernel
    # rejects it), so a fused Relu would silently vanish.
    fusable = {"Conv", "ConvTranspose", "Gemm", "Add", "Sub", "Mul", "Div", "MaxPool",
               "AveragePool"}
    fused = {}
    for node in graph.node:
        if node.op_type not in fusable or node.output[0] in outputs:
            continue
        found = users.get(node.output[0], [])
        if len(found) != 1:
            continue
        act = found[0]
        code = None
        if act.op_type == "Relu":
            code = Act.RELU
        elif act.op_type == "Clip":
            code = {(0.0, 6.0): Act.RELU6, (-1.0, 1.0): Act.RELU_N1_TO_1,
                    (0.0, np.inf): Act.RELU}.get(_clip_bounds(act, values, _attrs(act)))
        if code is not None:
            fused[node.name] = (act, code)
    return fused


# -- handlers, one per ONNX op family -------------------------------------------------------------
Handler = Callable[[_Converter, onnx.NodeProto, dict], None]


def _conv(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    w = c.weight(node, 1)
    if w.ndim != 4:
        raise ModelError(f"cannot convert {w.ndim - 2}-D Conv node '{node.name}' to TFLite: "
                         "only 2-D convolutions are supported")
    bias = c.optional(node, 2)
    cout, cin_g, kh, kw = w.shape
    cin = c.shape(node.input[0])[1]
    group = attrs.get("group", 1)
    x = c.get(node.input[0], nhwc=True)
    padding, x = c.spatial_padding(node, x, attrs, [kh, kw], 0.0)
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    # CONV_2D needs a bias tensor (TFLite rejects -1 here): zeros stand for "none".
    b = c.const(bias if bias is not None else np.zeros(cout, np.float32), f"{node.name}/bias")
    if group == cin and cin_g == 1 and group > 1:
        options = c.fb.DepthwiseConv2DOptionsT()
        options.depthMultiplier = cout // cin
        code, filt = c.B.DEPTHWISE_CONV_2D, w.transpose(1, 2, 3, 0)  # [1, kh, kw, cout]
    else:
        options = c.fb.Conv2DOptionsT()  # grouped: filter [cout, kh, kw, cin/g]
        code, filt = c.B.CONV_2D, w.transpose(0, 2, 3, 1)
    options.padding, options.strideH, options.strideW = padding, sh, sw
    options.dilationHFactor, options.dilationWFactor = dh, dw
    c.emit_node(node, code, [x, c.const(filt, f"{node.name}/filter"), b], True, options)


def _conv_transpose(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    w = c.weight(node, 1)  # [cin, cout/g, kh, kw]
    if w.ndim != 4 or attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise ModelError(f"cannot convert ConvTranspose node '{node.name}' to TFLite: only 2-D, "
                         "ungrouped, undilated ones are supported")
    cin, cout, kh, kw = w.shape
    bias = c.optional(node, 2)
    sh, sw = attrs.get("strides", [1, 1])
    x_shape, y = c.shape(node.input[0]), c.shape(node.output[0])
    full = [(x_shape[2] - 1) * sh + kh, (x_shape[3] - 1) * sw + kw]
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    options = c.fb.TransposeConvOptionsT()
    options.strideH, options.strideW = sh, sw
    same = [(f - o) // 2 for f, o in zip(full, y[2:])]  # TFLite's SAME crops the odd pixel last
    if y[2:] == [x_shape[2] * sh, x_shape[3] * sw] and pads[:2] == same:
        options.padding, out_hw, crop = c.fb.Padding.SAME, y[2:], None
    else:
        options.padding, out_hw, crop = c.fb.Padding.VALID, full, pads[:2]
    out_shape = [y[0], *out_hw, cout]
    inputs = [c.const(out_shape, f"{node.name}/output_shape", np.int32),
              c.const(w.transpose(1, 2, 3, 0), f"{node.name}/filter"),
              c.get(node.input[0], nhwc=True),
              c.const(bias if bias is not None else np.zeros(cout, np.float32),
                      f"{node.name}/bias")]
    if crop is None:
        c.emit_node(node, c.B.TRANSPOSE_CONV, inputs, True, options)
        return
    if node.name in c.fused:  # the crop comes last: emit the activation unfused
        c.skipped.discard(c.fused.pop(node.name)[0].name)
    full_t = c.op(c.B.TRANSPOSE_CONV, inputs, out_shape, f"{node.output[0]}/full", options)
    begin = [0, crop[0], crop[1], 0]
    end = [y[0], crop[0] + y[2], crop[1] + y[3], cout]
    c.emit(c.B.STRIDED_SLICE, [full_t, c.const(begin, f"{node.name}/begin", np.int32),
                               c.const(end, f"{node.name}/end", np.int32),
                               c.const([1, 1, 1, 1], f"{node.name}/strides", np.int32)],
           [c.define(node.output[0], True)], c.fb.StridedSliceOptionsT())


def _fully_connected(c: _Converter, node: onnx.NodeProto, weight: np.ndarray,
                     bias: np.ndarray | None) -> None:
    """y = x @ weight.T + bias over the last axis of x (ONNX layout)."""
    x_shape = c.shape(node.input[0])
    options = c.fb.FullyConnectedOptionsT()
    options.keepNumDims = len(x_shape) > 2
    inputs = [c.get(node.input[0], nhwc=False), c.const(weight, f"{node.name}/weights"),
              c.const(bias, f"{node.name}/bias") if bias is not None else -1]
    c.emit_node(node, c.B.FULLY_CONNECTED, inputs, False, options)


def _gemm(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    if attrs.get("transA", 0):
        raise ModelError(f"cannot convert Gemm node '{node.name}' with transA=1 to TFLite")
    w = c.weight(node, 1) * attrs.get("alpha", 1.0)
    w = w if attrs.get("transB", 0) else w.T
    bias = c.optional(node, 2)
    n = w.shape[0]
    if bias is not None:
        if bias.size not in (1, n):
            raise ModelError(f"cannot convert Gemm node '{node.name}' to TFLite: its bias "
                             f"{list(bias.shape)} is not per output feature")
        bias = np.broadcast_to(bias.reshape(-1), (n,)) * attrs.get("beta", 1.0)
    _fully_connected(c, node, np.ascontiguousarray(w), bias)


def _matmul(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    a, b = node.input
    if b in c.values and c.values[b].ndim == 2:
        _fully_connected(c, node, np.ascontiguousarray(c.values[b].astype(np.float32).T), None)
        return
    rank = len(c.shape(node.output[0]))
    inputs = [c.get(a, nhwc=False, rank=rank), c.get(b, nhwc=False, rank=rank)]
    c.emit(c.B.BATCH_MATMUL, inputs, [c.define(node.output[0], False)],
           c.fb.BatchMatMulOptionsT())


BINARY = {"Add": ("ADD", "AddOptionsT"), "Sub": ("SUB", "SubOptionsT"),
          "Mul": ("MUL", "MulOptionsT"), "Div": ("DIV", "DivOptionsT"),
          "Max": ("MAXIMUM", None), "Min": ("MINIMUM", None)}


def _binary(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    code, options = BINARY[node.op_type]
    rank = len(c.shape(node.output[0]))
    # NHWC if any 4-D operand already is: the other operands follow (constants re-laid out).
    nhwc = rank == 4 and any(c.nhwc(i) for i in node.input)
    inputs = [c.get(i, nhwc=nhwc, rank=rank) for i in node.input]
    options = getattr(c.fb, options)() if options else None
    if options is None:
        c.emit(getattr(c.B, code), inputs, [c.define(node.output[0], nhwc)])
    else:
        c.emit_node(node, getattr(c.B, code), inputs, nhwc, options)


def _pow(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    exponent = c.values.get(node.input[1])
    if exponent is None or exponent.size != 1 or float(exponent) != 2.0:
        raise ModelError(f"cannot convert Pow node '{node.name}' to TFLite: only x**2 is "
                         "supported")
    x = c.get(node.input[0])
    c.emit(c.B.MUL, [x, x], [c.define(node.output[0], c.nhwc(node.input[0]))],
           c.fb.MulOptionsT())


UNARY = {"Relu": "RELU", "Sigmoid": "LOGISTIC", "Tanh": "TANH", "HardSwish": "HARD_SWISH",
         "Exp": "EXP", "Sqrt": "SQRT", "Neg": "NEG", "Abs": "ABS", "Gelu": "GELU",
         "LeakyRelu": "LEAKY_RELU"}


def _unary(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    options = None
    if node.op_type == "LeakyRelu":
        options = c.fb.LeakyReluOptionsT()
        options.alpha = attrs.get("alpha", 0.01)
    elif node.op_type == "Gelu":
        options = c.fb.GeluOptionsT()
        options.approximate = attrs.get("approximate", b"none") in (b"tanh", "tanh")
    src = node.input[0]
    c.emit(getattr(c.B, UNARY[node.op_type]), [c.get(src)],
           [c.define(node.output[0], c.nhwc(src))], options)


def _clip(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    low, high = _clip_bounds(node, c.values, attrs)
    if low is None or high is None:
        raise ModelError(f"cannot convert Clip node '{node.name}' to TFLite: bounds must be "
                         "constants")
    src, nhwc = node.input[0], c.nhwc(node.input[0])
    code = {(0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1", (0.0, np.inf): "RELU"}.get(
        (low, high))
    if code:
        c.emit(getattr(c.B, code), [c.get(src)], [c.define(node.output[0], nhwc)])
        return
    steps = [(c.B.MAXIMUM, low, "min")] * (low != -np.inf) + \
        [(c.B.MINIMUM, high, "max")] * (high != np.inf)
    if not steps:
        c.alias(node.output[0], src)
        return
    x = c.get(src)
    for i, (code, bound, label) in enumerate(steps):
        inputs = [x, c.const(np.float32(bound), f"{node.name}/{label}")]
        if i == len(steps) - 1:
            c.emit(code, inputs, [c.define(node.output[0], nhwc)])
        else:
            x = c.op(code, inputs, c.tensors[x].shape, f"{node.output[0]}/{label}")


def _hard_sigmoid(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    # clip(a·x + b, 0, 1) = relu6(6a·x + 6b) / 6: three ops XNNPACK runs (no builtin exists).
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    src, nhwc = node.input[0], c.nhwc(node.input[0])
    x = c.get(src)
    shape = c.tensors[x].shape
    scaled = c.op(c.B.MUL, [x, c.const(np.float32(6 * alpha), f"{node.name}/6a")], shape,
                  f"{node.output[0]}/scaled", c.fb.MulOptionsT())
    add = c.fb.AddOptionsT()
    add.fusedActivationFunction = c.fb.ActivationFunctionType.RELU6
    shifted = c.op(c.B.ADD, [scaled, c.const(np.float32(6 * beta), f"{node.name}/6b")], shape,
                   f"{node.output[0]}/relu6", add)
    c.emit(c.B.MUL, [shifted, c.const(np.float32(1 / 6), f"{node.name}/sixth")],
           [c.define(node.output[0], nhwc)], c.fb.MulOptionsT())


def _pool(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    kernel = list(attrs["kernel_shape"])
    if len(kernel) != 2 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise ModelError(f"cannot convert {node.op_type} node '{node.name}' to TFLite: only "
                         "undilated 2-D pooling is supported")
    x = c.get(node.input[0], nhwc=True)
    strides = attrs.get("strides", [1, 1])
    options = c.fb.Pool2DOptionsT()
    (options.strideH, options.strideW), (options.filterHeight, options.filterWidth) = \
        strides, kernel
    if node.op_type == "MaxPool":
        options.padding, x = c.spatial_padding(node, x, attrs, kernel, FLOAT_LOWEST)
        c.emit_node(node, c.B.MAX_POOL_2D, [x], True, options)
        return
    # TFLite's SAME average leaves the padding out, as count_include_pad=0 does.
    include = bool(attrs.get("count_include_pad", 0))
    options.padding, pads = c.padding(node, attrs, kernel, same_ok=not include)
    if pads is None:
        c.emit_node(node, c.B.AVERAGE_POOL_2D, [x], True, options)
        return
    # Other padding: average over zero-padded full windows, then rescale each output by
    # window area / ONNX's divisor (real pixels, or pixels inside ONNX's pads).
    x = c.pad_spatial(x, pads, 0.0, f"{node.output[0]}/pad")
    x_shape, y_shape = c.shape(node.input[0]), c.shape(node.output[0])
    onnx_pads = _onnx_pads(attrs, x_shape[2:], kernel, strides, [1, 1])
    counts = [_window_counts(x_shape[2 + a], kernel[a], strides[a], onnx_pads[a],
                             onnx_pads[a + 2], y_shape[2 + a], include) for a in range(2)]
    if any(np.any(n <= 0) for n in counts):
        raise ModelError(f"cannot convert AveragePool node '{node.name}' to TFLite: a window "
                         f"of pads {onnx_pads} covers no input pixel")
    rescale = kernel[0] * kernel[1] / np.outer(*counts)
    if np.all(rescale == 1):
        c.emit_node(node, c.B.AVERAGE_POOL_2D, [x], True, options)
        return
    pooled = c.op(c.B.AVERAGE_POOL_2D, [x], [y_shape[i] for i in NCHW_TO_NHWC],
                  f"{node.output[0]}/window_mean", options)
    c.emit_node(node, c.B.MUL, [pooled, c.const(rescale[None, :, :, None],
                                                f"{node.name}/rescale")], True,
                c.fb.MulOptionsT())


def _window_counts(size: int, kernel: int, stride: int, begin: int, end: int, out: int,
                   include_pad: bool) -> np.ndarray:
    """ONNX's divisor of each average-pooling window along one axis (as onnxruntime computes
    it): the window's pixels inside the input, or inside the input and its pads."""
    low, high = (-begin, size + end) if include_pad else (0, size)
    starts = np.arange(out) * stride - begin
    return np.minimum(starts + kernel, high) - np.maximum(starts, low)


def _global_pool(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    code = c.B.MEAN if node.op_type == "GlobalAveragePool" else c.B.REDUCE_MAX
    options = c.fb.ReducerOptionsT()
    options.keepDims = True
    x = c.get(node.input[0], nhwc=True)
    c.emit(code, [x, c.const([1, 2], f"{node.name}/axes", np.int32)],
           [c.define(node.output[0], True)], options)


REDUCE = {"ReduceMean": "MEAN", "ReduceMax": "REDUCE_MAX", "ReduceSum": "SUM"}


def _reduce(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    x_shape = c.shape(node.input[0])
    rank = len(x_shape)
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = c.values[node.input[1]].tolist()
    axes = sorted(a % rank for a in (axes if axes is not None else range(rank)))
    keep = bool(attrs.get("keepdims", 1))
    src = node.input[0]
    nhwc = _reduce_nhwc(c, src, axes, keep)
    tfl_axes = [NHWC_AXIS[a] for a in axes] if nhwc else axes
    options = c.fb.ReducerOptionsT()
    options.keepDims = keep
    c.emit(getattr(c.B, REDUCE[node.op_type]),
           [c.get(src, nhwc=nhwc), c.const(tfl_axes, f"{node.name}/axes", np.int32)],
           [c.define(node.output[0], nhwc and keep)], options)


def _reduce_nhwc(c: _Converter, src: str, axes: list[int], keep: bool) -> bool:
    """Reduce in NHWC when the input is stored so and the result's dims keep their order."""
    return c.nhwc(src) and (keep or [d for d in NCHW_TO_NHWC if d not in axes]
                            == [d for d in range(4) if d not in axes])


def _arg_extreme(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    if attrs.get("select_last_index", 0):
        raise ModelError(f"cannot convert {node.op_type} node '{node.name}' to TFLite: "
                         "select_last_index=1 (TFLite returns the first index of a tie)")
    src = node.input[0]
    axis = attrs.get("axis", 0) % len(c.shape(src))
    keep = bool(attrs.get("keepdims", 1))
    nhwc = _reduce_nhwc(c, src, [axis], keep)
    tfl_axis = NHWC_AXIS[axis] if nhwc else axis
    code, options = (c.B.ARG_MAX, c.fb.ArgMaxOptionsT()) if node.op_type == "ArgMax" else \
        (c.B.ARG_MIN, c.fb.ArgMinOptionsT())
    options.outputType = c.fb.TensorType.INT64  # ONNX's index type
    x = c.get(src, nhwc=nhwc)
    inputs = [x, c.const([tfl_axis], f"{node.name}/axis", np.int32)]
    if not keep:
        c.emit(code, inputs, [c.define(node.output[0], nhwc)], options)
        return
    # TFLite drops the reduced axis: a RESHAPE puts it back as size 1.
    kept = [1 if i == tfl_axis else d for i, d in enumerate(c.tensors[x].shape)]
    index = c.op(code, inputs, [d for i, d in enumerate(kept) if i != tfl_axis],
                 f"{node.output[0]}/{node.op_type}", options, c.fb.TensorType.INT64)
    c.stored[node.output[0]] = (c.reshape(index, kept, node.output[0]), nhwc)


def _axis(c: _Converter, node: onnx.NodeProto, attrs: dict, nhwc: bool) -> int:
    rank = len(c.shape(node.output[0]))
    axis = attrs.get("axis", 0) % rank
    return NHWC_AXIS[axis] if nhwc else axis


def _concat(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    rank = len(c.shape(node.output[0]))
    nhwc = rank == 4 and any(c.nhwc(i) for i in node.input)
    options = c.fb.ConcatenationOptionsT()
    options.axis = _axis(c, node, attrs, nhwc)
    c.emit_node(node, c.B.CONCATENATION, [c.get(i, nhwc=nhwc) for i in node.input], nhwc,
                options)


def _split(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    src = node.input[0]
    nhwc = c.nhwc(src)
    axis = attrs.get("axis", 0) % len(c.shape(src))
    sizes = [c.shape(o)[axis] for o in node.output]
    options = c.fb.SplitVOptionsT()
    options.numSplits = len(sizes)
    c.emit(c.B.SPLIT_V, [c.get(src), c.const(sizes, f"{node.name}/sizes", np.int32),
                         c.const(np.int32(NHWC_AXIS[axis] if nhwc else axis),
                                 f"{node.name}/axis", np.int32)],
           [c.define(o, nhwc) for o in node.output], options)


def _slice(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    src = node.input[0]
    shape = c.shape(src)
    rank = len(shape)
    starts, ends = (c.values[node.input[i]].tolist() for i in (1, 2))
    axes = c.values[node.input[3]].tolist() if len(node.input) > 3 and node.input[3] \
        else list(range(len(starts)))
    steps = c.values[node.input[4]].tolist() if len(node.input) > 4 and node.input[4] \
        else [1] * len(starts)
    if any(s <= 0 for s in steps):
        raise ModelError(f"cannot convert Slice node '{node.name}' to TFLite: negative steps")
    nhwc = c.nhwc(src)
    begin, end, stride = [0] * rank, list(shape), [1] * rank
    for start, stop, axis, step in zip(starts, ends, axes, steps):
        axis %= rank
        size = shape[axis]
        begin[axis] = min(max(start + size if start < 0 else start, 0), size)
        end[axis] = min(max(stop + size if stop < 0 else stop, 0), size)
        stride[axis] = step
    if nhwc:
        begin, end, stride = ([v[i] for i in NCHW_TO_NHWC] for v in (begin, end, stride))
    c.emit(c.B.STRIDED_SLICE, [c.get(src), c.const(begin, f"{node.name}/begin", np.int32),
                               c.const(end, f"{node.name}/end", np.int32),
                               c.const(stride, f"{node.name}/strides", np.int32)],
           [c.define(node.output[0], nhwc)], c.fb.StridedSliceOptionsT())


def _gather(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    if node.input[1] not in c.values:
        raise ModelError(f"cannot convert Gather node '{node.name}' to TFLite: indices must be "
                         "constants")
    src = node.input[0]
    size = c.shape(src)[attrs.get("axis", 0) % len(c.shape(src))]
    indices = np.asarray(c.values[node.input[1]]) % size  # ONNX allows negative indices
    options = c.fb.GatherOptionsT()
    options.axis = attrs.get("axis", 0) % len(c.shape(src))
    c.emit(c.B.GATHER, [c.get(src, nhwc=False),
                        c.const(indices, f"{node.name}/indices", np.int32)],
           [c.define(node.output[0], False)], options)


def _reshape(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    shape = c.shape(node.output[0])
    x = c.get(node.input[0], nhwc=False)
    options = c.fb.ReshapeOptionsT()
    options.newShape = shape
    c.emit(c.B.RESHAPE, [x, c.const(shape, f"{node.name}/shape", np.int32)],
           [c.define(node.output[0], False)], options)


def _transpose(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    src = node.input[0]
    rank = len(c.shape(src))
    perm = list(attrs.get("perm", range(rank)[::-1]))
    if c.nhwc(src):  # read the ONNX view straight from the NHWC tensor
        perm = [NHWC_TO_NCHW[p] for p in perm]
    index = c.get(src)
    out = c.transpose(index, perm, c.tensors[index].shape, node.output[0])
    c.stored[node.output[0]] = (out, False)


def _softmax(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    src = node.input[0]
    rank = len(c.shape(src))
    axis = attrs.get("axis", -1) % rank
    nhwc = c.nhwc(src)
    last = (NHWC_AXIS[axis] if nhwc else axis) == rank - 1
    if last:
        c.emit(c.B.SOFTMAX, [c.get(src)], [c.define(node.output[0], nhwc)],
               _softmax_options(c))
        return
    # Softmax over another axis: move it last (ONNX layout), apply, move it back.
    x = c.get(src, nhwc=False)
    shape = c.shape(src)
    perm = [i for i in range(rank) if i != axis] + [axis]
    moved = c.transpose(x, perm, shape, f"{node.output[0]}/moved")
    soft = c.op(c.B.SOFTMAX, [moved], c.tensors[moved].shape, f"{node.output[0]}/softmax",
                _softmax_options(c))
    back = c.transpose(soft, list(np.argsort(perm)), c.tensors[soft].shape, node.output[0])
    c.stored[node.output[0]] = (back, False)


def _softmax_options(c: _Converter) -> Any:
    options = c.fb.SoftmaxOptionsT()
    options.beta = 1.0
    return options


def _pad(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    src = node.input[0]
    rank = len(c.shape(src))
    pads = c.values[node.input[1]].tolist() if len(node.input) > 1 else list(attrs["pads"])
    value = float(c.values[node.input[2]]) if len(node.input) > 2 and node.input[2] else 0.0
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    paddings = [[pads[i], pads[i + rank]] for i in range(rank)]
    nhwc = c.nhwc(src)
    if nhwc:
        paddings = [paddings[i] for i in NCHW_TO_NHWC]
    inputs = [c.get(src), c.const(paddings, f"{node.name}/paddings", np.int32)]
    out = [c.define(node.output[0], nhwc)]
    if mode == "reflect":
        options = c.fb.MirrorPadOptionsT()
        options.mode = c.fb.MirrorPadMode.REFLECT
        c.emit(c.B.MIRROR_PAD, inputs, out, options)
    elif mode != "constant":
        raise ModelError(f"cannot convert Pad node '{node.name}' to TFLite: mode '{mode}'")
    elif value == 0.0:
        c.emit(c.B.PAD, inputs, out)
    else:
        c.emit(c.B.PADV2, inputs + [c.const(np.float32(value), f"{node.name}/value")], out)


def _resize(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    def text(key: str, default: str) -> str:
        value = attrs.get(key, default)
        return value.decode() if isinstance(value, bytes) else value

    mode, coords = text("mode", "nearest"), text("coordinate_transformation_mode", "half_pixel")
    nearest = text("nearest_mode", "round_prefer_floor")
    y = c.shape(node.output[0])
    supported = (mode == "nearest" and coords == "asymmetric" and nearest == "floor") or \
        (mode == "linear" and coords in ("half_pixel", "pytorch_half_pixel", "asymmetric",
                                         "align_corners"))
    if len(y) != 4 or not supported:
        raise ModelError(f"cannot convert Resize node '{node.name}' ({mode}, {coords}) to "
                         "TFLite: only 2-D nearest/asymmetric/floor and linear resizes")
    if mode == "nearest":
        code, options = c.B.RESIZE_NEAREST_NEIGHBOR, c.fb.ResizeNearestNeighborOptionsT()
    else:
        code, options = c.B.RESIZE_BILINEAR, c.fb.ResizeBilinearOptionsT()
        options.alignCorners = coords == "align_corners"
        options.halfPixelCenters = coords in ("half_pixel", "pytorch_half_pixel")
    c.emit(code, [c.get(node.input[0], nhwc=True),
                  c.const(y[2:], f"{node.name}/size", np.int32)],
           [c.define(node.output[0], True)], options)


def _batch_norm(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    scale, bias, mean, var = (c.weight(node, i) for i in range(1, 5))
    gain = scale / np.sqrt(var + attrs.get("epsilon", 1e-5))
    shift = bias - mean * gain
    src = node.input[0]
    rank = len(c.shape(src))
    nhwc = c.nhwc(src)
    per_channel = (lambda v: v) if nhwc or rank <= 2 else \
        (lambda v: v.reshape((-1,) + (1,) * (rank - 2)))
    x = c.get(src)
    scaled = c.op(c.B.MUL, [x, c.const(per_channel(gain), f"{node.name}/gain")],
                  c.tensors[x].shape, f"{node.output[0]}/scaled", c.fb.MulOptionsT())
    c.emit(c.B.ADD, [scaled, c.const(per_channel(shift), f"{node.name}/shift")],
           [c.define(node.output[0], nhwc)], c.fb.AddOptionsT())


def _layer_norm(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    shape = c.shape(node.input[0])
    axis = attrs.get("axis", -1) % len(shape)
    axes = list(range(axis, len(shape)))
    x = c.get(node.input[0], nhwc=False)
    name = node.output[0]
    keep = c.fb.ReducerOptionsT()
    keep.keepDims = True
    reduced = [*shape[:axis], *[1] * len(axes)]
    axes_t = c.const(axes, f"{node.name}/axes", np.int32)
    mean = c.op(c.B.MEAN, [x, axes_t], reduced, f"{name}/mean", keep)
    centred = c.op(c.B.SUB, [x, mean], shape, f"{name}/centred", c.fb.SubOptionsT())
    square = c.op(c.B.MUL, [centred, centred], shape, f"{name}/square", c.fb.MulOptionsT())
    var = c.op(c.B.MEAN, [square, axes_t], reduced, f"{name}/var", keep)
    var = c.op(c.B.ADD, [var, c.const(np.float32(attrs.get("epsilon", 1e-5)), f"{name}/eps")],
               reduced, f"{name}/var_eps", c.fb.AddOptionsT())
    inv = c.op(c.B.RSQRT, [var], reduced, f"{name}/rsqrt")
    normed = c.op(c.B.MUL, [centred, inv], shape, f"{name}/normed", c.fb.MulOptionsT())
    scale, bias = c.weight(node, 1), c.optional(node, 2)
    out = [c.define(node.output[0], False)]
    if bias is None:
        c.emit(c.B.MUL, [normed, c.const(scale, f"{name}/scale")], out, c.fb.MulOptionsT())
        return
    scaled = c.op(c.B.MUL, [normed, c.const(scale, f"{name}/scale")], shape, f"{name}/scaled",
                  c.fb.MulOptionsT())
    c.emit(c.B.ADD, [scaled, c.const(bias, f"{name}/bias")], out, c.fb.AddOptionsT())


def _identity(c: _Converter, node: onnx.NodeProto, attrs: dict) -> None:
    if node.op_type == "Cast" and onnx.helper.tensor_dtype_to_np_dtype(attrs["to"]).kind != "f":
        raise ModelError(f"cannot convert Cast node '{node.name}' to a non-float type to TFLite")
    src = node.input[0]
    if src in c.values:
        c.values[node.output[0]] = c.values[src]
    elif node.op_type == "Cast" and c.tensors[c.get(src)].type != c.fb.TensorType.FLOAT32:
        c.emit(c.B.CAST, [c.get(src)], [c.define(node.output[0], c.nhwc(src))])  # indices
    else:
        c.alias(node.output[0], src)


HANDLERS: dict[str, Handler] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "Gemm": _gemm, "MatMul": _matmul,
    **{op: _binary for op in BINARY}, "Pow": _pow, **{op: _unary for op in UNARY},
    "Clip": _clip, "HardSigmoid": _hard_sigmoid, "MaxPool": _pool, "AveragePool": _pool,
    "GlobalAveragePool": _global_pool, "GlobalMaxPool": _global_pool,
    **{op: _reduce for op in REDUCE}, "ArgMax": _arg_extreme, "ArgMin": _arg_extreme,
    "Concat": _concat, "Gather": _gather, "Split": _split, "Slice": _slice,
    "Reshape": _reshape, "Flatten": _reshape, "Squeeze": _reshape, "Unsqueeze": _reshape,
    "Transpose": _transpose, "Softmax": _softmax, "Pad": _pad, "Resize": _resize,
    "BatchNormalization": _batch_norm, "LayerNormalization": _layer_norm,
    "Identity": _identity, "Dropout": _identity, "Cast": _identity,
}
