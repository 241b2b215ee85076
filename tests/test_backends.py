"""The built-in backends on real runtimes and tiny models built here, and the registry."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgemeter.backends import get_backend, list_backends
from edgemeter.errors import ConfigError, ModelError
from edgemeter.importers import load_graph

from conftest import CPU_RUNS_BF16, needs_bf16

BUILTINS = {"onnxruntime-cpu", "openvino-cpu-f32", "openvino-cpu-bf16", "litert-xnnpack",
            "torch-cpu"}
NODES = ["conv1", "relu1", "pool", "flatten", "fc"]


def tiny_onnx(path: Path, width: int = 8, size: int = 16, seed: int = 0) -> Path:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm, nodes named as in NODES."""
    rng = np.random.default_rng(seed)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
               for name, shape in [("w1", (width, 3, 3, 3)), ("b1", (width,)),
                                   ("w2", (10, width)), ("b2", (10,))]]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], "conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], "relu1"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], "pool"),
             helper.make_node("Flatten", ["p"], ["f"], "flatten"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], "fc", transB=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def rejected_onnx(path: Path) -> Path:
    """A well-formed ONNX file with an operator no runtime implements."""
    node = helper.make_node("NoSuchOp", ["x"], ["y"], "mystery")
    graph = helper.make_graph([node], "rejected",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def tiny_tflite(path: Path, n_in: int = 16, n_out: int = 8) -> Path:
    """A one-FULLY_CONNECTED .tflite written with the flatbuffer schema (no TensorFlow)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    def tensor(name: str, shape: list[int], buffer: int) -> s.TensorT:
        t = s.TensorT()
        t.name, t.shape, t.buffer, t.type = name, shape, buffer, s.TensorType.FLOAT32
        return t

    weights = np.random.default_rng(0).standard_normal((n_out, n_in)).astype(np.float32)
    weight_buffer = s.BufferT()
    weight_buffer.data = np.frombuffer(weights.tobytes(), np.uint8)
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, -1], [2]
    op.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = s.FullyConnectedOptionsT()
    subgraph = s.SubGraphT()
    subgraph.tensors = [tensor("x", [1, n_in], 1), tensor("w", [n_out, n_in], 2),
                        tensor("y", [1, n_out], 3)]
    subgraph.inputs, subgraph.outputs, subgraph.operators = [0], [2], [op]
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [subgraph]
    model.buffers = [s.BufferT(), s.BufferT(), weight_buffer, s.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())
    return path


def tiny_pt2(path: Path) -> Path:
    import torch
    from torch import nn

    from edgemeter.backends.torch import save_module

    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                           nn.Flatten(), nn.Linear(8, 10))
    return save_module(module, (torch.randn(1, 3, 16, 16),), path)


def write_plugin(root: Path, module: str, source: str, entry_points: dict[str, str]) -> None:
    """An installed-looking distribution under ``root``: a module and a dist-info folder
    declaring ``edgemeter.backends`` entry points, as pip would leave them."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    dist = root / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    lines = "\n".join(f"{name} = {module}:{target}" for name, target in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[edgemeter.backends]\n{lines}\n")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return tiny_onnx(tmp_path / "tiny.onnx")


def test_list_backends_shows_every_builtin_installed_here():
    infos = {info.name: info for info in list_backends()}
    assert BUILTINS <= set(infos)
    for name in BUILTINS:
        assert infos[name].available and infos[name].source == "built-in"
        assert infos[name].extra and infos[name].description


def test_unknown_backend_lists_the_available_ones():
    with pytest.raises(ConfigError, match="unknown backend 'nope'.*onnxruntime-cpu"):
        get_backend("nope")


@pytest.mark.parametrize("config, message", [
    ({"threads": 0}, "threads=0 must be an integer >= 1"),
    ({"threads": "two"}, "threads='two'"),
    ({"graph_optimization_level": "fast"}, "allowed: disable, basic, extended, layout, all"),
    ({"precision": "f16"},
     "unknown option 'precision' .allowed: threads, graph_optimization_level"),
])
def test_bad_settings_name_the_option_and_the_allowed_values(config, message):
    with pytest.raises(ConfigError, match=message):
        get_backend("onnxruntime-cpu", **config)


def test_onnxruntime_runs_and_profiles_onnx_nodes(model):
    backend = get_backend("onnxruntime-cpu", threads=1, graph_optimization_level="disable")
    env = backend.environment()
    assert env["runtime"] == "onnxruntime" and env["threads"] == 1 and env["cores"] >= 1
    assert env["settings"] == {"threads": 1, "graph_optimization_level": "disable"}
    runner = backend.load(model)
    runner.run()
    times = runner.node_times(3)
    # Without graph optimisation nothing is fused: the profiler names every ONNX node.
    assert set(times) == set(NODES) and all(t > 0 for t in times.values())


