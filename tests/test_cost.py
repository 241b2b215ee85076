"""Cost rules against FLOPs computed by hand (a MAC counts as 2), on one-op ONNX graphs and on a
small PyTorch net."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgemeter.cost import RULES, annotate
from edgemeter.graph import Cost
from edgemeter.importers import load_graph


def one_op(op: str, inputs: dict[str, list[int]], weights: dict[str, np.ndarray] | None = None,
           order: list[str] | None = None, domain: str = "", opset: int = 17, **attrs) -> Cost:
    """Import a one-node model (activations ``inputs``, constants ``weights``; ``order`` gives
    the node's input names, "" for an omitted optional one) and return the node's cost."""
    weights = weights or {}
    order = order if order is not None else [*inputs, *weights]
    node = helper.make_node(op, order, ["y"], domain=domain, **attrs)
    graph = helper.make_graph(
        [node], op, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                     for n, s in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, n) for n, v in weights.items()])
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    g = load_graph(helper.make_model(graph, opset_imports=opsets))
    assert len(g.nodes) == 1
    return g.nodes[0].cost


def w(*shape: int, dtype=np.float32) -> np.ndarray:
    return np.ones(shape, dtype)


@pytest.mark.parametrize("x, weight, attrs, flops", [
    # out 1x4x8x8 = 256 outputs x (3x3x3) MACs, plus one bias add per output
    ([1, 3, 8, 8], w(4, 3, 3, 3), {"pads": [1, 1, 1, 1]}, 2 * 256 * 27),
    # stride 2: out 1x4x4x4
    ([1, 3, 8, 8], w(4, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}, 2 * 64 * 27),
    # groups 2: each output sees Cin/2 = 2 channels; out 1x6x8x8
    ([1, 4, 8, 8], w(6, 2, 3, 3), {"pads": [1, 1, 1, 1], "group": 2}, 2 * 384 * 18),
    # depthwise: one channel per output; out 1x4x8x8
    ([1, 4, 8, 8], w(4, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 4}, 2 * 256 * 9),
    # dilation 2 without padding: 5x5 receptive field, out 1x4x4x4, still 27 taps
    ([1, 3, 8, 8], w(4, 3, 3, 3), {"dilations": [2, 2]}, 2 * 64 * 27),
])
def test_conv(x, weight, attrs, flops):
    cost = one_op("Conv", {"x": x}, {"w": weight}, **attrs)
    assert cost.flops == flops
    assert cost.params == weight.size
    assert cost.exact


def test_conv_bias_counts_one_add_per_output():
    cost = one_op("Conv", {"x": [1, 3, 8, 8]}, {"w": w(4, 3, 3, 3), "b": w(4)},
                  pads=[1, 1, 1, 1])
    assert cost.flops == 2 * 256 * 27 + 256
    assert cost.params == 108 + 4
    # reads x, weight and bias; writes the 1x4x8x8 output (float32)
    assert cost.bytes_read == 4 * (192 + 108 + 4)
    assert cost.bytes_written == 4 * 256


def test_conv_transpose():
    # each of the 1x4x4x4 = 64 inputs scatters into Cout x 3 x 3 = 18 outputs; out 1x2x9x9
    cost = one_op("ConvTranspose", {"x": [1, 4, 4, 4]}, {"w": w(4, 2, 3, 3), "b": w(2)},
                  strides=[2, 2])
    assert cost.flops == 2 * 64 * 18 + 2 * 9 * 9


@pytest.mark.parametrize("b, attrs", [(w(8, 5), {}), (w(5, 8), {"transB": 1})])
def test_gemm(b, attrs):
    cost = one_op("Gemm", {"a": [2, 8]}, {"b": b, "c": w(5)}, **attrs)
    assert cost.flops == 2 * 2 * 5 * 8 + 2 * 5
    assert cost.params == 45


@pytest.mark.parametrize("a, b, flops", [
    ([2, 3, 4, 5], [2, 3, 5, 6], 2 * (2 * 3 * 4 * 6) * 5),   # batched
    ([2, 3, 4, 5], [5, 6], 2 * (2 * 3 * 4 * 6) * 5),         # broadcast weight
    ([4, 5], [2, 5, 6], 2 * (2 * 4 * 6) * 5),                # broadcast lhs
    ([5], [5, 6], 2 * 6 * 5),                                # vector-matrix
])
def test_matmul(a, b, flops):
    assert one_op("MatMul", {"a": a, "b": b}).flops == flops


@pytest.mark.parametrize("op, attrs, flops", [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 32 * 9),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}, 32 * 4),
    ("GlobalAveragePool", {}, 128),
    ("GlobalMaxPool", {}, 128),
])
def test_pooling(op, attrs, flops):
    # input 1x2x8x8 = 128 elements; strided pools give 1x2x4x4 = 32 outputs
    cost = one_op(op, {"x": [1, 2, 8, 8]}, **attrs)
    assert cost.flops == flops
    assert cost.params == 0


def test_layer_norm():
    # 2x4x8 = 64 elements: 5 for statistics and normalisation, 1 scale, 1 bias
    cost = one_op("LayerNormalization", {"x": [2, 4, 8]}, {"s": w(8), "b": w(8)}, axis=-1)
    assert cost.flops == 7 * 64
    assert cost.params == 16


def test_batch_norm():
    weights = {n: w(4) for n in ("scale", "bias", "mean", "var")}
    cost = one_op("BatchNormalization", {"x": [1, 4, 2, 2]}, weights)
    assert (cost.flops, cost.params) == (2 * 16, 16)


def test_softmax():
    assert one_op("Softmax", {"x": [2, 10]}, axis=-1).flops == 5 * 20


@pytest.mark.parametrize("mode, flops", [("nearest", 0), ("linear", 2 * 4 * 768)])
def test_resize(mode, flops):
    # 1x3x8x8 -> 1x3x16x16 = 768 outputs; bilinear reads 4 taps per output
    scales = np.array([1, 1, 2, 2], np.float32)
    cost = one_op("Resize", {"x": [1, 3, 8, 8]}, {"scales": scales},
                  order=["x", "", "scales"], mode=mode)
    assert cost.flops == flops
    assert cost.params == 0  # scales configure the op, they are not weights
    assert cost.bytes_written == 4 * 768


@pytest.mark.parametrize("op, per_element", [("Relu", 1), ("HardSwish", 5), ("Sigmoid", 4),
                                             ("Gelu", 5), ("Tanh", 1)])
def test_activations(op, per_element):
    cost = one_op(op, {"x": [1, 4, 5]}, opset=20)  # Gelu is an ONNX op from opset 20
    assert cost.flops == per_element * 20


def test_elementwise_broadcast_and_scalar_constants_are_not_params():
    cost = one_op("Add", {"x": [2, 3, 4]}, {"k": np.array(3.0, np.float32)})
    assert (cost.flops, cost.params) == (24, 0)
    cost = one_op("Mul", {"x": [2, 3, 4]}, {"scale": w(4)})
    assert (cost.flops, cost.params) == (24, 4)


@pytest.mark.parametrize("op, attrs", [("Transpose", {"perm": [0, 2, 1, 3]}),
                                       ("Identity", {}), ("Flatten", {"axis": 1})])
def test_data_movement_costs_bytes_only(op, attrs):
    cost = one_op(op, {"x": [1, 2, 3, 4]}, **attrs)
    assert (cost.flops, cost.params, cost.exact) == (0, 0, True)
    assert cost.bytes_read == cost.bytes_written == 4 * 24


def test_reduce_mean_divides_once_per_output():
    cost = one_op("ReduceMean", {"x": [2, 3, 4]}, axes=[2], keepdims=1)
    assert cost.flops == 24 + 6


def test_op_without_rule_keeps_bytes_and_is_listed_once():
    nodes = [helper.make_node("Frob", [i], [o], domain="example.custom")
             for i, o in (("x", "a"), ("a", "y"))]
    graph = helper.make_graph(nodes, "custom",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    g = load_graph(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)]))
    assert "Frob" not in RULES
    assert [n.op for n in g.nodes] == ["Frob", "Frob"]
    first = g.nodes[0].cost
    assert (first.flops, first.bytes_read, first.exact) == (0, 32, False)
    assert sum("Frob" in w for w in g.warnings) == 1
    annotate(g)  # annotating again does not repeat the warning
    assert sum("Frob" in w for w in g.warnings) == 1
    assert not g.total_cost().exact


def test_torch_net_total_matches_hand_count():
    pytest.importorskip("torch")
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    g = load_graph(net.eval(), {"": [1, 3, 16, 16]})
    assert "BatchNormalization" not in {n.op for n in g.nodes}  # folded into the Conv
    total = g.total_cost()
    conv = 2 * (8 * 16 * 16) * 27 + 8 * 16 * 16
    relu = pool = 8 * 16 * 16
    linear = 2 * 10 * 8 + 10
    assert total.flops == conv + relu + pool + linear
    assert total.params == (8 * 27 + 8) + (10 * 8 + 10)
    assert total.exact


def test_an_annotated_graph_is_not_annotated_again():
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    g = load_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    marked = Cost(flops=123)
    g.nodes[0].cost = marked
    assert load_graph(g) is g and g.nodes[0].cost is marked
    g.nodes[0].cost = None  # a node whose cost was cleared is annotated again
    assert load_graph(g).nodes[0].cost.bytes_read > 0
