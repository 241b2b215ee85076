"""Kernel detection: fusion patterns on hand-built graphs, rule files, real models, the CLI."""
from __future__ import annotations

import json

import pytest

from edgemeter.errors import ConfigError
from edgemeter.graph import Cost, Graph, Node, Tensor
from edgemeter.kernels import Kernel, detect, list_rules, load_rules, node_kind

RUNTIMES = ("onnxruntime-cpu", "openvino-cpu", "tflite-xnnpack")


class Builder:
    """Builds a Graph op by op; every node costs 10 FLOPs, 1 param, 4+4 bytes."""

    def __init__(self, shape=(1, 8, 16, 16)):
        self.nodes: list[Node] = []
        self.tensors = {"x": Tensor("x", list(shape))}

    def const(self, shape, value=None) -> str:
        name = f"c{len(self.tensors)}"
        self.tensors[name] = Tensor(name, list(shape), constant=True, value=value)
        return name

    def op(self, op, *inputs, shape=None, outputs=1, **attrs):
        name = f"{op.lower()}{len(self.nodes)}"
        outs = [f"{name}:{i}" for i in range(outputs)]
        if shape is None:
            shape = self.tensors[inputs[0]].shape
        for out in outs:
            self.tensors[out] = Tensor(out, None if shape == "unknown" else list(shape))
        self.nodes.append(Node(name, op, list(inputs), outs, attrs, Cost(10, 1, 4, 4)))
        return outs[0] if outputs == 1 else outs

    def conv(self, x, cout, k=3, stride=1, group=1):
        n, cin, h, w = self.tensors[x].shape
        weight = self.const([cout, cin // group, k, k])
        return self.op("Conv", x, weight, self.const([cout]), shape=[n, cout, h // stride, w // stride],
                       kernel_shape=[k, k], strides=[stride, stride], group=group)

    def relu6(self, x):
        return self.op("Clip", x, self.const([], 0.0), self.const([], 6.0))

    def graph(self, *outputs) -> Graph:
        return Graph("test", self.nodes, self.tensors, ["x"], list(outputs))


def kernels_of(graph: Graph, rules: str = "onnxruntime-cpu") -> list[Kernel]:
    kernels = detect(graph, load_rules(rules))
    names = [name for k in kernels for name in k.nodes]
    assert sorted(names) == sorted(n.name for n in graph.nodes)  # every node in exactly one
    for kernel in kernels:
        json.dumps(kernel.features)  # plain numbers only
    return kernels


def types(graph: Graph, rules: str = "onnxruntime-cpu") -> list[str]:
    return [k.type for k in kernels_of(graph, rules)]


# -- op kinds ------------------------------------------------------------------------------------
def test_kinds_depthwise_relu6_fc():
    b = Builder()
    dw = b.conv("x", 8, group=8)
    grouped = b.conv(dw, 16, group=8)            # C_out != group: a grouped conv, not depthwise
    r6 = b.relu6(grouped)
    clip = b.op("Clip", r6, b.const([], 0.0), b.const([], 1.0))
    fc = b.op("MatMul", clip, b.const([16, 4]), shape=[1, 8, 16, 4])
    mm = b.op("MatMul", fc, fc, shape=[1, 8, 16, 16])
    g = b.graph(mm)
    assert [node_kind(g, n) for n in g.nodes] == ["dwconv", "conv", "relu6", "activation", "fc",
                                                   "matmul"]


# -- pair fusion ---------------------------------------------------------------------------------
def test_conv_bn_relu_and_dwconv_relu6():
    b = Builder()
    y = b.op("Relu", b.op("BatchNormalization", b.conv("x", 8), *[b.const([8])] * 4))
    z = b.relu6(b.conv(y, 8, group=8))
    assert types(b.graph(z)) == ["conv-bn-relu", "dwconv-relu6"]
    assert types(b.graph(z), "tflite-xnnpack") == ["conv-bn-relu", "dwconv-relu6"]


def test_residual_conv_add_relu_per_runtime():
    b = Builder()
    x = b.op("Relu", b.conv("x", 8))
    y = b.op("Relu", b.op("Add", b.conv(x, 8), x))
    g = b.graph(y)
    assert types(g) == ["conv-relu", "conv-add-relu"]
    assert types(g, "openvino-cpu") == ["conv-relu", "conv-add-relu"]
    assert types(g, "tflite-xnnpack") == ["conv-relu", "conv", "add-relu"]


def test_add_relu_of_two_branches_only_where_the_runtime_fuses_it():
    b = Builder()
    left, right = b.conv("x", 8), b.conv("x", 8)
    g = b.graph(b.op("Relu", b.op("Add", b.op("Relu", left), b.op("Sigmoid", right))))
    assert types(g)[-2:] == ["add", "relu"]
    assert types(g, "openvino-cpu")[-1] == "add-relu"
    assert types(g, "tflite-xnnpack")[-1] == "add-relu"


def test_node_with_several_consumers_is_not_fused(tmp_path):
    b = Builder()
    c = b.conv("x", 8)
    g = b.graph(b.op("Concat", b.op("Relu", c), b.op("Sigmoid", c), shape=[1, 16, 16, 16], axis=1))
    assert types(g) == ["conv", "relu", "sigmoid", "concat"]
    # The other policy lets the conv take its first consumer that pairs.
    text = load_rules("onnxruntime-cpu").source
    rules = tmp_path / "first.yaml"
    rules.write_text(open(text).read().replace("multiple_consumers: stop",
                                               "multiple_consumers: fuse-first"))
    assert [k.type for k in detect(g, load_rules(rules))] == ["conv-relu", "sigmoid", "concat"]


def test_graph_output_is_not_fused_away():
    b = Builder()
    c = b.conv("x", 8)
    g = b.graph(c, b.op("Relu", c))
    assert types(g) == ["conv", "relu"]


# -- multi-op patterns ---------------------------------------------------------------------------
def test_se_block_and_hswish():
    b = Builder()
    x = b.conv("x", 8)
    x = b.op("Mul", x, b.op("HardSigmoid", x))                       # x * hsigmoid(x)
    s = b.op("GlobalAveragePool", x, shape=[1, 8, 1, 1])
    s = b.op("HardSigmoid", b.conv(b.op("Relu", b.conv(s, 4, k=1)), 8, k=1))
    y = b.op("Mul", x, s)
    g = b.graph(b.op("HardSwish", b.conv(y, 8)))
    kernels = kernels_of(g)
    assert [k.type for k in kernels] == ["conv-hswish", "se", "conv-hswish"]
    assert len(kernels[1].nodes) == 6
    assert kernels[1].features["CIN"] == 8 and kernels[1].features["CMID"] == 4
    assert types(g, "tflite-xnnpack") == ["conv", "hswish", "se", "conv", "hswish"]


def test_written_out_hswish():
    b = Builder()
    x = b.conv("x", 8)
    h = b.op("Div", b.op("Mul", x, b.relu6(b.op("Add", x, b.const([], 3.0)))), b.const([], 6.0))
    g = b.graph(h)
    assert types(g) == ["conv", "hswish-eltwise"]          # onnxruntime runs 4 element-wise ops
    assert types(g, "openvino-cpu") == ["conv-hswish"]     # OpenVINO folds it into the conv


def test_swish_and_multiple_patterns_in_sequence():
    b = Builder()
    x = b.op("Relu", b.op("Add", "x", b.const([1])))
    g = b.graph(b.op("Mul", x, b.op("Sigmoid", x)))
    assert types(g) == ["add", "relu", "swish"]


def test_channel_shuffle_needs_the_shuffle_permutation():
    def shuffle(perm):
        b = Builder()
        r = b.op("Reshape", "x", b.const([5]), shape=[1, 2, 4, 16, 16])
        t = b.op("Transpose", r, shape=[1, 4, 2, 16, 16], perm=perm)
        return b.graph(b.op("Reshape", t, b.const([4]), shape=[1, 8, 16, 16]))

    assert types(shuffle([0, 2, 1, 3, 4])) == ["channelshuffle"]
    assert types(shuffle([0, 1, 2, 4, 3])) == ["data-movement"] * 3


def layernorm_graph(outside_reader=False):
    b = Builder(shape=(1, 10, 16))
    mean = b.op("ReduceMean", "x", shape=[1, 10, 1], axes=[-1])
    d = b.op("Sub", "x", mean)
    var = b.op("ReduceMean", b.op("Pow", d, b.const([], 2.0)), shape=[1, 10, 1], axes=[-1])
    std = b.op("Sqrt", b.op("Add", var, b.const([], 1e-5)))
    y = b.op("Add", b.op("Mul", b.op("Div", d, std), b.const([16])), b.const([16]))
    outputs = [y, b.op("Relu", d)] if outside_reader else [y]
    return b.graph(*outputs)


def test_layernorm_decomposition():
    kernels = kernels_of(layernorm_graph())
    assert [k.type for k in kernels] == ["layernorm"] and len(kernels[0].nodes) == 9
    assert kernels[0].features["ROWS"] == 10 and kernels[0].features["COLS"] == 16


def test_pattern_is_not_matched_when_an_intermediate_is_read_outside():
    assert "layernorm" not in types(layernorm_graph(outside_reader=True))


def test_transformer_mlp_gelu_fc():
    b = Builder(shape=(1, 10, 16))
    h = b.op("Add", b.op("MatMul", "x", b.const([16, 32]), shape=[1, 10, 32]), b.const([32]))
    g1 = b.op("Erf", b.op("Div", h, b.const([], 1.41)))
    gelu = b.op("Mul", b.op("Mul", h, b.op("Add", g1, b.const([], 1.0))), b.const([], 0.5))
    out = b.op("Add", b.op("MatMul", gelu, b.const([32, 16]), shape=[1, 10, 16]), b.const([16]))
    g = b.graph(out)
    kernels = kernels_of(g)
    assert [k.type for k in kernels] == ["fc", "gelu", "fc"]
    assert {k: kernels[0].features[k] for k in ("M", "K", "N", "BATCH")} == \
        {"M": 10, "K": 16, "N": 32, "BATCH": 1}
    assert types(g, "openvino-cpu") == ["fc-gelu", "fc"]


def test_attention_on_openvino():
    b = Builder(shape=(1, 10, 16))
    kt = b.op("Transpose", "x", shape=[1, 16, 10], perm=[0, 2, 1])
    s = b.op("Div", b.op("MatMul", "x", kt, shape=[1, 10, 10]), b.const([], 4.0))
    out = b.op("MatMul", b.op("Softmax", s, axis=-1), "x", shape=[1, 10, 16])
    g = b.graph(out)
    assert types(g, "openvino-cpu") == ["attention"]
    assert types(g) == ["matmul", "softmax", "matmul"]


# -- features ------------------------------------------------------------------------------------
def test_conv_features_and_costs():
    b = Builder(shape=(1, 8, 16, 12))
    g = b.graph(b.op("Relu", b.conv("x", 24, k=5, stride=2)))
    (kernel,) = kernels_of(g)
    assert kernel.features == {"HW": 16, "H": 16, "W": 12, "CIN": 8, "COUT": 24, "KERNEL_SIZE": 5,
                               "STRIDES": 2, "GROUPS": 1, "DILATION": 1, "CIN_PER_GROUP": 8,
                               "ALIGN": 8, "ACT": 1, "FLOPS": 20, "PARAMS": 2, "BYTES": 16,
                               "OPS": 2, "MODEL_FLOPS": 20, "MODEL_PARAMS": 2}


def test_every_kernel_knows_the_flops_and_weights_of_the_model_around_it():
    b = Builder(shape=(1, 8, 16, 16))
    g = b.graph(b.op("Relu", b.conv(b.conv("x", 16, k=3), 8, k=1)))
    kernels = kernels_of(g)
    assert len(kernels) == 2
    assert {k.features["MODEL_FLOPS"] for k in kernels} == {
        sum(k.features["FLOPS"] for k in kernels)}
    assert {k.features["MODEL_PARAMS"] for k in kernels} == {
        sum(k.features["PARAMS"] for k in kernels)}
    assert len({k.features["PARAMS"] for k in kernels}) == 2  # the sum is not one kernel's


def test_grouped_conv_features_say_how_its_channels_block():
    from edgemeter.kernels.features import channel_alignment

    assert [channel_alignment(*c) for c in [(16, 32), (24, 24), (16, 24), (17,), (3, 64),
                                            (0, 48), (0,)]] == [16, 8, 8, 1, 1, 16, 16]
    b = Builder(shape=(1, 96, 14, 14))
    (kernel,) = kernels_of(b.graph(b.conv("x", 64, group=4)))
    assert (kernel.features["GROUPS"], kernel.features["CIN_PER_GROUP"],
            kernel.features["ALIGN"]) == (4, 24, 8)


def test_depthwise_elementwise_and_concat_kernels_say_how_their_channels_block():
    # onnxruntime keeps 44-channel tensors out of its blocked layout and reorders around them,
    # at a cost to the kernels beside them that the other features do not show.
    b = Builder(shape=(1, 44, 14, 14))
    dw = b.conv("x", 44, group=44)
    g = b.graph(b.op("Concat", dw, b.op("Add", "x", "x", shape=[1, 44, 14, 14]),
                     shape=[1, 88, 14, 14], axis=1))
    assert [(k.type, k.features["ALIGN"]) for k in kernels_of(g)] == \
        [("dwconv", 4), ("add", 4), ("concat", 4)]
    b = Builder(shape=(1, 48, 14, 14))
    g = b.graph(b.op("Concat", b.conv("x", 48, group=48), b.conv("x", 16, k=1),
                     shape=[1, 64, 14, 14], axis=1))
    assert [(k.type, k.features["ALIGN"]) for k in kernels_of(g)] == \
        [("dwconv", 16), ("conv", 16), ("concat", 16)]


def test_split_concat_features():
    b = Builder()
    a, c = b.op("Split", "x", b.const([2], [4, 4]), shape=[1, 4, 16, 16], outputs=2, axis=1)
    g = b.graph(b.op("Concat", b.op("Relu", a), c, shape=[1, 8, 16, 16], axis=1))
    kernels = kernels_of(g)
    assert [k.type for k in kernels] == ["split", "relu", "concat"]
    assert kernels[0].features["OUTPUTS"] == 2
    assert {kernels[2].features[k] for k in ("CIN1", "CIN2")} == {4}


def test_data_dependent_and_unknown_shapes_still_get_kernels():
    b = Builder(shape=(1, 100, 4))
    idx = b.op("NonMaxSuppression", "x", b.const([1, 1, 100]), shape="unknown")
    b.nodes[-1].data_dependent = True
    g = b.graph(b.op("Gather", "x", idx, shape="unknown"))
    kernels = kernels_of(g)
    assert [k.type for k in kernels] == ["other", "data-movement"]
    assert kernels[1].features["FLOPS"] == 10


# -- rule files ----------------------------------------------------------------------------------
def test_shipped_rules_load():
    assert set(RUNTIMES) <= set(list_rules())
    for name in RUNTIMES:
        rules = load_rules(name)
        assert rules.name == name and rules.patterns and rules.pairs


def test_unknown_rules_name_lists_the_available_ones():
    with pytest.raises(ConfigError, match="unknown fusion rules 'tvm'.*onnxruntime-cpu"):
        load_rules("tvm")


@pytest.mark.parametrize("text, key", [
    ("format: edgemeter-fusion/1\nfusion_pairs: {}\n", "fusion_pairs"),
    ("format: edgemeter-fusion/1\npairs: {conv: [relux]}\n", "relux"),
    ("format: edgemeter-fusion/1\npairs: {conv-relux: [relu]}\n", "conv-relux"),
    ("format: edgemeter-fusion/1\npatterns: {se: ['conv -> Foo']}\n", "Foo"),
    ("format: edgemeter-fusion/1\npatterns: {ln: ['Sub(d) -> Div']}\n", "'d'"),
    ("format: edgemeter-fusion/1\nmultiple_consumers: always\n", "multiple_consumers"),
    ("format: edgemeter-fusion/9\n", "format"),
    ("pairs: [\n", "not valid YAML"),
])
def test_bad_rules_file_names_file_and_key(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_rules(path)
    assert str(path) in str(err.value) and key in str(err.value)


# -- real models from the zoo --------------------------------------------------------------------
def zoo_kernels(zoo_onnx, family, rules="onnxruntime-cpu", **variant):
    from edgemeter.importers import load_graph

    graph = load_graph(zoo_onnx(family, **variant))
    kernels = kernels_of(graph, rules)
    count = lambda type_: sum(k.type == type_ for k in kernels)  # noqa: E731
    ops = lambda op: sum(n.op == op for n in graph.nodes)  # noqa: E731
    return graph, kernels, count, ops


def test_zoo_mobilenetv3_se_and_hswish(zoo_onnx):
    graph, kernels, count, ops = zoo_kernels(zoo_onnx, "mobilenetv3")
    assert count("se") == ops("HardSigmoid") > 0              # every SE gate is one se kernel
    # onnxruntime fuses HardSwish into convs (but not into the head's Gemm)
    assert count("conv-hswish") + count("dwconv-hswish") + count("hswish") == ops("HardSwish")
    assert count("conv-hswish") > 0 and count("dwconv-hswish") > 0
    assert count("dwconv-relu") > 0 and count("conv-add") > 0
    # TFLite has no fused hswish: every HardSwish is its own kernel.
    _, _, tfl_count, _ = zoo_kernels(zoo_onnx, "mobilenetv3", "tflite-xnnpack")
    assert tfl_count("hswish") == ops("HardSwish")


def test_zoo_mobilenetv2_relu6(zoo_onnx):
    graph, kernels, count, ops = zoo_kernels(zoo_onnx, "mobilenetv2")
    convs = ops("Conv")
    assert count("dwconv-relu6") > 0 and count("conv-relu6") > 0
    assert sum(k.type.startswith(("conv", "dwconv")) for k in kernels) == convs


def test_zoo_resnet_residual_add_relu(zoo_onnx):
    _, _, count, ops = zoo_kernels(zoo_onnx, "resnet")
    assert count("conv-add-relu") == ops("Add") > 0
    _, _, tfl_count, _ = zoo_kernels(zoo_onnx, "resnet", "tflite-xnnpack")
    assert tfl_count("add-relu") == ops("Add")


def test_zoo_shufflenetv2_channel_shuffle(zoo_onnx):
    graph, kernels, count, ops = zoo_kernels(zoo_onnx, "shufflenetv2")
    shuffles = sum(n.op == "Transpose" and len(n.attrs.get("perm", [])) == 5 for n in graph.nodes)
    assert count("channelshuffle") == shuffles > 0
    assert count("concat") == ops("Concat")


def test_zoo_densenet_concat(zoo_onnx):
    _, _, count, ops = zoo_kernels(zoo_onnx, "densenet")
    assert count("concat") == ops("Concat") > 0
    _, _, ov_count, _ = zoo_kernels(zoo_onnx, "densenet", "openvino-cpu")
    assert ov_count("bn-relu") == ops("BatchNormalization") > 0


def test_zoo_transformer_block(zoo_onnx):
    graph, kernels, count, ops = zoo_kernels(zoo_onnx, "vit")
    assert count("layernorm") == ops("LayerNormalization") > 0
    assert count("gelu") == ops("Erf") > 0
    assert count("softmax") == ops("Softmax") > 0
    assert count("matmul") == 2 * ops("Softmax")               # scores and weighted sum
    fc = [k for k in kernels if k.type == "fc"]
    assert fc and all({"M", "K", "N"} <= set(k.features) for k in fc)
    _, _, ov_count, _ = zoo_kernels(zoo_onnx, "vit", "openvino-cpu")
    assert ov_count("attention") == ops("Softmax") and ov_count("fc-gelu") == ops("Erf")


def test_zoo_ssd_head_with_data_dependent_ops(zoo_onnx):
    graph, kernels, count, ops = zoo_kernels(zoo_onnx, "ssd")
    assert any(n.data_dependent for n in graph.nodes)        # and each is in a kernel (above)
    assert count("other") == ops("NonMaxSuppression") + ops("TopK") > 0
    assert count("concat") == ops("Concat") and count("softmax") == ops("Softmax")


# -- CLI -----------------------------------------------------------------------------------------
@pytest.fixture
def run_cli(capsys):
    """Run ``edgemeter ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from edgemeter.cli import main

    def run(*args):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    """Conv → Relu → GlobalAveragePool, written with onnx.helper."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("GlobalAveragePool", ["r"], ["y"], name="gap")],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    path = tmp_path_factory.mktemp("cli") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def test_cli_kernels_json(onnx_model, run_cli):
    code, out, _ = run_cli("kernels", onnx_model, "--format", "json", "--input-shape", "x=2x3x8x8")
    assert code == 0
    data = json.loads(out)
    assert data["model"] == onnx_model and data["nodes"] == 3
    assert [k["type"] for k in data["kernels"]] == ["conv-relu", "global-avgpool"]
    assert data["kernels"][0]["nodes"] == ["conv", "relu"]
    assert data["kernels"][0]["features"]["COUT"] == 4


def test_cli_kernels_table_and_rules_file(onnx_model, tmp_path, run_cli):
    rules = tmp_path / "none.yaml"
    rules.write_text("format: edgemeter-fusion/1\n# nothing fuses\n")
    code, out, _ = run_cli("kernels", onnx_model, "--rules", str(rules))
    assert code == 0
    assert ["conv", "relu", "global-avgpool"] == [line.split()[1] for line in out.splitlines()[1:4]]
    assert "3 kernels from 3 nodes" in out


def test_cli_bad_rules_is_one_line_exit_2(onnx_model):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "edgemeter", "kernels", onnx_model, "--rules",
                           "tvm-gpu"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "unknown fusion rules 'tvm-gpu'" in proc.stderr


def test_cli_ir_both_flavours(onnx_model, tmp_path, run_cli):
    out_file = tmp_path / "ir.json"
    assert run_cli("ir", onnx_model, "-o", str(out_file))[0] == 0
    assert json.loads(out_file.read_text())["format"] == "edgemeter-ir/1"
    code, out, _ = run_cli("ir", onnx_model, "--to", "nnmeter")
    assert code == 0
    nodes = json.loads(out)
    assert nodes["conv"]["attr"]["type"] and "relu" in nodes["conv"]["outbounds"]
