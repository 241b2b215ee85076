"""ONNX and PyTorch import: static shapes, constant folding, data-dependent ops, bad input."""
from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgemeter.errors import ConfigError, MissingExtraError, ModelError
from edgemeter.graph import Graph
from edgemeter.importers import load_graph
from edgemeter.importers.onnx import import_onnx

torch = pytest.importorskip("torch")
nn = torch.nn

FLOAT = TensorProto.FLOAT


def value_info(name: str, shape: list | None, dtype: int = FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def make_model(nodes, inputs, outputs, initializers=(), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), n)
                               for n, v in dict(initializers).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def export(module: nn.Module, shape: list[int], dynamic: dict[int, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(module.eval(), torch.zeros(shape), buffer, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": dynamic} if dynamic else None)
    return buffer.getvalue()


class ChannelShuffle(nn.Module):
    """Conv, then a ShuffleNet channel shuffle and a flatten written with ``view(x.size(0), …)``:
    exported with dynamic dims, every reshape target is a Shape→Gather→Concat chain."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        b, c, h, w = y.shape
        y = y.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)
        return torch.relu(y).view(y.size(0), -1)


@pytest.fixture(scope="module")
def shuffle_onnx() -> onnx.ModelProto:
    return onnx.load_model_from_string(export(ChannelShuffle(), [1, 3, 16, 16],
                                              {0: "batch", 2: "height", 3: "width"}))


# -- shapes -------------------------------------------------------------------------------------

def test_shape_chains_fold_to_static_shapes(shuffle_onnx):
    exported_ops = {n.op_type for n in shuffle_onnx.graph.node}
    assert {"Shape", "Gather", "Unsqueeze", "Concat"} <= exported_ops
    g = import_onnx(shuffle_onnx, {"input": [2, 3, 32, 32]})
    assert [n.op for n in g.nodes] == ["Conv", "Reshape", "Transpose", "Reshape", "Relu",
                                       "Reshape"]
    assert all(g.tensors[t].shape is not None for n in g.nodes for t in n.inputs + n.outputs)
    assert g.tensors["output"].shape == [2, 8 * 32 * 32]
    first_reshape = g.nodes[1]
    target = g.tensors[first_reshape.inputs[1]]
    assert target.constant and target.value == [2, 2, 4, 32, 32]
    bias = g.tensors[g.nodes[0].inputs[2]]
    assert bias.constant and bias.shape == [8] and bias.value is None  # weights: shape only
    assert g.tensors[first_reshape.outputs[0]].shape == [2, 2, 4, 32, 32]
    assert not g.warnings


def test_folding_goes_beyond_onnx_data_propagation():
    # Shape arithmetic through float casts: onnx's data propagation gives up on it, folding not.
    consts = {"i0": np.array([0]), "i12": np.array([1, 2]), "two": np.array(2.0, np.float32),
              "m1": np.array([-1])}
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
        helper.make_node("Gather", ["s", "i12"], ["hw"], axis=0),
        helper.make_node("ReduceProd", ["hw"], ["p"], keepdims=1),
        helper.make_node("Cast", ["p"], ["pf"], to=FLOAT),
        helper.make_node("Div", ["pf", "two"], ["half"]),
        helper.make_node("Cast", ["half"], ["hi"], to=TensorProto.INT64),
        helper.make_node("Concat", ["b", "hi", "m1"], ["target"], axis=0),
        helper.make_node("Reshape", ["r", "target"], ["y"]),
    ]
    model = make_model(nodes, [value_info("x", [3, 4, 6])], [value_info("y", None)], consts)
    plain = onnx.shape_inference.infer_shapes(model, data_prop=True)
    assert any(d.HasField("dim_param") for d in plain.graph.output[0].type.tensor_type.shape.dim)
    g = import_onnx(model)
    assert [n.op for n in g.nodes] == ["Relu", "Reshape"]
    assert g.tensors["y"].shape == [3, 12, 2]
    assert g.tensors["target"].value == [3, 12, -1]


def test_dynamic_batch_defaults_to_one_with_a_warning(shuffle_onnx):
    model = onnx.load_model_from_string(export(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()),
                                               [1, 3, 16, 16], {0: "batch"}))
    g = load_graph(model)
    assert g.tensors["input"].shape == [1, 3, 16, 16]
    assert g.tensors["output"].shape == [1, 4, 14, 14]
    assert any("batch" in w and "--input-shape" in w for w in g.warnings)
    g4 = load_graph(model, {"input": [4, 3, 16, 16]})
    assert g4.tensors["output"].shape == [4, 4, 14, 14]
    assert g4.total_cost().flops == 4 * g.total_cost().flops
    assert not g4.warnings
    # The unnamed form applies to the only input.
    assert load_graph(model, {"": [4, 3, 16, 16]}).tensors["output"].shape == [4, 4, 14, 14]


def test_symbolic_non_batch_dim_needs_input_shape(shuffle_onnx):
    with pytest.raises(ModelError, match=r"input 'input'.*symbolic dim 2.*--input-shape input="):
        import_onnx(shuffle_onnx)


@pytest.mark.parametrize("shapes, message", [
    ({"image": [1, 3, 16, 16]}, "not an input"),
    ({"input": [1, 3, 16]}, "rank 3"),
])
def test_bad_input_shapes_are_config_errors(shuffle_onnx, shapes, message):
    with pytest.raises(ConfigError, match=message):
        import_onnx(shuffle_onnx, shapes)


@pytest.mark.parametrize("shapes, shown", [({"input": [0, 3, 16, 16]}, "input=0x3x16x16"),
                                           ({"": [1, 3, -16, 16]}, "1x3x-16x16")])
def test_dims_below_one_are_config_errors(shuffle_onnx, shapes, shown):
    with pytest.raises(ConfigError, match=f"bad input shape {shown}: every dim must be 1"):
        load_graph(shuffle_onnx, shapes)


# -- data-dependent ops -------------------------------------------------------------------------

def ssd_head() -> onnx.ModelProto:
    """Conv features → box and class heads → NonMaxSuppression → gather of the kept scores →
    TopK with k = min(#kept, 10): the post-processing of SSD-style detectors."""
    rng = np.random.default_rng(0)
    consts = {
        "w": rng.random((16, 8, 3, 3), np.float32), "wb": rng.random((4, 16, 1, 1), np.float32),
        "ws": rng.random((3, 16, 1, 1), np.float32), "box_shape": np.array([1, 4, -1]),
        "score_shape": np.array([1, 3, -1]), "max_out": np.array([10]),
        "iou": np.array([0.5], np.float32), "threshold": np.array([0.1], np.float32),
        "two": np.array(2), "axes0": np.array([0]),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["f"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["f"], ["r"]),
        helper.make_node("Conv", ["r", "wb"], ["b"]),
        helper.make_node("Conv", ["r", "ws"], ["s"]),
        helper.make_node("Reshape", ["b", "box_shape"], ["b2"]),
        helper.make_node("Transpose", ["b2"], ["boxes"], perm=[0, 2, 1]),
        helper.make_node("Reshape", ["s", "score_shape"], ["s2"]),
        helper.make_node("Softmax", ["s2"], ["scores"], axis=1),
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou", "threshold"],
                         ["selected"], name="nms"),
        helper.make_node("Gather", ["selected", "two"], ["index"], axis=1),
        helper.make_node("Shape", ["index"], ["kept"]),
        helper.make_node("Concat", ["kept", "max_out"], ["candidates"], axis=0),
        helper.make_node("ReduceMin", ["candidates"], ["k"], keepdims=1),
        helper.make_node("Squeeze", ["scores", "axes0"], ["per_class"]),
        helper.make_node("ReduceMax", ["per_class"], ["best"], axes=[0], keepdims=0),
        helper.make_node("Gather", ["best", "index"], ["picked"], axis=0),
        helper.make_node("TopK", ["picked", "k"], ["top", "top_index"], name="topk"),
        helper.make_node("Mul", ["top", "top"], ["y"], name="after"),
    ]
    return make_model(nodes, [value_info("x", [1, 8, 8, 8])], [value_info("y", None)], consts)


def test_nms_head_imports_with_a_warning_and_everything_after_it():
    g = load_graph(ssd_head())
    ops = [n.op for n in g.nodes]
    assert {"NonMaxSuppression", "TopK", "Mul", "ReduceMin", "Gather"} <= set(ops)
    by_name = {n.name: n for n in g.nodes}
    assert by_name["nms"].data_dependent and by_name["topk"].data_dependent
    assert g.tensors["selected"].shape is None and g.tensors["y"].shape is None
    assert not by_name["after"].cost.exact
    assert any("NonMaxSuppression 'nms'" in w for w in g.warnings)
    # Everything before the NMS keeps exact shapes and costs.
    assert g.tensors["scores"].shape == [1, 3, 64]
    assert all(n.cost.exact for n in g.nodes[:ops.index("NonMaxSuppression")])
    # The graph with its unknown shapes survives the IR JSON round trip.
    again = Graph.from_dict(json.loads(g.to_json()))
    assert [n.name for n in again.nodes] == [n.name for n in g.nodes]


@pytest.mark.parametrize("family", ["mobilenetv3", "shufflenetv2", "densenet", "vit", "ssd"])
def test_zoo_models_import_with_static_shapes(zoo_onnx, family):
    g = load_graph(zoo_onnx(family, dynamic_batch=family == "shufflenetv2"))
    dependent = [n for n in g.nodes if n.data_dependent]
    unknown = [n for n in g.nodes if any(g.tensors[t].shape is None for t in n.outputs)]
    if family == "ssd":
        assert "NonMaxSuppression" in {n.op for n in dependent}
        assert g.nodes[-1].name in {n.name for n in unknown}  # the post-NMS tail is there
    else:
        assert not dependent and not unknown and g.total_cost().exact
        assert "Shape" not in {n.op for n in g.nodes}
    assert "Constant" not in {n.op for n in g.nodes}


# -- structure: names, order, constants, attributes --------------------------------------------

def test_names_order_constants_and_attributes():
    nodes = [
        helper.make_node("LeakyRelu", ["a"], ["y"], alpha=0.1),            # out of order
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(
            np.array([2.0], np.float32))),
        helper.make_node("Mul", ["x", "k"], ["m"], name="scale"),
        helper.make_node("Relu", ["m"], ["a"]),
    ]
    g = import_onnx(make_model(nodes, [value_info("x", [1, 4])], [value_info("y", [1, 4])]))
    assert [n.name for n in g.nodes] == ["scale", "Relu_3", "LeakyRelu_0"]
    assert g.tensors["k"].constant and g.tensors["k"].value == [2.0]  # scalars keep their value
    assert g.nodes[-1].attrs == {"alpha": 0.1}
    json.dumps(g.to_dict())  # plain JSON values only


def test_duplicate_node_names_are_made_unique():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="act"),
             helper.make_node("Relu", ["a"], ["y"], name="act")]
    g = import_onnx(make_model(nodes, [value_info("x", [1, 4])], [value_info("y", [1, 4])]))
    assert len({n.name for n in g.nodes}) == 2 and g.nodes[0].name == "act"


