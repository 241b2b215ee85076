"""In-context kernel times: runtime per-node profiles mapped back to edgemeter kernels."""
from __future__ import annotations

import pytest

from edgemeter.backends import Protocol, get_backend, measure
from edgemeter.backends.kernel_times import kernel_times, measured_kernel_times, median_node_times
from edgemeter.backends.onnxruntime import per_run_node_times
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


def test_inserted_nodes_go_to_the_kernel_they_feed_else_the_one_feeding_them(tmp_path):
    graph = load_graph(tiny_onnx(tmp_path / "tiny.onnx"))  # conv1 relu1 pool flatten fc
    kernels = [Kernel("conv-relu", ["conv1", "relu1"]), Kernel("global-avgpool", ["pool"]),
               Kernel("data-movement", ["flatten"]), Kernel("fc", ["fc"])]
    node_times = {"ReorderInput": 0.5, "r_nchwc": 1.0, "ReorderOutput_1": 0.25,
                  "ReorderOutput_2": 0.125, "pool": 2.0, "flatten": 0.0, "fc": 4.0,
                  "ReorderOutput_3": 0.0625, "Convert_9": 8.0}
    inputs = {"ReorderInput": [], "r_nchwc": ["ReorderInput"],
              "ReorderOutput_1": ["r_nchwc"], "ReorderOutput_2": ["ReorderOutput_1"],
              "pool": ["ReorderOutput_2"], "flatten": ["pool"], "fc": ["flatten"],
              "ReorderOutput_3": ["fc"]}  # Convert_9: the runtime gave no edges
    origins = {name: [] for name in node_times if not name.startswith(("r_", "pool", "f"))}
    result = kernel_times(graph, kernels, node_times, origins, inputs)

    by_type = {k["type"]: k for k in result.kernels}
    # The input reorder feeds the conv; the chain of two reorders is walked to the pool; the
    # reorder of the graph output feeds nothing and goes to fc, which produces its input.
    assert by_type["conv-relu"]["latency_ms"] == 1.5
    assert by_type["conv-relu"]["runtime_nodes"] == ["ReorderInput", "r_nchwc"]
    assert by_type["global-avgpool"]["latency_ms"] == 2.375
    assert by_type["fc"]["latency_ms"] == 4.0625
    assert result.reattributed == {"ReorderInput": 0.5, "ReorderOutput_1": 0.25,
                                   "ReorderOutput_2": 0.125, "ReorderOutput_3": 0.0625}
    assert result.unattributed == {"Convert_9": 8.0}
    assert sum(k["latency_ms"] for k in result.kernels) + result.unattributed_ms == \
        pytest.approx(sum(node_times.values()))

    # A reorder feeding two kernels is shared between them.
    node_times = {"r_nchwc": 1.0, "ReorderOutput_1": 1.0, "pool": 1.0, "fc": 1.0}
    result = kernel_times(graph, kernels, node_times, {"ReorderOutput_1": []},
                          {"ReorderOutput_1": ["r_nchwc"], "pool": ["ReorderOutput_1"],
                           "fc": ["ReorderOutput_1"]})
    assert [k["latency_ms"] for k in result.kernels] == [1.0, 1.5, 0.0, 1.5]
    assert result.unattributed == {}


def test_a_node_the_runtime_made_by_decomposing_goes_to_the_untimed_kernel_it_replaces(tmp_path):
    graph = load_graph(tiny_onnx(tmp_path / "tiny.onnx"))  # conv1 relu1 pool flatten fc
    kernels = [Kernel("conv-relu", ["conv1", "relu1"]), Kernel("global-avgpool", ["pool"]),
               Kernel("data-movement", ["flatten"]), Kernel("fc", ["fc"])]
    # As OpenVINO runs a LayerNormalization as "MVN_14515": the pool under a name of the
    # runtime's own, the flatten skipped, a reorder between the conv and the new node.
    node_times = {"conv1": 1.0, "reorder_7": 0.5, "ReduceMean_5": 0.25, "fc": 2.0}
    origins = {"conv1": ["conv1", "relu1"], "reorder_7": [], "ReduceMean_5": ["ReduceMean_5"],
               "fc": ["fc"]}
    inputs = {"conv1": [], "reorder_7": ["conv1"], "ReduceMean_5": ["reorder_7"],
              "fc": ["ReduceMean_5"]}
    result = kernel_times(graph, kernels, node_times, origins, inputs)

    assert [k["latency_ms"] for k in result.kernels] == [1.0, 0.25, 0.0, 2.5]
    assert result.kernels[1]["runtime_nodes"] == ["ReduceMean_5"]
    # The reorder has no originals: inserted, it goes to the kernel it feeds (through the
    # renamed node, which is not a kernel's own yet), as before.
    assert result.reattributed == {"reorder_7": 0.5, "ReduceMean_5": 0.25}
    # With every kernel timed, a renamed node is charged like an inserted one.
    node_times["pool"], origins["pool"] = 0.125, ["pool"]
    result = kernel_times(graph, kernels, node_times, origins, inputs)
    assert [k["latency_ms"] for k in result.kernels] == [1.0, 0.125, 0.0, 2.75]


