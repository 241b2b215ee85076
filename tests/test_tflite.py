"""ONNX → .tflite conversion checked against onnxruntime under LiteRT, and the TFLite importer
checked against the ONNX importer on the same models."""
from __future__ import annotations

from math import prod

import numpy as np
import pytest
from onnx import TensorProto, helper

from edgemeter.errors import ModelError
from edgemeter.importers import load_graph

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
litert = pytest.importorskip("ai_edge_litert.interpreter")
pytest.importorskip("tflite")
from edgemeter.converters.tflite import onnx_to_tflite  # noqa: E402
from edgemeter.importers.tflite import import_tflite  # noqa: E402

nn = torch.nn
COMPUTE = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _export(module, shape, path):
    torch.onnx.export(module.eval(), torch.randn(*shape), path, dynamo=False, opset_version=17)
    return path


def _compare(onnx_path, tflite_path, shape):
    """Max relative error of every output: onnxruntime on NCHW vs LiteRT (XNNPACK) on NHWC."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})
    interpreter = litert.Interpreter(model_content=tflite_path.read_bytes())
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                           x.transpose(0, 2, 3, 1) if x.ndim == 4 else x)
    interpreter.invoke()
    got = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        have = have.transpose(0, 3, 1, 2) if want.ndim == 4 else have
        assert have.shape == want.shape
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


class _SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, 4, 1), nn.ReLU(),
                                  nn.Conv2d(4, c, 1), nn.Hardsigmoid())

    def forward(self, x):
        return x * self.gate(x)


class _Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class _Branches(nn.Module):
    """Concat, split, channel shuffle (reshape-transpose-reshape) and a padded softmax."""

    def forward(self, x):
        a, b = torch.split(torch.cat([x, x * 2 + 1], 1), [6, 10], 1)
        y = torch.cat([torch.sigmoid(b), torch.tanh(a)], 1)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return torch.softmax(nn.functional.pad(y, (1, 2, 0, 1)), 1)


class _ConcatRelu(nn.Module):
    """A Relu after a Concat: XNNPACK ignores CONCATENATION's fused activation."""

    def forward(self, x):
        return torch.relu(torch.cat([x, x * -2], 1))


class _ArgMax(nn.Module):
    """ArgMax over NHWC channels with kept dims, and over the last axis of a 3-D tensor, its
    indices then used as floats."""

    def forward(self, x):
        return x.argmax(1, keepdim=True), x.mean(1).argmax(-1).float() * 0.5


class _Attention(nn.Module):
    """LayerNorm, attention MatMuls, softmax and exact GELU (fused into one GELU op)."""

    def __init__(self):
        super().__init__()
        self.norm, self.qkv, self.mlp = nn.LayerNorm(16), nn.Linear(16, 48), nn.GELU()

    def forward(self, x):
        q, k, v = self.qkv(self.norm(x)).chunk(3, -1)
        return x + self.mlp(torch.softmax(q @ k.transpose(1, 2) / 4, -1) @ v)


SMALL_MODELS = {
    "conv_relu6": (nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU6()), (1, 8, 17, 17)),
    "dwconv_hswish": (nn.Sequential(nn.Conv2d(8, 8, 5, padding=2, groups=8), nn.Hardswish()),
                      (1, 8, 16, 16)),
    "grouped_dilated": (nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=4), (1, 8, 16, 16)),
    "fc": (nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 10), nn.ReLU(), nn.Linear(10, 5)),
           (1, 8, 4, 4)),
    "pools": (nn.Sequential(nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(3, 1, 1),
                            nn.AvgPool2d(2, 2, count_include_pad=False),
                            nn.MaxPool2d(2, 2, ceil_mode=True)), (1, 8, 33, 33)),
    # Explicit pads (neither SAME nor VALID) with both count_include_pad values, and ceil_mode.
    "avgpool_explicit_pads": (nn.Sequential(nn.AvgPool2d(2, 2, 1),
                                            nn.AvgPool2d(3, 2, 1, count_include_pad=False),
                                            nn.ReLU(), nn.AvgPool2d(3, 2, 1, ceil_mode=True)),
                              (1, 8, 30, 30)),
    "concat_relu": (_ConcatRelu(), (1, 8, 8, 8)),
    "argmax": (_ArgMax(), (1, 8, 6, 7)),
    "se_hsigmoid": (_SE(8), (1, 8, 16, 16)),
    "residual_add": (_Residual(8), (1, 8, 16, 16)),
    "concat_split_shuffle": (_Branches(), (1, 8, 8, 8)),
    "upsample": (nn.Sequential(nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.Upsample(scale_factor=2),
                               nn.Upsample(scale_factor=2, mode="bilinear")), (1, 8, 8, 8)),
    "attention": (_Attention(), (1, 8, 16)),
}


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_small_models_match_onnxruntime(name, tmp_path):
    module, shape = SMALL_MODELS[name]
    path = _export(module, shape, tmp_path / f"{name}.onnx")
    _compare(path, onnx_to_tflite(path, tmp_path / f"{name}.tflite"), shape)