def test_external_data_and_file_import_match_inline(tmp_path):
    model = onnx.load_model_from_string(export(nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(),
                                                             nn.Conv2d(32, 32, 3)),
                                               [1, 3, 16, 16]))
    inline = import_onnx(model)
    path = tmp_path / "external.onnx"
    saved = onnx.ModelProto()
    saved.CopyFrom(model)  # saving with external data rewrites the proto it is given
    onnx.save_model(saved, path, save_as_external_data=True, location="weights.bin",
                    size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    from_file = load_graph(path)
    assert from_file.to_dict()["tensors"] == load_graph(inline).to_dict()["tensors"]
    assert from_file.total_cost() == load_graph(model).total_cost()
    # A ModelProto whose external data was never loaded still imports, with shapes.
    unloaded = import_onnx(saved)
    assert {k: t.shape for k, t in unloaded.tensors.items()} == \
           {k: t.shape for k, t in inline.tensors.items()}


def test_ir_json_round_trip_keeps_nodes_shapes_and_costs(shuffle_onnx):
    g = load_graph(shuffle_onnx, {"input": [1, 3, 16, 16]})
    again = Graph.from_dict(json.loads(g.to_json()))
    assert [(n.name, n.op, n.inputs, n.outputs, n.attrs, n.cost) for n in again.nodes] == \
           [(n.name, n.op, n.inputs, n.outputs, n.attrs, n.cost) for n in g.nodes]
    assert again.tensors == g.tensors
    assert again.total_cost() == g.total_cost()


# -- bad input ----------------------------------------------------------------------------------

def x_y(nodes) -> onnx.ModelProto:
    return make_model(nodes, [value_info("x", [1, 4])], [value_info("y", [1, 4])])


BAD_MODELS = {
    "empty graph": (lambda: x_y([]), "empty"),
    "cycle": (lambda: x_y([helper.make_node("Add", ["x", "b"], ["a"]),
                           helper.make_node("Relu", ["a"], ["b"]),
                           helper.make_node("Relu", ["a"], ["y"])]), "cycle"),
    "undefined tensor": (lambda: x_y([helper.make_node("Add", ["x", "nowhere"], ["y"])]),
                         "'nowhere'"),
    "unknown standard op": (lambda: x_y([helper.make_node("Frobnicate", ["x"], ["y"])]),
                            "invalid ONNX model.*Frobnicate"),
    "wrong attribute type": (lambda: x_y([helper.make_node("Flatten", ["x"], ["y"],
                                                           axis="one")]), "invalid ONNX model"),
    "shape clash": (lambda: x_y([helper.make_node("MatMul", ["x", "x"], ["y"])]),
                    "shape inference failed"),
}


@pytest.mark.parametrize("case", BAD_MODELS)
def test_bad_models_raise_one_line_model_error(case):
    build, message = BAD_MODELS[case]
    with pytest.raises(ModelError, match=message) as error:
        load_graph(build())
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("content", [os.urandom(4096), b"", "truncated"])
def test_unreadable_files_raise_model_error(tmp_path, content):
    if content == "truncated":
        content = export(nn.Conv2d(3, 16, 3), [1, 3, 8, 8])[:700]
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="bad.onnx") as error:
        load_graph(path)
    assert "\n" not in str(error.value)


# -- PyTorch ------------------------------------------------------------------------------------

def test_torch_module_with_input_shape_or_example_input():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Hardswish())
    g = load_graph(net, {"": [1, 3, 8, 8]})
    assert [n.op for n in g.nodes] == ["Conv", "HardSwish"]
    assert g.inputs == ["input"] and g.name == "Sequential"
    from edgemeter.importers.torch import import_torch
    g2 = import_torch(net, example_input=torch.zeros(2, 3, 8, 8))
    assert g2.tensors[g2.inputs[0]].shape == [2, 3, 8, 8]


def test_torch_needs_an_input_shape():
    # It names the option and predict()'s own parameter, not load_graph's.
    with pytest.raises(ConfigError, match=r"--input-shape .*input_shape=\[1, 3, 224, 224\]"):
        load_graph(nn.ReLU())


def test_torch_missing_is_a_missing_extra(monkeypatch):
    from edgemeter.importers.torch import import_torch
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(MissingExtraError, match=r"edgemeter\[torch\]"):
        import_torch(object(), {"": [1]})
