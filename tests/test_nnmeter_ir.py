"""nn-Meter IR import and export: both of nn-Meter's dialects, round trips through real models."""
from __future__ import annotations

import json

import pytest

from edgemeter.errors import ModelError
from edgemeter.importers import load_graph
from edgemeter.importers.nnmeter_ir import export_nnmeter_ir, import_nnmeter_ir

torch = pytest.importorskip("torch")
nn = torch.nn


class _Block(nn.Module):
    """Inverted residual with h-swish, ReLU6 and an SE gate: MobileNetV3's mix of ops."""

    def __init__(self, c: int, expand: int, se: bool):
        super().__init__()
        h = c * expand
        self.pw = nn.Sequential(nn.Conv2d(c, h, 1), nn.BatchNorm2d(h), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(h, h, 3, padding=1, groups=h), nn.BatchNorm2d(h),
                                nn.ReLU6())
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(h, 8, 1), nn.ReLU(),
                                nn.Conv2d(8, h, 1), nn.Hardsigmoid()) if se else None
        self.project = nn.Sequential(nn.Conv2d(h, c, 1), nn.BatchNorm2d(c))

    def forward(self, x):
        y = self.dw(self.pw(x))
        if self.se is not None:
            y = y * self.se(y)
        return x + self.project(y)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU())
        self.blocks = nn.Sequential(_Block(16, 2, True), _Block(16, 3, False))
        self.grouped = nn.Conv2d(16, 32, 3, padding=1, groups=4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(self.grouped(self.blocks(self.stem(x))))
        a, b = torch.split(torch.cat([x, x * 2], 1), [40, 24], 1)
        x = torch.cat([torch.relu(b), a * 3], 1)[:, :32]
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return torch.softmax(self.fc(x), -1)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("nnmeter") / "net.onnx"
    torch.onnx.export(_Net().eval(), torch.randn(1, 3, 32, 32), path, dynamo=False,
                      opset_version=17)
    return path


def _summary(graph):
    return [(n.op, [graph.tensors[t].shape for t in n.outputs], n.cost.flops, n.cost.params)
            for n in graph]


def test_round_trip_keeps_ops_shapes_and_costs(onnx_path, tmp_path):
    graph = load_graph(onnx_path)
    exported = export_nnmeter_ir(graph)
    path = tmp_path / "net.json"
    path.write_text(json.dumps(exported))  # plain JSON, as nn-Meter users store it
    back = load_graph(path)
    assert _summary(back) == _summary(graph)
    assert back.total_cost().flops == graph.total_cost().flops > 0
    assert not back.warnings
    # Shapes are NHWC in the nn-Meter dict; inputs are Placeholders that nn-Meter ignores.
    (name,) = graph.inputs
    assert exported[name]["attr"]["type"] == "Placeholder"
    assert exported[name]["attr"]["output_shape"] == [[1, 32, 32, 3]]
    first_conv = next(n for n in graph if n.op == "Conv")
    entry = exported[first_conv.name]
    assert entry["inbounds"] == [name]
    assert entry["attr"]["output_shape"] == [[1, 16, 16, 16]]
    assert entry["attr"]["attr"]["weight_shape"] == [3, 3, 3, 16]  # [kh, kw, cin, cout]


def test_split_outputs_follow_outbounds(onnx_path):
    graph = load_graph(onnx_path)
    back = import_nnmeter_ir(export_nnmeter_ir(graph))
    split = next(n for n in back if n.op == "Split")
    # cat([relu(b), a * 3]): the second output feeds the Relu, the first the Mul.
    assert [c.op for c in back.consumers(split.outputs[1])] == ["Relu"]
    assert [c.op for c in back.consumers(split.outputs[0])] == ["Mul"]
    assert [back.tensors[t].shape[1] for t in split.outputs] == [40, 24]


def _node(kind, inbounds, outbounds, in_shapes, out_shapes, **attr):
    return {"inbounds": inbounds, "outbounds": outbounds,
            "attr": {"type": kind, "input_shape": in_shapes, "output_shape": out_shapes,
                     "attr": attr}}


def test_tensorflow_dialect_with_hand_counted_flops():
    """What nn-Meter's frozen-pb converter writes: TF op names, NHWC attrs, separate BiasAdd."""
    ir = {
        "input": _node("Placeholder", [], ["conv"], [], [[1, 32, 32, 3]], shape=[1, 32, 32, 3]),
        "conv": _node("Conv2D", ["input"], ["bn"], [[1, 32, 32, 3]], [[1, 16, 16, 16]],
                      strides=[1, 2, 2, 1], dilations=[1, 1, 1, 1], padding=b"SAME",
                      weight_shape=[3, 3, 3, 16]),
        "bn": _node("FusedBatchNormV3", ["conv"], ["relu"], [[1, 16, 16, 16]], [[1, 16, 16, 16]]),
        "relu": _node("Relu6", ["bn"], ["dw", "add"], [[1, 16, 16, 16]], [[1, 16, 16, 16]]),
        "dw": _node("DepthwiseConv2dNative", ["relu"], ["add"], [[1, 16, 16, 16]],
                    [[1, 16, 16, 16]], strides=[1, 1, 1, 1], padding="SAME",
                    weight_shape=[3, 3, 16, 1]),
        "add": _node("AddV2", ["dw", "relu"], ["mean"], [[1, 16, 16, 16]] * 2, [[1, 16, 16, 16]]),
        "mean": _node("Mean", ["add"], ["fc"], [[1, 16, 16, 16]], [[1, 16]]),
        "fc": _node("MatMul", ["mean"], ["bias"], [[1, 16]], [[1, 10]]),
        "bias": _node("BiasAdd", ["fc"], ["prob"], [[1, 10], [10]], [[1, 10]]),
        "prob": _node("Softmax", ["bias"], [], [[1, 10]], [[1, 10]]),
    }
    graph = load_graph(ir)
    assert [n.op for n in graph] == ["Conv", "BatchNormalization", "Clip", "Conv", "Add",
                                     "ReduceMean", "MatMul", "Add", "Softmax"]
    nodes = {n.name: n for n in graph}
    assert graph.tensors["conv"].shape == [1, 16, 16, 16]
    assert nodes["conv"].attrs["pads"] == [0, 0, 1, 1]  # TF SAME pads the end on stride 2
    assert nodes["conv"].cost.flops == 2 * 16 * 16 * 16 * 3 * 3 * 3  # no bias in TF Conv2D
    assert nodes["conv"].cost.params == 16 * 3 * 3 * 3
    assert nodes["dw"].attrs["group"] == 16
    assert nodes["dw"].cost.flops == 2 * 16 * 16 * 16 * 3 * 3
    assert nodes["bn"].cost.params == 4 * 16
    assert nodes["mean"].attrs == {"axes": [2, 3], "keepdims": 0}
    assert nodes["fc"].cost.params == 16 * 10 and nodes["fc"].cost.flops == 2 * 16 * 10
    assert nodes["bias"].cost.params == 10
    assert [graph.tensors[t].value for t in nodes["relu"].inputs[1:]] == [[0.0], [6.0]]
    assert graph.inputs == ["input"] and graph.outputs == ["prob"]


def test_onnx_dialect_as_nnmeter_writes_it():
    """nn-Meter's ONNX converter: ONNX names and attrs, no input nodes, and ``"attr": {}`` for
    the nodes whose shapes it lost (which crash nn-Meter itself with KeyError: 'type')."""
    ir = {
        "Conv_0": _node("Conv", [], ["Relu_1"], [[1, 16, 16, 8]], [[1, 8, 8, 32]],
                        kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], group=4),
        "Relu_1": _node("Relu", ["Conv_0"], ["GlobalAveragePool_2"], [[1, 8, 8, 32]],
                        [[1, 8, 8, 32]]),
        "GlobalAveragePool_2": _node("GlobalAveragePool", ["Relu_1"], ["Shape_3", "Flatten_4"],
                                     [[1, 8, 8, 32]], [[1, 1, 1, 32]]),
        "Shape_3": {"inbounds": ["GlobalAveragePool_2"], "outbounds": [], "attr": {}},
        "Flatten_4": _node("Flatten", ["GlobalAveragePool_2"], ["Gemm_5"], [[1, 1, 1, 32]],
                           [[1, 32]], axis=1),
        "Gemm_5": _node("Gemm", ["Flatten_4"], ["Swish_6"], [[1, 32]], [[1, 10]], transB=1),
        "Swish_6": _node("Swish", ["Gemm_5"], [], [[1, 10]], [[1, 10]]),
    }
    graph = load_graph(ir)
    nodes = {n.name: n for n in graph}
    assert graph.inputs == ["input"] and graph.tensors["input"].shape == [1, 8, 16, 16]
    conv = nodes["Conv_0"]
    assert graph.tensors[conv.inputs[1]].shape == [32, 2, 3, 3]  # [COUT, CIN/g, k, k]
    assert conv.cost.flops == 2 * 32 * 8 * 8 * 2 * 9 + 32 * 8 * 8  # with the bias
    assert graph.tensors[nodes["Gemm_5"].inputs[1]].shape == [10, 32]
    assert nodes["Gemm_5"].cost.params == 10 * 32 + 10
    assert nodes["Shape_3"].op == "Unknown" and nodes["Swish_6"].op == "Swish"
    assert any("Shape_3" in w for w in graph.warnings)
    assert any("'Swish' has no mapping" in w for w in graph.warnings)