def test_onnxruntime_optimised_graph_reports_fused_nodes(model):
    times = get_backend("onnxruntime-cpu").load(model).node_times(2)
    assert times and all(t > 0 for t in times.values())
    assert "relu1" not in times  # fused into the convolution


@pytest.mark.parametrize("name, precision", [("openvino-cpu-f32", "f32"),
                                             pytest.param("openvino-cpu-bf16", "bf16",
                                                          marks=needs_bf16)])
def test_openvino_precision_is_explicit(model, name, precision):
    backend = get_backend(name)
    assert backend.environment()["precision"] == precision
    runner = backend.load(model)
    runner.run()
    times = runner.node_times(2)
    assert any(key.startswith("conv1") for key in times)


def output_of(backend: str, model: Path) -> np.ndarray:
    """The model's output on ``backend`` for one fixed random input."""
    x = {"x": np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    return get_backend(backend).load(model).infer(x)["y"]


def test_openvino_f32_computes_what_onnxruntime_computes(model):
    np.testing.assert_allclose(output_of("openvino-cpu-f32", model),
                               output_of("onnxruntime-cpu", model), rtol=1e-4, atol=1e-4)


@needs_bf16
def test_openvino_bf16_rounds_as_bf16(model):
    reference, bf16 = output_of("onnxruntime-cpu", model), output_of("openvino-cpu-bf16", model)
    assert not np.array_equal(bf16, reference)  # bf16 rounding shows: it really ran bf16
    np.testing.assert_allclose(bf16, reference, rtol=0.1, atol=0.1)


@pytest.mark.skipif(CPU_RUNS_BF16, reason="this CPU runs bf16")
def test_openvino_bf16_refuses_a_cpu_without_bf16(model):
    # The plugin would quietly compute in f32 and report f32 latencies under the bf16 name.
    with pytest.raises(ConfigError, match="this CPU runs f32, not bf16"):
        get_backend("openvino-cpu-bf16").load(model)


def test_litert_runs_a_tflite_model(tmp_path):
    backend = get_backend("litert-xnnpack", threads=1)
    assert backend.environment()["runtime"] == "litert"
    runner = backend.load(tiny_tflite(tmp_path / "fc.tflite"))
    runner.run()
    out = runner.infer({"x": np.ones((1, 16), np.float32)})["y"]
    assert out.shape == (1, 8)
    times = runner.node_times(2)  # from LiteRT's C API profiler, beside the interpreter
    assert "p1.1 Fully Connected (NC, F32) GEMM" in times  # after a reshape XNNPACK adds
    [node] = load_graph(tmp_path / "fc.tflite").nodes
    assert runner.node_origins()["p1.1 Fully Connected (NC, F32) GEMM"] == [node.name]


def test_litert_converts_onnx(model):
    pytest.importorskip("edgemeter.converters.tflite",
                        reason="ONNX->TFLite converter (another issue) not merged yet")
    get_backend("litert-xnnpack").load(model).run()


def test_torch_runs_an_exported_program(tmp_path):
    backend = get_backend("torch-cpu", threads=1)
    runner = backend.load(tiny_pt2(tmp_path / "tiny.pt2"))
    runner.run()
    times = runner.node_times(2)
    assert {"conv2d", "relu", "linear"} <= set(times)


def test_torch_explains_it_needs_an_exported_program(model):
    with pytest.raises(ModelError, match="save_module"):
        get_backend("torch-cpu").load(model)


@pytest.mark.parametrize("name", ["onnxruntime-cpu", "openvino-cpu-f32"])
def test_a_model_the_runtime_rejects_is_a_model_error(tmp_path, name):
    with pytest.raises(ModelError, match="rejects rejected.onnx"):
        get_backend(name).load(rejected_onnx(tmp_path / "rejected.onnx"))


def test_test_connection_says_hello(model):
    hello = get_backend("openvino-cpu-bf16").test_connection()
    assert hello.startswith("hello from openvino-cpu-bf16: openvino") and "bf16" in hello


def test_third_party_backend_through_an_entry_point(tmp_path, monkeypatch):
    write_plugin(tmp_path, "edgemeter_echo_plugin", """
        from edgemeter.backends.base import Backend, Option, Runner

        class EchoRunner(Runner):
            def run(self):
                pass

        class EchoBackend(Backend):
            \"\"\"Runs nothing, fast.\"\"\"
            name = "echo"
            options = {"volume": Option(1, choices=(1, 2))}

            def runtime_environment(self):
                return {"runtime": "echo", "runtime_version": "0.1", "precision": "none"}

            def load(self, model_path):
                return EchoRunner()
        """, {"echo": "EchoBackend"})
    monkeypatch.syspath_prepend(str(tmp_path))
    infos = {info.name: info for info in list_backends()}
    assert infos["echo"].source == "edgemeter_echo_plugin" and infos["echo"].available
    assert get_backend("echo", volume=2).settings() == {"threads": 1, "volume": 2}
    with pytest.raises(ConfigError, match="volume=3"):
        get_backend("echo", volume=3)