def test_node_times_are_medians_over_the_profiled_runs():
    def run(ts, nodes):  # a model_run event and its node events, as onnxruntime writes them
        events = [{"cat": "Session", "name": "model_run", "ts": ts, "dur": 1000}]
        for i, (name, us) in enumerate(nodes.items()):
            events.append({"cat": "Node", "name": f"{name}_kernel_time", "ts": ts + 10 * i + 1,
                           "dur": us})
            events.append({"cat": "Node", "name": f"{name}_fence_before", "ts": ts, "dur": 0})
        return events

    events = (run(0, {"conv": 900, "relu": 90}) + run(2000, {"conv": 100, "relu": 10})
              + run(4000, {"conv": 200}) + run(6000, {"conv": 5000, "relu": 30}))
    per_run = per_run_node_times(events)
    assert per_run[0] == {"conv": 0.9, "relu": 0.09}
    assert per_run[2] == {"conv": 0.2}
    # The preempted last run moves the mean of conv to 1.77 ms, not its median; a node missing
    # from a run took 0 ms there.
    assert median_node_times(per_run[1:]) == {"conv": pytest.approx(0.2),
                                              "relu": pytest.approx(0.01)}


def check_total(graph, kernels, node_times, origins, inputs=None):
    """The mapping is total: every runtime node's time lands on a kernel or on the unattributed
    line, which holds only nodes the runtime inserted itself; every kernel that computes is
    timed, or is an elementwise kernel the runtime ran inside the kernel that feeds it."""
    result = kernel_times(graph, kernels, node_times, origins, inputs)
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
        inputs = runner.node_inputs()
    finally:
        runner.close()
    assert origins, "the runtime's node origins are what makes fused nodes resolvable"
    assert inputs, "the runtime graph's edges are what charges inserted nodes to kernels"
    result = check_total(graph, kernels, node_times, origins, inputs)
    # Layout reorders and converts land on a kernel: at most the few nodes onnxruntime makes
    # after saving its graph (HardSwish after a Gemm inlined as HardSigmoid_N + Mul_N) remain.
    assert set(result.unattributed) <= set(node_times) - set(inputs), result.unattributed
    if backend == "onnxruntime-cpu" and family == "mobilenetv3":
        # SE blocks make onnxruntime reorder NCHWc layouts around every pool and scale.
        without_edges = kernel_times(graph, kernels, node_times, origins)
        assert result.reattributed
        assert result.unattributed_ms < 0.5 * without_edges.unattributed_ms
    timed = sum(1 for k in result.kernels if k["runtime_nodes"])
    assert timed >= 0.9 * len(kernels)


@pytest.mark.parametrize("backend", [b for b, _ in RUNTIMES])
def test_measure_profile_gives_kernel_times_through_the_worker(zoo_onnx, backend):
    path = zoo_onnx("mobilenetv3")
    m = measure(path, backend, {}, FAST, profile=True)
    assert m.ok, m.error
    assert m.node_origins and m.node_inputs  # travelled through the child's JSON result
    result = measured_kernel_times(m)
    graph = load_graph(path)
    rules = get_backend(backend).rules
    assert [k["nodes"] for k in result.kernels] == \
        [k.nodes for k in detect(graph, load_rules(rules))]
    assert sum(k["latency_ms"] for k in result.kernels) + result.unattributed_ms == \
        pytest.approx(sum(m.node_times_ms.values()))