def test_avgpool_kernel_model_matches_onnxruntime(tmp_path):
    """The builder's avgpool kernel: kernel 2, stride 2, pads [1, 1, 1, 1], padding excluded."""
    import onnx

    from edgemeter.builder.kernel_models import emit

    path = tmp_path / "avgpool.onnx"
    onnx.save(emit({"type": "avgpool-relu", "HW": 14, "CIN": 8, "KERNEL_SIZE": 2,
                    "STRIDES": 2}), path)
    _compare(path, onnx_to_tflite(path, tmp_path / "avgpool.tflite"), (1, 8, 14, 14))


def test_argmax_imports_back_with_onnx_axes(tmp_path):
    module, shape = SMALL_MODELS["argmax"]
    path = _export(module, shape, tmp_path / "argmax.onnx")
    graph = import_tflite(onnx_to_tflite(path, tmp_path / "argmax.tflite"))
    # NHWC channels (TFLite axis 3) are NCHW axis 1 again; keepdims is TFLite's RESHAPE after.
    assert [(n.op, n.attrs["axis"]) for n in graph if n.op == "ArgMax"] == [("ArgMax", 1),
                                                                            ("ArgMax", 2)]
    assert not graph.warnings


def _compute_nodes(graph):
    """Conv/FC nodes as (op, weight shape, output shape, group, FLOPs without bias)."""
    rows = []
    for n in graph:
        if n.op in COMPUTE:
            out = graph.tensors[n.outputs[0]].shape
            bias = prod(out) if n.op != "MatMul" and len(n.inputs) > 2 and n.inputs[2] else 0
            rows.append((n.op, graph.tensors[n.inputs[1]].shape, out, n.attrs.get("group", 1),
                         n.cost.flops - bias))
    return rows


@pytest.mark.parametrize("family", ["mobilenetv2", "mobilenetv3", "resnet", "shufflenetv2"])
def test_zoo_cnns_convert_and_import_back(family, zoo_onnx, tmp_path):
    onnx_path = zoo_onnx(family)
    tflite_path = onnx_to_tflite(onnx_path, tmp_path / f"{family}.tflite")
    graph = load_graph(onnx_path)
    (input_name,) = graph.inputs
    _compare(onnx_path, tflite_path, graph.tensors[input_name].shape)

    back = load_graph(tflite_path)
    assert back.tensors[back.inputs[0]].shape == graph.tensors[input_name].shape  # NCHW again
    assert _compute_nodes(back) == _compute_nodes(graph)
    # What is left differs only by documented rewrites (HardSigmoid as three ops, explicit
    # PAD, layout RESHAPEs); the arithmetic stays within a fraction of a percent.
    assert back.total_cost().flops == pytest.approx(graph.total_cost().flops, rel=2e-3)
    assert back.total_cost().params == pytest.approx(graph.total_cost().params, rel=2e-3)


def test_fused_activations_become_named_nodes(tmp_path):
    module, shape = SMALL_MODELS["residual_add"]
    path = _export(module, shape, tmp_path / "res.onnx")
    graph = import_tflite(onnx_to_tflite(path, tmp_path / "res.tflite"))
    # conv+relu and add+relu were fused into the TFLite ops and come back as explicit nodes.
    assert [n.op for n in graph] == ["Conv", "Relu", "Conv", "Add", "Relu"]
    relu = graph.nodes[1]
    assert relu.name.endswith("/fused_relu")
    assert graph.nodes[0].outputs[0].endswith("/pre_activation")
    assert graph.tensors[graph.nodes[0].inputs[1]].shape == [8, 8, 3, 3]  # OIHW again
    assert graph.tensors[relu.outputs[0]].shape == [1, 8, 16, 16]
    assert graph.tensors[relu.outputs[0]].dtype == "float32"


@pytest.mark.parametrize("nodes, match", [
    ([helper.make_node("Hardmax", ["x"], ["h"], name="pick"),
      helper.make_node("Round", ["h"], ["y"], name="round")],
     "ONNX op Hardmax \\(node 'pick'\\), ONNX op Round \\(node 'round'\\)"),
    ([helper.make_node("ArgMax", ["x"], ["y"], name="last", select_last_index=1)],
     "ArgMax node 'last' .*select_last_index"),
])
def test_unconvertible_ops_are_named(nodes, match, tmp_path):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelError, match=match):
        onnx_to_tflite(model, tmp_path / "model.tflite")


@pytest.mark.parametrize("content", [b"\x00" * 3, b"garbage!" * 50, None])
def test_corrupt_tflite_is_one_line_model_error(content, tmp_path):
    path = tmp_path / "bad.tflite"
    if content is None:  # a real model cut in half
        module, shape = SMALL_MODELS["conv_relu6"]
        good = onnx_to_tflite(_export(module, shape, tmp_path / "m.onnx"), tmp_path / "m.tflite")
        content = good.read_bytes()[: len(good.read_bytes()) // 2]
    path.write_bytes(content)
    with pytest.raises(ModelError) as info:
        load_graph(path)
    assert "\n" not in str(info.value) and "bad.tflite" in str(info.value)
