"""The model zoo: every family builds, runs, exports to valid ONNX; variants are reproducible."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgemeter import zoo
from edgemeter.errors import ConfigError

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

FAMILIES = sorted(zoo.FAMILIES)


def op_types(path) -> set[str]:
    return {node.op_type for node in onnx.load(path).graph.node}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_builds_runs_and_exports(family, zoo_onnx):
    module, shape = zoo.build(family, zoo.get_family(family).tiny)
    assert not module.training
    x = torch.randn(shape)
    with torch.no_grad():
        expected = module(x).numpy()
    path = zoo_onnx(family)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    (got,) = session.run(None, {"input": x.numpy()})
    # the same weights (seeded build) and BatchNorm folding change results only by rounding
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_variant_is_seeded_and_builds(family):
    draws = [zoo.sample_variant(family, np.random.default_rng(seed)) for seed in (1, 1, 2, 3)]
    assert draws[0] == draws[1]
    assert draws[0] != draws[2] or draws[0] != draws[3]
    json.dumps(draws[0])  # variants are plain data
    assert set(draws[0]) == set(zoo.get_family(family).default)


def test_ssd_exports_detection_postprocessing(zoo_onnx):
    ops = op_types(zoo_onnx("ssd"))
    assert {"Shape", "Gather", "Concat", "TopK", "NonMaxSuppression"} <= ops


@pytest.mark.parametrize("family", ["mobilenetv2", "vit", "mobilevit"])
def test_dynamic_batch_export(family, zoo_onnx):
    path = zoo_onnx(family, dynamic_batch=True)
    dim0 = onnx.load(path).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "batch" and not dim0.HasField("dim_value")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _, _, h, w = zoo.build(family, zoo.get_family(family).tiny)[1]
    (out,) = session.run(None, {"input": np.zeros((3, 3, h, w), np.float32)})
    assert out.shape[0] == 3


def test_family_signatures_expected_ops(zoo_onnx):
    assert {"HardSwish", "HardSigmoid", "Mul", "GlobalAveragePool"} <= op_types(
        zoo_onnx("mobilenetv3"))
    assert {"LayerNormalization", "MatMul", "Softmax", "Erf"} <= op_types(zoo_onnx("vit"))
    assert {"Split", "Transpose", "Reshape", "Concat"} <= op_types(zoo_onnx("shufflenetv2"))
    assert "Concat" in op_types(zoo_onnx("densenet"))
    assert {"Add", "Relu"} <= op_types(zoo_onnx("resnet"))
    assert {"Clip", "Add"} <= op_types(zoo_onnx("mobilenetv2"))


def test_bad_names_raise_config_error():
    with pytest.raises(ConfigError, match="unknown model family 'nope'"):
        zoo.build("nope")
    with pytest.raises(ConfigError, match="unknown variant keys"):
        zoo.build("resnet", {"widht": 2})


@pytest.mark.parametrize("family", ["resnet", "vit"])
def test_size_counts_weights_and_layer_macs(family, zoo_onnx):
    from edgemeter.importers import load_graph

    weights, macs = zoo.size(family, zoo.get_family(family).tiny)
    cost = load_graph(zoo_onnx(family)).total_cost()
    # BatchNorm folding drops its parameters from the ONNX file; convolutions and fully
    # connected layers are most of a model's FLOPs, attention's products the rest of a ViT's
    assert cost.params <= weights <= 1.1 * cost.params
    assert 0.7 * cost.flops <= 2 * macs <= cost.flops
