"""Small ONNX models built directly with ``onnx.helper``: the test models of the fusion tester and
the kernel models of the predictor builder.

A :class:`GraphBuilder` appends ops in NCHW float32 (opset 17) with seeded random weights, so the
same calls always give the same file (the results store keys measurements by file content)::

    g = GraphBuilder(seed=0)
    x = g.input([1, 16, 56, 56])
    y = g.apply("relu", g.conv(x, 32, kernel=3, stride=2))
    g.output(y)
    onnx.save(g.model(), "conv-relu.onnx")

:meth:`GraphBuilder.apply` adds one op *kind* (the names of :mod:`edgemeter.kernels.kinds` plus a
few pattern types), which is how fusion pairs and kernel types are turned into models.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17

# Kinds apply() can add after any 4-D activation, keeping its shape (and the ops they become).
SHAPE_PRESERVING = ("relu", "relu6", "sigmoid", "hsigmoid", "hswish", "swish", "gelu", "bn",
                    "add", "mul", "softmax", "layernorm", "reshape")


class GraphBuilder:
    def __init__(self, seed: int = 0, name: str = "edgemeter-kernel"):
        self.rng = np.random.default_rng(seed)
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.shapes: dict[str, list[int]] = {}
        self._count = 0

    # -- plumbing ---------------------------------------------------------------------------

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def input(self, shape: Sequence[int]) -> str:
        name = f"input_{len(self.inputs)}" if self.inputs else "input"
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        self.shapes[name] = list(shape)
        return name

    def output(self, name: str) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))

    def const(self, value: np.ndarray | Sequence, dtype: Any = np.float32) -> str:
        name = self._name("const")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, shape: Sequence[int]) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
        scale = 1.0 / np.sqrt(max(fan_in, 1))
        return self.const(self.rng.standard_normal(shape) * scale)

    def op(self, op_type: str, inputs: Sequence[str], shape: Sequence[int] | None,
           **attrs: Any) -> str:
        """Add one node; ``shape`` is the output shape this builder tracks (None: unknown)."""
        name = self._name(op_type)
        out = f"{name}_out"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=name, **attrs))
        if shape is not None:
            self.shapes[out] = list(shape)
        return out

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                  self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="edgemeter")
        model.ir_version = 8  # every runtime installed here reads IR 8
        return onnx.shape_inference.infer_shapes(model)

    # -- layers -----------------------------------------------------------------------------

    def conv(self, x: str, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> str:
        n, cin, h, w = self.shapes[x]
        pad = kernel // 2
        oh, ow = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
        return self.op("Conv", [x, self.weight([cout, cin // groups, kernel, kernel]),
                                self.const(np.zeros(cout))], [n, cout, oh, ow],
                       kernel_shape=[kernel, kernel], strides=[stride, stride],
                       pads=[pad] * 4, group=groups)

    def dwconv(self, x: str, kernel: int = 3, stride: int = 1) -> str:
        channels = self.shapes[x][1]
        return self.conv(x, channels, kernel, stride, groups=channels)

    def convtranspose(self, x: str, cout: int, kernel: int = 2, stride: int = 2) -> str:
        n, cin, h, w = self.shapes[x]
        oh, ow = (h - 1) * stride + kernel, (w - 1) * stride + kernel
        return self.op("ConvTranspose", [x, self.weight([cin, cout, kernel, kernel]),
                                         self.const(np.zeros(cout))], [n, cout, oh, ow],
                       kernel_shape=[kernel, kernel], strides=[stride, stride])

    def fc(self, x: str, cout: int) -> str:
        """MatMul with a constant weight plus bias (what torch exports for nn.Linear)."""
        shape = self.shapes[x]
        y = self.op("MatMul", [x, self.weight([shape[-1], cout])], [*shape[:-1], cout])
        return self.op("Add", [y, self.const(np.zeros(cout))], [*shape[:-1], cout])

    def matmul(self, a: str, b: str) -> str:
        sa, sb = self.shapes[a], self.shapes[b]
        return self.op("MatMul", [a, b], [*sa[:-1], sb[-1]])

    def pool(self, x: str, kind: str, kernel: int = 3, stride: int = 2) -> str:
        n, c, h, w = self.shapes[x]
        pad = kernel // 2
        oh, ow = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
        op = "MaxPool" if kind == "maxpool" else "AveragePool"
        return self.op(op, [x], [n, c, oh, ow], kernel_shape=[kernel, kernel],
                       strides=[stride, stride], pads=[pad] * 4)

    def global_pool(self, x: str) -> str:
        n, c, _, _ = self.shapes[x]
        return self.op("GlobalAveragePool", [x], [n, c, 1, 1])

    def bn(self, x: str) -> str:
        c = self.shapes[x][1]
        scale, bias = self.const(1 + 0.1 * self.rng.standard_normal(c)), self.const(np.zeros(c))
        mean, var = self.const(np.zeros(c)), self.const(np.ones(c))
        return self.op("BatchNormalization", [x, scale, bias, mean, var], self.shapes[x])

    def concat(self, xs: Sequence[str]) -> str:
        shape = list(self.shapes[xs[0]])
        shape[1] = sum(self.shapes[x][1] for x in xs)
        return self.op("Concat", list(xs), shape, axis=1)

    def layernorm(self, x: str) -> str:
        c = self.shapes[x][-1]
        return self.op("LayerNormalization", [x, self.const(np.ones(c)), self.const(np.zeros(c))],
                       self.shapes[x], axis=-1, epsilon=1e-5)

    def gelu(self, x: str) -> str:
        """Erf GELU written out as torch exports it (Div, Erf, Add, Mul, Mul)."""
        shape = self.shapes[x]
        e = self.op("Erf", [self.op("Div", [x, self.const(np.sqrt(2.0))], shape)], shape)
        half = self.op("Mul", [x, self.op("Add", [e, self.const(1.0)], shape)], shape)
        return self.op("Mul", [half, self.const(0.5)], shape)

    def reshape(self, x: str) -> str:
        """Flatten the spatial dims (N, C, H·W): a pure data-movement op."""
        n, c, *rest = self.shapes[x]
        shape = [n, c, int(np.prod(rest)) if rest else 1]
        return self.op("Reshape", [x, self.const(shape, np.int64)], shape)

    def se(self, x: str, ratio: float = 0.25) -> str:
        c = self.shapes[x][1]
        s = self.global_pool(x)
        s = self.apply("relu", self.conv(s, max(8, int(c * ratio) // 8 * 8), kernel=1))
        s = self.apply("hsigmoid", self.conv(s, c, kernel=1))
        return self.op("Mul", [x, s], self.shapes[x])

    def channelshuffle(self, x: str, groups: int = 2) -> str:
        n, c, h, w = self.shapes[x]
        y = self.op("Reshape", [x, self.const([n, groups, c // groups, h, w], np.int64)],
                    [n, groups, c // groups, h, w])
        y = self.op("Transpose", [y], [n, c // groups, groups, h, w], perm=[0, 2, 1, 3, 4])
        return self.op("Reshape", [y, self.const([n, c, h, w], np.int64)], [n, c, h, w])

    def apply(self, kind: str, x: str, other: str | None = None) -> str:
        """Add the op of a shape-preserving ``kind`` after ``x``. ``add`` and ``mul`` take
        ``other`` (a tensor of the same shape); without it, a new graph input is made."""
        shape = self.shapes[x]
        if kind in ("add", "mul"):
            other = other if other is not None else self.input(shape)
            return self.op("Add" if kind == "add" else "Mul", [x, other], shape)
        simple = {"relu": ("Relu", {}), "sigmoid": ("Sigmoid", {}),
                  "hswish": ("HardSwish", {}),
                  "hsigmoid": ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
                  "softmax": ("Softmax", {"axis": -1})}
        if kind in simple:
            op, attrs = simple[kind]
            return self.op(op, [x], shape, **attrs)
        if kind == "relu6":
            return self.op("Clip", [x, self.const(0.0), self.const(6.0)], shape)
        if kind == "swish":
            return self.op("Mul", [x, self.op("Sigmoid", [x], shape)], shape)
        if kind == "bn":
            return self.bn(x)
        if kind == "layernorm":
            return self.layernorm(x)
        if kind == "gelu":
            return self.gelu(x)
        if kind == "reshape":
            return self.reshape(x)
        raise ValueError(f"no shape-preserving op for kind '{kind}'")
