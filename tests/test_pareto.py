"""Pareto exploration: encodings, archive, partitioned execution on real runtimes, search."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgemeter.backends import Protocol, get_backend
from edgemeter.backends.base import onnx_inputs
from edgemeter.pareto.archive import ParetoArchive, dominates, hypervolume
from edgemeter.pareto.executor import (PartitionedEvaluator, PartitionedRunner, TOLERANCE,
                                       relative_error)
from edgemeter.pareto.partition import partition, prepare_model
from edgemeter.pareto.search import Solution, Study, brute_force, local_search, nsga2, \
    random_search
from edgemeter.pareto.space import build_space

from conftest import needs_bf16

ORT, OV32, OV16 = "onnxruntime-cpu", "openvino-cpu-f32", "openvino-cpu-bf16"
QUICK = Protocol(warmup=1, repeats=3, rounds=1, max_rounds=1, timeout_s=60)


def _conv(name: str, x: str, y: str, channels: int, rng) -> tuple[onnx.NodeProto, list]:
    w = numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)
                                * 0.2, f"{name}_w")
    return helper.make_node("Conv", [x, w.name], [y], name=name, pads=[1, 1, 1, 1]), [w]


def _model(path, nodes_spec, outputs, channels=8, size=16):
    """An ONNX model from (op, inputs, output) triples; Conv gets random 3x3 weights."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    for i, (op, inputs, out, *attrs) in enumerate(nodes_spec):
        if op == "Conv":
            node, w = _conv(f"conv{i}", inputs[0], out, channels, rng)
            nodes.append(node)
            inits += w
        else:
            nodes.append(helper.make_node(op, inputs, [out], name=f"{op.lower()}{i}",
                                          **(attrs[0] if attrs else {})))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], outs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


@pytest.fixture
def residual(tmp_path):
    """conv -> relu -> conv -> add(skip) -> relu: three op kinds (Conv, Relu, Add)."""
    return _model(tmp_path / "residual.onnx", [
        ("Conv", ["x"], "a"), ("Relu", ["a"], "b"), ("Conv", ["b"], "c"),
        ("Add", ["c", "b"], "d"), ("Relu", ["d"], "y")], ["y"])


@pytest.fixture
def branches(tmp_path):
    """Two parallel conv -> relu branches joined by an add."""
    return _model(tmp_path / "branches.onnx", [
        ("Conv", ["x"], "a1"), ("Conv", ["x"], "b1"), ("Relu", ["a1"], "a2"),
        ("Relu", ["b1"], "b2"), ("Add", ["a2", "b2"], "y")], ["y"])


def test_space_encoding_round_trips(residual):
    space = build_space(prepare_model(residual), [ORT, OV32, OV16], "name")
    assert space.oplist == ["Conv", "Relu", "Add"]
    assert space.size == 27
    for ident in range(space.size):
        assert space.encode(space.decode(ident)) == ident
        assert space.from_config(space.config(ident)) == ident
        assert len(space.neighbours(ident)) == 3 * 2
    assert set(space.config(0).values()) == {ORT}
    assert set(space.config(space.size - 1).values()) == {OV16}
    assert space.config(1) == {"Conv": OV32, "Relu": ORT, "Add": ORT}  # key 0 is least significant


def test_index_mode_separates_data_sizes(tmp_path):
    pool = {"kernel_shape": [2, 2], "strides": [2, 2]}
    model = prepare_model(_model(tmp_path / "pool.onnx", [
        ("Relu", ["x"], "a"), ("MaxPool", ["a"], "b", pool), ("Relu", ["b"], "y")], ["y"]))
    assert build_space(model, [ORT, OV32], "name").oplist == ["Relu", "MaxPool"]
    index = build_space(model, [ORT, OV32], "index")
    assert index.oplist == ["Relu:8192", "MaxPool:2048", "Relu:2048"]   # float32 bytes


def test_archive_keeps_ties_and_drops_dominated():
    assert dominates((1, 1), (1, 2)) and not dominates((1, 1), (1, 1))
    archive = ParetoArchive([(0, (5.0, 5.0)), (1, (5.0, 5.0)), (2, (1.0, 9.0))])
    assert archive.front == [2, 0, 1]               # equal points both stay
    assert not archive.add(3, (6.0, 6.0))
    assert archive.add(4, (4.0, 4.0))
    assert archive.front == [2, 4]
    assert hypervolume([(1.0, 9.0), (4.0, 4.0)], (10.0, 10.0)) == pytest.approx(9 * 1 + 6 * 5)


