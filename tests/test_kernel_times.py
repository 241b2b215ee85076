"""In-context kernel times: runtime per-node profiles mapped back to edgemeter kernels."""
from __future__ import annotations

import pytest

from edgemeter.backends import Protocol, get_backend, measure
from edgemeter.backends.kernel_times import kernel_times, measured_kernel_times
from edgemeter.importers import load_graph
from edgemeter.kernels import Kernel, detect, load_rules
from test_backends import tiny_onnx

FAST = Protocol(warmup=2, repeats=5, rounds=1, max_rounds=1, timeout_s=120, profile_runs=3)
RUNTIMES = [("onnxruntime-cpu", "onnxruntime-cpu"), ("openvino-cpu-f32", "openvino-cpu")]


def test_each_naming_scheme_resolves_and_nothing_is_dropped(tmp_path):
    graph = load_graph(tiny_onnx(tmp_path / "tiny.onnx"))  # conv1 relu1 pool flatten fc
    kernels = [Kernel("conv-relu", ["conv1", "relu1"]), Kernel("global-avgpool", ["pool"]),
               Kernel("data-movement", ["flatten"]), Kernel("fc", ["fc"])]
    node_times = {
        "r_nchwc": 1.0,                  # onnxruntime NCHWc node named after its output "r"
        "ReorderOutput_token_3": 0.5,    # onnxruntime layout reorder: matches nothing
        "pool/WithoutBiases": 0.25,      # OpenVINO split node: a node name plus a segment
        "FullyConnected_7": 2.0,         # a fused layer whose originals the runtime lists
        "input_abcd_acdb_conv1": 0.125,  # a reorder the runtime says has no originals
    }
    origins = {"FullyConnected_7": ["pool", "fc"], "input_abcd_acdb_conv1": []}
    result = kernel_times(graph, kernels, node_times, origins)

    by_type = {k["type"]: k for k in result.kernels}
    assert by_type["conv-relu"]["latency_ms"] == 1.0
    assert by_type["conv-relu"]["runtime_nodes"] == ["r_nchwc"]
    # The fused layer's 2 ms are split between its two kernels by FLOPs: fc does more work.
    flops = {n.name: n.cost.flops for n in graph.nodes}
    pool_share = 2.0 * flops["pool"] / (flops["pool"] + flops["fc"])
    assert by_type["global-avgpool"]["latency_ms"] == pytest.approx(0.25 + pool_share)
    assert by_type["fc"]["latency_ms"] == pytest.approx(2.0 - pool_share)
    assert by_type["data-movement"] == {"type": "data-movement", "nodes": ["flatten"],
                                        "latency_ms": 0.0, "runtime_nodes": []}
    assert result.unattributed == {"ReorderOutput_token_3": 0.5, "input_abcd_acdb_conv1": 0.125}
    assert result.total_ms == sum(node_times.values())
    assert sum(k["latency_ms"] for k in result.kernels) + result.unattributed_ms == \
        pytest.approx(result.total_ms)


def check_total(graph, kernels, node_times, origins):
    """The mapping is total: every runtime node's time lands on a kernel or on the unattributed
    line, which holds only nodes the runtime inserted itself; every kernel that computes is
    timed, or is an elementwise kernel the runtime ran inside the kernel that feeds it."""
    result = kernel_times(graph, kernels, node_times, origins)
    # Exact up to float rounding: time is moved, never created or dropped.
    assert sum(k["latency_ms"] for k in result.kernels) + result.unattributed_ms == \
        pytest.approx(sum(node_times.values()), rel=1e-9)
    placed = {n for k in result.kernels for n in k["runtime_nodes"]} | set(result.unattributed)
    assert placed == set(node_times)
    # Unattributed: nodes with no originals (reorders), or made after the graph the runtime
    # reports (onnxruntime inlines HardSwish after a Gemm as HardSigmoid_N + Mul_N).
    assert all(origins.get(name, []) == [] for name in result.unattributed), result.unattributed

    producer = {out: i for i, k in enumerate(kernels)
                for node in graph.nodes if node.name in k.nodes for out in node.outputs}
    nodes = {node.name: node for node in graph.nodes}
    for i, k in enumerate(result.kernels):
        if k["runtime_nodes"]:
            assert k["latency_ms"] > 0, k
            continue
        if sum(nodes[n].cost.flops for n in k["nodes"]) == 0:
            continue  # reshapes and flattens the runtime does in place
        feeders = {producer[t] for n in k["nodes"] for t in nodes[n].inputs if t in producer}
        assert any(result.kernels[j]["runtime_nodes"] for j in feeders - {i}), k
    return result


@pytest.mark.parametrize("family", ["mobilenetv3", "resnet"])
@pytest.mark.parametrize("backend,rules", RUNTIMES)
def test_zoo_models_every_kernel_gets_a_time(zoo_onnx, family, backend, rules):
    path = zoo_onnx(family)
    graph = load_graph(path)
    kernels = detect(graph, load_rules(rules))
    runner = get_backend(backend).load(path)
    try:
        node_times = runner.node_times(2)
        origins = runner.node_origins()
    finally:
        runner.close()
    assert origins, "the runtime's node origins are what makes fused nodes resolvable"
    result = check_total(graph, kernels, node_times, origins)
    timed = sum(1 for k in result.kernels if k["runtime_nodes"])
    assert timed >= 0.9 * len(kernels)


@pytest.mark.parametrize("backend", [b for b, _ in RUNTIMES])
def test_measure_profile_gives_kernel_times_through_the_worker(zoo_onnx, backend):
    path = zoo_onnx("mobilenetv3")
    m = measure(path, backend, {}, FAST, profile=True)
    assert m.ok, m.error
    assert m.node_origins  # travelled through the child's JSON result
    result = measured_kernel_times(m)
    graph = load_graph(path)
    rules = get_backend(backend).rules
    assert [k["nodes"] for k in result.kernels] == \
        [k.nodes for k in detect(graph, load_rules(rules))]
    assert sum(k["latency_ms"] for k in result.kernels) + result.unattributed_ms == \
        pytest.approx(sum(m.node_times_ms.values()))