def test_identity_and_const_nodes_are_skipped():
    ir = {
        "x": _node("Placeholder", [], ["id"], [], [[1, 4]]),
        "id": _node("Identity", ["x"], ["mul"], [[1, 4]], [[1, 4]]),
        "k": _node("Const", [], ["mul"], [], [[1]]),
        "mul": _node("Mul", ["id", "k"], [], [[1, 4], [1]], [[1, 4]]),
    }
    graph = import_nnmeter_ir(ir)
    (mul,) = graph.nodes
    assert mul.inputs[0] == "x" and graph.tensors[mul.inputs[1]].constant


@pytest.mark.parametrize("data, message", [
    ([1, 2], "expected a non-empty dict"),
    ({}, "expected a non-empty dict"),
    ({"a": {"inbounds": []}}, "node 'a' has no 'attr' dict"),
    ({"a": {"inbounds": "b", "attr": {}}}, "non-list 'inbounds'"),
    ({"a": {"inbounds": ["ghost"], "attr": {"type": "Relu"}}}, "inbound 'ghost'"),
    ({"a": _node("Relu", [], [], [[1, "x"]], [[1, 2]])}, "bad shape"),
    ({"a": _node("Relu", ["b"], ["b"], [[1, 2]], [[1, 2]]),
      "b": _node("Relu", ["a"], ["a"], [[1, 2]], [[1, 2]])}, "cycle"),
])
def test_malformed_input_is_one_line_model_error(data, message):
    with pytest.raises(ModelError, match=message) as info:
        import_nnmeter_ir(data)
    assert "\n" not in str(info.value)
