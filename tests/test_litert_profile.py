"""LiteRT per-operator times through its C API profiler, and the match of operators to nodes."""
from __future__ import annotations

import pytest

from edgemeter.backends.litert_profile import align, operator_class, operator_means

_OP, _XNN, _XNN_PROFILED, _RUN = 1 << 1, 1 << 2, 1 << 3, 1 << 4


def test_operators_in_partitions_get_distinct_labels_and_mean_times():
    # Two runs of: XNNPACK partition (2 operators), a builtin SPLIT_V, a second partition.
    run = [(_RUN, "invoke", 0, 2**64 - 1), (1, "Invoke", 0, 0),
           (_XNN_PROFILED, "Convolution (NHWC, F32) IGEMM", 100, 0),
           (_XNN_PROFILED, "Static Reshape (NC)", 0, 1),
           (_OP, "SPLIT_V", 4, 19),
           (_XNN, "Static Reshape (NC)", 2, 0),
           (_XNN, "Fully Connected (NC, F32) GEMM", 30, 1)]
    second = [(kind, tag, 2 * us, index) for kind, tag, us, index in run]
    assert operator_means(run + second, runs=2) == [
        ("p1.0 Convolution (NHWC, F32) IGEMM", pytest.approx(0.15)),
        ("p1.1 Static Reshape (NC)", 0.0),
        ("op19 SPLIT_V", pytest.approx(0.006)),
        ("p2.0 Static Reshape (NC)", pytest.approx(0.003)),
        ("p2.1 Fully Connected (NC, F32) GEMM", pytest.approx(0.045))]


@pytest.mark.parametrize("tag, kind", [
    ("Convolution (NHWC, F32) IGEMM", "conv"), ("Convolution (NHWC, F32) DWConv", "dwconv"),
    ("Fully Connected (NC, F32) GEMM", "fc"), ("Batch Matrix Multiply (NC, F32) GEMM", "fc"),
    ("Max Pooling (NHWC, F32)", "pool"), ("Mean (ND) Reduce2", "reduce"),
    ("Softmax (NC, F32)", "softmax"), ("Copy (NC, X32)", "move"), ("SPLIT_V", "move"),
    ("PADV2", "pad"), ("Clamp (NC)", "elt"), ("Reciprocal Square Root (NC)", "elt")])
def test_operator_kinds(tag, kind):
    assert operator_class(tag) == kind


def test_align_gives_each_node_its_operators_in_order():
    nodes = ["Conv", "Relu",                     # the Relu is folded into the conv
             "GlobalAveragePool", "Conv", "Relu", "Conv", "HardSigmoid", "Mul",   # an SE block
             "Conv", "Add", "MaxPool", "LayerNormalization", "MatMul", "Softmax"]
    tags = ["Convolution (NHWC, F32) DWConv",
            "Mean (ND) Reduce2", "Fully Connected (NC, F32) GEMM",
            "Fully Connected (NC, F32) GEMM", "Multiply (ND)", "Add (ND)", "Clamp (NC)",
            "Multiply (ND)", "Multiply (ND)",
            "Fully Connected (NC, F32) GEMM", "Add (ND)",
            "PADV2", "Max Pooling (NHWC, F32)",
            "Mean (ND) Reduce2", "Subtract (ND)", "Mean Squared (ND) Reduce2", "Add (ND)",
            "Reciprocal Square Root (NC)", "Multiply (ND)", "Multiply (ND)", "Add (ND)",
            "Fully Connected (NC, F32) GEMM", "Softmax (NC, F32)"]
    owner = align(nodes, tags)
    assert owner[:3] == [0, 2, 3] and owner[3] == 5       # the second FC is the second conv
    # HardSigmoid and Mul share five element-wise operators in order (kinds cannot say where
    # one ends: both are in the SE kernel).
    assert owner[4] == 6 and owner[8] == 7 and owner[4:9] == sorted(owner[4:9])
    assert owner[9:13] == [8, 9, 10, 10]                  # the Pad goes with its pool
    assert owner[13:21] == [11] * 8 and owner[21:] == [12, 13]


def test_an_operator_no_node_can_run_is_left_unowned():
    assert align(["Conv", "Add"], ["Convolution (NHWC, F32) IGEMM", "Softmax (NC, F32)",
                                   "Add (ND)"]) == [0, None, 1]
    assert align([], ["Add (ND)"]) == [None]


def test_litert_profiles_an_onnx_model_and_maps_every_operator(tmp_path, capfd):
    pytest.importorskip("ai_edge_litert")
    from edgemeter.backends import get_backend
    from edgemeter.backends.kernel_times import kernel_times
    from edgemeter.builder.onnx_graphs import GraphBuilder
    from edgemeter.importers import load_graph
    from edgemeter.kernels import detect, load_rules

    g = GraphBuilder(seed=3)
    x = g.apply("relu", g.conv(g.input([1, 8, 24, 24]), 16, kernel=3))
    y = g.apply("relu6", g.dwconv(x, kernel=3, stride=2))
    z = g.concat([g.conv(y, 8, kernel=1), g.pool(y, "maxpool", kernel=3, stride=1)])
    g.output(g.fc(g.reshape(g.global_pool(z)), 10))
    path = tmp_path / "small.onnx"
    path.write_bytes(g.model().SerializeToString())

    runner = get_backend("litert-xnnpack", threads=1).load(path)
    capfd.readouterr()
    times = runner.node_times(5)
    # The C library's set-up log (accelerator registry, INFO lines) does not reach the user.
    assert capfd.readouterr().err == ""
    origins = runner.node_origins()
    assert times and set(origins) == set(times)
    assert sum(times.values()) > 0
    graph = load_graph(path)
    convs = [n.name for n in graph.nodes if n.op == "Conv"]
    mapped = {name for names in origins.values() for name in names}
    assert set(convs) <= mapped                      # every conv found its operator
    conv_ops = [label for label, names in origins.items() if names and names[0] in convs]
    assert all(" Convolution" in label or " Fully Connected" in label for label in conv_ops)
    kernels = detect(graph, load_rules("tflite-xnnpack"))
    result = kernel_times(graph, kernels, times, origins)
    assert result.unattributed_ms == 0
    assert sum(k["latency_ms"] for k in result.kernels) == pytest.approx(sum(times.values()))