def test_parallel_branches_share_a_partition(branches):
    model = prepare_model(branches)
    assignment = {n.name: {"Conv": ORT, "Relu": OV32, "Add": ORT}[n.op_type]
                  for n in model.graph.node}
    parts = partition(model, assignment)
    # Both convs in one session, both relus in another; the add cannot join the convs (it
    # waits for the relus), so three partitions, in an executable order.
    assert [(p.backend, len(p.nodes)) for p in parts] == [(ORT, 2), (OV32, 2), (ORT, 1)]
    assert parts[-1].outputs == ["y"]


@pytest.mark.parametrize("config, tolerance", [
    ({"Conv": OV32, "Relu": ORT, "Add": OV32}, TOLERANCE["f32"]),
    pytest.param({"Conv": OV16, "Relu": OV32, "Add": ORT}, TOLERANCE["bf16"], marks=needs_bf16)])
def test_partitioned_execution_matches_reference(residual, tmp_path, config, tolerance):
    model = prepare_model(residual)
    space = build_space(model, [ORT, OV32, OV16], "name")
    evaluator = PartitionedEvaluator(residual, space, tmp_path / "work", protocol=QUICK)
    reference = get_backend(ORT).load(residual).infer(onnx_inputs(residual))["y"]
    plan = evaluator.plan(space.from_config(config))
    assert len(plan["partitions"]) >= 3
    runner = PartitionedRunner(plan, threads=1)   # checks against the reference on load
    out = runner.infer(runner.inputs)["y"]
    runner.close()
    assert relative_error(out, reference) <= tolerance
    assert plan["tolerance"] == tolerance


def test_brute_force_measures_every_assignment_and_finds_the_front(residual, tmp_path):
    space = build_space(prepare_model(residual), [ORT, OV32], "name")
    evaluator = PartitionedEvaluator(residual, space, tmp_path / "work", protocol=QUICK)
    study = Study(space, evaluator, dump=tmp_path / "out.json")
    brute_force(study)
    assert study.measured == 8
    ok = {i: s.objectives for i, s in study.solutions.items() if s.feasible}
    assert len(ok) == 8 and all(t > 0 and m > 0 for t, m in ok.values())
    # the front is exactly the non-dominated set of what was measured
    expected = {i for i, p in ok.items() if not any(dominates(q, p) for q in ok.values())}
    assert set(study.archive.front) == expected
    study.save()
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["mode"] == "name" and data["oplist"] == ["Conv", "Relu", "Add"]
    assert {s["id"] for s in data["solutions"]} == set(range(8))
    assert data["configs"]["1"] == {"Conv": OV32, "Relu": ORT, "Add": ORT}
    assert set(data["front"]) == expected


def test_unrunnable_assignment_is_recorded_infeasible(tmp_path):
    # OpenVINO has no Det; onnxruntime has.
    path = tmp_path / "det.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                               helper.make_node("Det", ["r"], ["y"], name="det")], "det", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    space = build_space(prepare_model(path), [ORT, OV32], "name")
    evaluator = PartitionedEvaluator(path, space, tmp_path / "work", protocol=QUICK)
    study = Study(space, evaluator)
    brute_force(study)
    bad = study.solutions[space.from_config({"Relu": ORT, "Det": OV32})]
    assert not bad.feasible and "openvino" in bad.error
    good = study.solutions[space.from_config({"Relu": OV32, "Det": ORT})]
    assert good.feasible, good.error
    data = study.to_dict()
    assert {s["id"] for s in data["infeasible"]} == {2, 3}
    assert all(s["id"] not in (2, 3) for s in data["solutions"])


# -- search algorithms over a synthetic objective (fast, deterministic) ----------------------
def _synthetic(space):
    """Latency falls and memory rises with the number of keys on the last backend, plus a
    per-id term: a front with a few members and plenty of dominated points."""
    def evaluate(ident):
        digits = space.decode(ident)
        k = sum(digits)
        return Solution(ident, 10.0 - k + (ident % 7) * 0.1, 100 + 10 * k + ident % 3)
    return evaluate


def _space(keys=6, backends=3):
    space = build_space(prepare_model(_chain_model(keys)), [ORT, OV32, OV16][:backends], "name")
    assert len(space.oplist) == keys
    return space


def _chain_model(keys):
    ops = ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Softsign"][:keys]
    nodes = [helper.make_node(op, [f"t{i}"], [f"t{i + 1}"], name=f"n{i}")
             for i, op in enumerate(ops)]
    x = helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info(f"t{keys}", TensorProto.FLOAT, [1, 4])
    return helper.make_model(helper.make_graph(nodes, "chain", [x], [y]),
                             opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("algo", [random_search, nsga2, local_search])
def test_search_respects_budget_and_approaches_the_front(algo):
    space = _space()
    full = Study(space, _synthetic(space))
    brute_force(full)
    reference = (20.0, 200.0)
    study = Study(space, _synthetic(space))
    algo(study, budget=200, seed=1)
    assert study.measured == 200
    ratio = study.archive.hypervolume(reference) / full.archive.hypervolume(reference)
    assert 0.5 < ratio <= 1.0


def test_resume_from_checkpoint_skips_measured(tmp_path):
    space = _space(keys=4, backends=2)
    calls, interrupt = [], [5]

    def evaluate(ident):
        calls.append(ident)
        if ident in interrupt:
            interrupt.clear()
            raise KeyboardInterrupt       # Ctrl-C in the middle of a brute force
        return _synthetic(space)(ident)

    dump = tmp_path / "out.json"
    study = Study(space, evaluate, dump=dump, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        brute_force(study)
    assert json.loads(dump.read_text())["solutions"][-1]["id"] == 3   # last checkpoint
    study.save()                                    # what the CLI does on Ctrl-C
    calls.clear()
    again = Study(space, evaluate, dump=dump)
    assert again.resume() == 5
    brute_force(again)
    assert calls == list(range(5, 16)) and again.measured == 16


# -- offline mode and CLI --------------------------------------------------------------------
@pytest.fixture
def registry_home(tmp_path, monkeypatch):
    """An empty predictor registry: no shipped predictors, EDGEMETER_HOME in tmp_path."""
    from edgemeter.predictor import registry

    monkeypatch.setattr(registry, "shipped_dir", lambda: tmp_path / "shipped")
    monkeypatch.setenv("EDGEMETER_HOME", str(tmp_path / "home"))
    return registry


def test_node_latencies_split_each_kernel_by_flops(residual, tiny_predictor):
    from edgemeter.importers import load_graph
    from edgemeter.pareto.offline import node_latencies
    from edgemeter.predictor.model import Predictor

    model = prepare_model(residual)
    predictor = Predictor.from_package(tiny_predictor(ORT)["folder"])
    times, prediction = node_latencies(predictor, model)
    assert set(times) == {n.name for n in model.graph.node}
    # all on one backend: exactly the predictor's whole-model latency
    assert sum(times.values()) == pytest.approx(prediction.latency_ms)
    flops = {n.name: n.cost.flops for n in load_graph(model).nodes}
    fused = [k["nodes"] for k in prediction.kernels if len(k["nodes"]) > 1]
    assert fused, "onnxruntime's rules fuse conv + relu"
    for nodes in fused:
        first = nodes[0]
        for other in nodes[1:]:
            assert times[other] / times[first] == pytest.approx(flops[other] / flops[first])


def test_find_predictors_by_backend_and_settings(tiny_predictor, registry_home):
    from edgemeter.errors import ConfigError
    from edgemeter.pareto.offline import find_predictors

    registry_home.register(tiny_predictor(ORT)["folder"])
    found, warnings = find_predictors([ORT, OV32])
    assert found[ORT].label == "tiny-ort 0.1" and OV32 not in found
    assert warnings == [f"no predictor installed for {OV32}: its latencies come from one "
                        "profiled run of the model instead"]
    found, warnings = find_predictors([ORT, OV32], threads=2)
    assert found[ORT].label == "tiny-ort 0.1"
    assert any("tiny-ort 0.1 was built with threads=1" in w and "threads=2" in w
               for w in warnings)
    ov = tiny_predictor(OV32)["folder"]
    found, warnings = find_predictors([ORT, OV32, OV16],
                                      chosen={ORT: "profiled", OV32: str(ov), OV16: str(ov)})
    assert set(found) == {OV32, OV16} and found[OV32].label == "tiny-ov 0.1"
    assert warnings == [f"tiny-ov 0.1 predicts {OV32}, used here for {OV16}"]
    with pytest.raises(ConfigError, match=f"names backend {OV16}, which is not searched"):
        find_predictors([ORT, OV32], chosen={OV16: str(ov)})


def test_offline_calibrates_on_the_anchors_and_measures_only_the_predicted_front(
        residual, tiny_predictor, tmp_path):
    from edgemeter.pareto.offline import (PredictorLatency, offline_search, profiled_predictor,
                                          uniform_ids)
    from edgemeter.predictor.model import Predictor

    model = prepare_model(residual)
    space = build_space(model, [ORT, OV32], "name")
    measured = Study(space, PartitionedEvaluator(residual, space, tmp_path / "w", protocol=QUICK))
    # a real predictor for onnxruntime, the profiled run for OpenVINO
    predict = PredictorLatency({ORT: Predictor.from_package(tiny_predictor(ORT)["folder"])},
                               profiled_predictor(residual, QUICK))
    result = offline_search(model, measured, predict)
    summary = result.summary()
    assert result.predicted.measured == space.size          # small space: every one scored
    front = set(result.predicted.archive.front)
    anchors = set(uniform_ids(space).values())
    assert set(measured.solutions) == front | anchors
    assert summary["saved"] == space.size - measured.measured > 0
    assert 0 < summary["hypervolume_ratio"]
    assert predict.describe([ORT, OV32]) == {
        ORT: {"source": "tiny-ort 0.1", "coverage": predict.predictions[ORT].coverage,
              "warnings": predict.predictions[ORT].warnings},
        OV32: {"source": "profiled"}}
    assert summary["anchors"][ORT]["predicted_ms"] > 0
    # latency and memory are calibrated so that the single-backend anchors are predicted closely
    for ident in anchors:
        predicted, real = result.predicted.solutions[ident], measured.solutions[ident]
        assert predicted.exec_time == pytest.approx(real.exec_time, abs=1e-4)
        assert abs(predicted.max_rss - real.max_rss) / real.max_rss < 0.05


def test_profiled_predictor_maps_runtime_layers_to_nodes(residual):
    from edgemeter.pareto.offline import profiled_predictor

    model = prepare_model(residual)
    times = profiled_predictor(residual, QUICK)(model, OV32)
    assert times and set(times) <= {n.name for n in model.graph.node}
    assert all(ms >= 0 for ms in times.values())


def test_cli_writes_the_dump_and_plot(residual, tmp_path):
    from edgemeter.cli import main

    dump, png = tmp_path / "front.json", tmp_path / "front.png"
    main(["pareto", str(residual), "--backends", f"{ORT},{OV32}", "--algo", "random",
          "--budget", "3", "--repeats", "3", "--dump", str(dump), "--plot", str(png)])
    data = json.loads(dump.read_text())
    assert set(data) >= {"mode", "oplist", "solutions", "configs", "front"}
    assert len(data["solutions"]) + len(data["infeasible"]) == 3
    assert set(data["front"]) <= {s["id"] for s in data["solutions"]}
    assert png.stat().st_size > 0
    main(["pareto", str(residual), "--backends", f"{ORT},{OV32}", "--algo", "random",
          "--budget", "5", "--repeats", "3", "--dump", str(dump), "--resume"])   # 2 more
    assert len(json.loads(dump.read_text())["solutions"]) == 5


def test_cli_offline_with_real_predictors(residual, tiny_predictor, registry_home, tmp_path,
                                          capsys):
    from edgemeter.cli import main

    # onnxruntime's predictor named on the command line, OpenVINO's found in the registry
    registry_home.register(tiny_predictor(OV32)["folder"])
    dump = tmp_path / "offline.json"
    main(["pareto", str(residual), "--backends", f"{ORT},{OV32}", "--offline", "--repeats", "3",
          "--predictor", f"{ORT}={tiny_predictor(ORT)['folder']}", "--dump", str(dump)])
    data = json.loads(dump.read_text())
    offline = data["offline"]
    assert {b: v["source"] for b, v in offline["latency"].items()} == {
        ORT: "tiny-ort 0.1", OV32: "tiny-ov 0.1"}
    assert all(0 < v["coverage"]["kernels"] <= 1 for v in offline["latency"].values())
    # measured: the two single-backend anchors and the predicted front, nothing else
    measured = {s["id"] for s in data["solutions"]} | {s["id"] for s in data["infeasible"]}
    assert measured == set(offline["predicted_front"]) | {0, 7}
    assert offline["measured"] == len(measured) and offline["saved"] == 8 - len(measured) > 0
    assert offline["scored"] == 8 and offline["hypervolume_ratio"] > 0
    assert set(offline["anchors"]) == {ORT, OV32}
    out = capsys.readouterr()
    assert f"{ORT} predicted by tiny-ort 0.1" in out.out and "warning" not in out.err


@pytest.mark.parametrize("args, message", [
    (["--offline", "--predictor", "tiny-ort"], "bad --predictor 'tiny-ort': expected BACKEND="),
    (["--offline", "--predictor", f"{ORT}=a", "--predictor", f"{ORT}=b"], "gives backend"),
    (["--predictor", f"{ORT}=tiny-ort"], "used by --offline only"),
    (["--offline", "--predictor", f"{OV16}=tiny-ort"], "not searched"),
    (["--offline", "--predictor", f"{ORT}=nosuch"], "unknown predictor 'nosuch'"),
])
def test_cli_bad_predictor_is_one_line(residual, registry_home, tmp_path, capsys, args, message):
    from edgemeter.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["pareto", str(residual), "--backends", f"{ORT},{OV32}", *args,
              "--dump", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
