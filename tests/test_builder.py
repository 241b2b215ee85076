"""Predictor builder: workspace configs, sampling, kernel models, fusion test and a real build.

Builds run on onnxruntime with tiny settings (one family, a few kernels, one short round per
measurement), so they prove the pipeline, not the accuracy (bench/bench_build.py does that).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from edgemeter.builder import build, create_workspace, load_workspace, sampling
from edgemeter.builder.build import LEVEL_Z
from edgemeter.builder.kernel_models import can_emit, emit, emit_batch, emit_error
from edgemeter.errors import ConfigError
from edgemeter.importers import load_graph
from edgemeter.kernels import detect, load_rules

pytest.importorskip("onnxruntime")
RULES = load_rules("onnxruntime-cpu")
FAST = {"warmup": 2, "repeats": 5, "rounds": 1, "max_rounds": 1, "profile_runs": 3}


def edit(ws: Path, file: str, **values) -> None:
    path = ws / "configs" / file
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, **values}))


# -- workspace ----------------------------------------------------------------------------------

def test_workspace_create_writes_commented_configs_that_load(tmp_path):
    ws = create_workspace(tmp_path / "ws", "onnxruntime-cpu", threads=2)
    text = (tmp_path / "ws" / "configs" / "build.yaml").read_text()
    assert "# kernels sampled per group from the zoo prior" in text
    assert ws.backend["threads"] == 2 and ws.build["budget"] == 1800
    assert load_workspace(tmp_path / "ws").build["iterations"] == 10
    with pytest.raises(ConfigError, match="already a workspace"):
        create_workspace(tmp_path / "ws", "onnxruntime-cpu")


def test_workspace_errors_name_file_key_and_allowed_values(tmp_path):
    create_workspace(tmp_path, "onnxruntime-cpu")
    edit(tmp_path, "build.yaml", iteratons=2)
    with pytest.raises(ConfigError, match=r"build\.yaml: unknown key 'iteratons' \(allowed: .*"
                                          r"iterations"):
        load_workspace(tmp_path)
    create_workspace(tmp_path, "onnxruntime-cpu", overwrite=True)
    edit(tmp_path, "build.yaml", algo="svm")
    with pytest.raises(ConfigError, match=r"build\.yaml: key 'algo' = 'svm' .*one of rf, gb"):
        load_workspace(tmp_path)
    create_workspace(tmp_path, "onnxruntime-cpu", overwrite=True)
    edit(tmp_path, "build.yaml", statistic="mean")
    with pytest.raises(ConfigError, match=r"key 'statistic' = 'mean' .*one of median, min"):
        load_workspace(tmp_path)
    create_workspace(tmp_path, "onnxruntime-cpu", overwrite=True)
    edit(tmp_path, "build.yaml", budget="soon")
    with pytest.raises(ConfigError, match="key 'budget'.*30m"):
        load_workspace(tmp_path)
    create_workspace(tmp_path, "onnxruntime-cpu", overwrite=True)
    edit(tmp_path, "backend.yaml", options={"graph_optimization_level": "max"})
    with pytest.raises(ConfigError, match=r"backend\.yaml: .*allowed: disable"):
        load_workspace(tmp_path)
    with pytest.raises(ConfigError, match="unknown backend 'tpu'"):
        create_workspace(tmp_path / "other", "tpu")


def test_missing_or_half_written_workspace(tmp_path):
    with pytest.raises(ConfigError, match="does not exist.*workspace create"):
        load_workspace(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="not a workspace"):
        load_workspace(tmp_path)
    create_workspace(tmp_path, "onnxruntime-cpu")
    (tmp_path / "configs" / "fusion_test.yaml").write_text("")
    with pytest.raises(ConfigError, match="fusion_test.yaml is empty"):
        load_workspace(tmp_path)
    (tmp_path / "configs" / "fusion_test.yaml").unlink()
    with pytest.raises(ConfigError, match="incomplete: configs/fusion_test.yaml is missing"):
        load_workspace(tmp_path)


def test_a_path_the_machine_refuses_is_one_line_not_a_traceback(tmp_path, capsys):
    from edgemeter.cli import main

    (tmp_path / "blocker").write_text("a file where a folder should go")
    with pytest.raises(SystemExit) as exit_info:
        main(["workspace", "create", str(tmp_path / "blocker" / "ws"),
              "--backend", "onnxruntime-cpu"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert err.startswith("edgemeter: error: ") and err.count("\n") == 1
    assert "blocker" in err and "Traceback" not in err


# -- sampling and kernel models -----------------------------------------------------------------

def test_shipped_priors_come_from_the_zoo():
    priors = sampling.load_priors()
    assert {"conv", "dwconv", "matmul", "eltwise"} <= set(priors)
    conv = priors["conv"]
    assert len(conv) > 100 and {r["KERNEL_SIZE"] for r in conv} >= {1, 3}
    assert all(can_emit(r["type"]) for rows in priors.values() for r in rows)
    assert all(emit_error(r) is None for rows in priors.values() for r in rows)


def test_training_variants_spread_over_each_familys_sizes():
    from edgemeter.builder.collect import spread_zoo_variants, zoo_variants

    families = ["resnet", "vit"]
    drawn = zoo_variants(families, 6, 7)
    along = [0, 0.1, 5, 0.2, 3, 9]   # log sizes by draw index, on one line
    where = {json.dumps(v): along[int(name.rsplit("-", 1)[1])] for name, _, v in drawn}
    sized = []

    def size(family, variant):
        sized.append(family)
        return (math.exp(where[json.dumps(variant)]),) * 2

    spread = spread_zoo_variants(families, 6, 7, size)
    first_round = [next(spread) for _ in families]
    assert first_round == drawn[:2] and sized == []  # lazy: the first draw needs no size
    order = first_round + list(spread)
    assert sorted(map(str, order)) == sorted(map(str, drawn))
    assert [family for _, family, _ in order] == families * 6
    # each pick is the farthest from those picked, among the first 2k draws
    assert [int(name.rsplit("-", 1)[1]) for name, family, _ in order if family == "vit"] == [
        0, 2, 5, 4, 3, 1]
    assert sized.count("vit") == 6


def test_a_weighted_family_gets_more_training_variants_each_round():
    from edgemeter.builder.collect import spread_zoo_variants, zoo_variants
    from edgemeter.builder.workspace import _family_weights

    families = ["resnet", "vit"]
    drawn = zoo_variants(families, 6, 7)   # vit's draws 0-5 are its first six of any count
    along = [0, 0.1, 5, 0.2, 3, 9]
    where = {json.dumps(v): along[int(name.rsplit("-", 1)[1])] for name, _, v in drawn}

    def size(family, variant):
        return (math.exp(where.get(json.dumps(variant), 0)),) * 2

    order = list(spread_zoo_variants(families, 3, 7, size, weights={"vit": 2}))
    assert [family for _, family, _ in order] == ["resnet", "vit", "vit"] * 3
    vit = [name for name, family, _ in order if family == "vit"]
    assert sorted(vit) == sorted(name for name, family, _ in drawn if family == "vit")
    # the same spread rule over the six draws as with six rounds of weight 1
    assert [int(name.rsplit("-", 1)[1]) for name in vit] == [0, 2, 5, 4, 3, 1]
    assert [n for n, f, _ in order if f == "resnet"] == [n for n, f, _ in
                                                          spread_zoo_variants(families, 3, 7,
                                                                              size)
                                                          if f == "resnet"]
    for bad in ({"vitt": 2}, {"vit": 0}, {"vit": 1.5}, ["vit"]):
        with pytest.raises(ValueError):
            _family_weights(bad)


def test_kernels_no_model_can_have_are_not_prior_rows():
    from edgemeter.kernels import Kernel

    def concat(**features):
        return Kernel(type="concat", nodes=["c"], features={"INPUTS": 3, **features})

    rows = sampling.prior_rows([concat(), concat(HW=7, CIN1=8, CIN2=8, CIN3=16)])
    assert rows == {"concat": [{"type": "concat", "HW": 7, "INPUTS": 3, "CIN1": 8, "CIN2": 8,
                                "CIN3": 16}]}
    assert "lacks COLS" in emit_error({"type": "concat", "INPUTS": 3})


def test_prior_rows_of_a_zoo_model(zoo_onnx):
    rows = sampling.prior_rows(detect(load_graph(zoo_onnx("mobilenetv2")), RULES))
    assert {"conv", "dwconv"} <= set(rows)
    assert set(rows["dwconv"][0]) == {"type", "HW", "CIN", "KERNEL_SIZE", "STRIDES"}


def test_inverse_cdf_sampling_snaps_and_dedupes():
    prior = [{"type": "conv-relu", "HW": hw, "CIN": c, "COUT": 2 * c, "KERNEL_SIZE": k,
              "STRIDES": s} for hw, c, k, s in
             [(56, 24, 1, 1), (28, 40, 3, 2), (14, 80, 3, 1), (7, 160, 5, 1), (112, 3, 3, 2)]]
    values = np.array([r["CIN"] for r in prior])
    assert sampling.inverse_cdf(values, 0.0, "CIN") == 3       # below 8: an observed value
    assert sampling.inverse_cdf(values, 1.0, "CIN") == 160
    configs = sampling.sample_prior(prior, 40, np.random.default_rng(0))
    assert len({sampling.config_key(c) for c in configs}) == len(configs) > 10
    for c in configs:
        assert c["HW"] in (7, 14, 28, 56, 112) and c["KERNEL_SIZE"] in (1, 3, 5)
        assert c["CIN"] == 3 or c["CIN"] % 2 == 0
    # Most channels come in multiples of 8; a share, as in published models, in multiples of 2
    # only (ShuffleNetV2's 58).
    fine = [c for c in configs if c["CIN"] != 3 and (c["CIN"] % 8 or c["COUT"] % 8)]
    assert 0 < len(fine) < len(configs) / 2
    near = sampling.sample_finegrained(fine[0], 6, np.random.default_rng(0))
    assert any(c["CIN"] % 8 or c["COUT"] % 8 for c in near)
    # A second draw sharing the seen-set only brings new configurations.
    seen = {sampling.config_key(c) for c in configs}
    again = sampling.sample_prior(prior, 10, np.random.default_rng(1), seen)
    assert not {sampling.config_key(c) for c in again} & {sampling.config_key(c) for c in configs}


def test_grouped_convs_are_a_layout_of_their_own_with_channels_split_evenly():
    plain = [{"type": "conv-relu", "HW": hw, "CIN": c, "COUT": c, "KERNEL_SIZE": 1, "STRIDES": 1}
             for hw, c in [(56, 24), (28, 48), (14, 96), (7, 192)]]
    grouped = [{"type": "conv-relu", "HW": hw, "CIN": c, "COUT": c, "KERNEL_SIZE": 3,
                "STRIDES": 1, "GROUPS": g} for hw, c, g in [(56, 104, 13), (28, 208, 26),
                                                            (14, 96, 8)]]
    configs = sampling.sample_prior(plain + grouped, 60, np.random.default_rng(0))
    with_groups = [c for c in configs if "GROUPS" in c]
    assert 5 < len(with_groups) < len(configs)
    for c in with_groups:  # drawn from grouped rows only: 3×3, and channels a multiple of groups
        assert c["KERNEL_SIZE"] == 3 and c["CIN"] % c["GROUPS"] == c["COUT"] % c["GROUPS"] == 0
    assert all(c["KERNEL_SIZE"] == 1 for c in configs if "GROUPS" not in c)
    rows = sampling.prior_rows(detect(load_graph(emit(with_groups[0])), RULES))["conv"]
    assert rows[0]["GROUPS"] == with_groups[0]["GROUPS"]
    rows = sampling.prior_rows(detect(load_graph(emit(plain[0])), RULES))["conv"]
    assert "GROUPS" not in rows[0]  # one group is the default, left out


def test_finegrained_sampling_varies_channels_only():
    base = {"type": "conv", "HW": 28, "CIN": 64, "COUT": 96, "KERNEL_SIZE": 3, "STRIDES": 1}
    near = sampling.sample_finegrained(base, 6, np.random.default_rng(0))
    assert 3 <= len(near) <= 6 and base not in near
    for c in near:
        assert (c["HW"], c["KERNEL_SIZE"], c["STRIDES"]) == (28, 3, 1)
        assert 32 <= c["CIN"] <= 96 and c["COUT"] % 8 == 0


def test_emitted_kernels_detect_as_configured(tmp_path):
    config = {"type": "conv-relu", "HW": 28, "CIN": 16, "COUT": 32, "KERNEL_SIZE": 3,
              "STRIDES": 2}
    onnx.save(emit(config), tmp_path / "k.onnx")
    (kernel,) = detect(load_graph(tmp_path / "k.onnx"), RULES)
    assert kernel.type == "conv-relu"
    assert {k: kernel.features[k] for k in config if k != "type"} == \
        {k: v for k, v in config.items() if k != "type"}
    batch = [config, {"type": "dwconv-relu6", "HW": 14, "CIN": 24, "KERNEL_SIZE": 5,
                      "STRIDES": 1}, {"type": "layernorm", "ROWS": 50, "COLS": 64},
             {"type": "fc", "M": 1, "K": 128, "N": 10}]
    onnx.save(emit_batch(batch), tmp_path / "b.onnx")
    assert [k.type for k in detect(load_graph(tmp_path / "b.onnx"), RULES)] == \
        ["conv-relu", "dwconv-relu6", "layernorm", "fc"]


# -- fusion test --------------------------------------------------------------------------------

def test_fusion_test_writes_rules_that_detection_loads(tmp_path):
    from edgemeter.builder.collect import Collector
    from edgemeter.builder.fusion_test import run_fusion_test
    from edgemeter.store import Store

    create_workspace(tmp_path, "onnxruntime-cpu")
    edit(tmp_path, "backend.yaml", **FAST)
    edit(tmp_path, "fusion_test.yaml", ops=["conv", "relu", "add"], hw=16, channels=16,
         max_repeats=2)
    ws = load_workspace(tmp_path)
    with Store(tmp_path) as store:
        collector = Collector(store, "onnxruntime-cpu", ws.backend_config(), ws.protocol())
        result = run_fusion_test(ws, collector, log=lambda _: None, progress=False)
        taken = collector.measured
    rules = load_rules(result.path)
    # onnxruntime's optimised graph fuses Conv+Relu, and Conv+Add where the Add's other input
    # is a conv's output too (a residual block); a Relu's Add stays apart.
    assert "relu" in rules.pairs["conv"]
    assert "add" in rules.pairs["conv"]
    assert "add" not in rules.pairs.get("relu", ())
    assert {(p.first, p.second) for p in result.pairs} >= {("conv", "relu"), ("relu", "add")}
    figures = json.loads((tmp_path / "results" / "fusion_test.json").read_text())
    assert all(p["repeats"] >= 1 and p["graph"] is not None for p in figures["pairs"])
    assert 0 < figures["baseline_ms"] < 1  # one Relu on a number: the call
    assert taken > 0
    # Detection with the measured rules fuses the conv and its ReLU.
    onnx.save(emit({"type": "conv-relu", "HW": 8, "CIN": 8, "COUT": 8, "KERNEL_SIZE": 3,
                    "STRIDES": 1}), tmp_path / "k.onnx")
    assert [k.type for k in detect(load_graph(tmp_path / "k.onnx"), rules)] == ["conv-relu"]


def test_the_second_op_alone_runs_on_the_tensor_the_first_makes():
    from edgemeter.builder.fusion_test import output_shape

    assert output_shape("relu", 16, 8) is None
    assert output_shape("global-avgpool", 16, 8) == (1, 8, 1, 1)
    assert output_shape("convtranspose", 16, 8) == (1, 8, 32, 32)
    assert output_shape("concat", 16, 8) == (1, 16, 16, 16)


def test_litert_fusion_is_read_from_the_operators_it_runs(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from edgemeter.builder.fusion_test import executed_nodes, test_model

    create_workspace(tmp_path, "litert-xnnpack")
    ws = load_workspace(tmp_path)

    def count(*ops: str) -> int:
        path = tmp_path / f"{'-'.join(ops)}.onnx"
        onnx.save(test_model(ops, 16, 8, 0), path)
        return executed_nodes(ws, path)

    # XNNPACK runs a Relu as its conv's output clamp, but an ADD's fused Relu as a Clamp
    # operator of its own; a BatchNormalization alone is a Multiply and an Add.
    assert (count("conv"), count("relu"), count("add"), count("bn")) == (1, 1, 1, 2)
    assert count("conv", "relu") == 1
    assert count("add", "relu") == 2


def test_a_pair_whose_cheaper_op_costs_less_than_the_noise_stays_unclear():
    from edgemeter.builder.fusion_test import _Tester

    class Timed(_Tester):  # measured times (ms, standard error) by model, no runtime
        def __init__(self, times):
            self.cfg = {"hw": 8, "channels": 4, "max_repeats": 3, "margin": 0.5}
            self.times, self.calls = times, 0

        def time(self, ops, seed, operand=None, shape=None):
            self.calls += 1
            return self.times[ops]

        def compute_nodes(self, ops, branches=(), operand=None, shape=None):
            return None  # no graph: timing alone

    # A global pool's Relu: 0.5 µs alone, as cheap as the call; the pair looks cheaper than the
    # pool alone by noise. Nothing to judge: unclear after one measurement, not "fused".
    tiny = Timed({("global-avgpool",): (0.006, 1e-4), ("relu",): (0.0005, 1e-5),
                  ("global-avgpool", "relu"): (0.0052, 1e-4)})
    result = tiny.pair("global-avgpool", "relu", t0=0.0005)
    assert not result.clear and result.repeats == 1 and tiny.calls == 3
    # A conv's Relu that costs 10 µs alone and nothing in the pair: clearly fused.
    fused = Timed({("conv",): (0.5, 1e-3), ("relu",): (0.0105, 1e-4),
                   ("conv", "relu"): (0.5, 1e-3)})
    result = fused.pair("conv", "relu", t0=0.0005)
    assert result.clear and result.timing and result.saving == pytest.approx(1.0)


def test_only_a_clear_timing_disagrees_with_the_graph():
    from edgemeter.builder.fusion_test import PairResult

    assert PairResult("conv", "relu", timing=False, clear=True, graph=True).disagree
    assert not PairResult("conv", "relu", timing=False, clear=False, graph=True).disagree
    assert not PairResult("conv", "relu", timing=True, clear=True, graph=True).disagree
    assert not PairResult("conv", "relu", timing=False, clear=True, graph=None).disagree


# -- build end to end ---------------------------------------------------------------------------

@pytest.fixture
def tiny_workspace(tmp_path):
    create_workspace(tmp_path, "onnxruntime-cpu")
    edit(tmp_path, "backend.yaml", **FAST)
    edit(tmp_path, "fusion_test.yaml", enabled=False)
    edit(tmp_path, "build.yaml", kernels=["conv", "eltwise"], init_samples=10, iterations=1,
         batch_size=20, trees=10, zoo_families=["mobilenetv2"], zoo_train_variants=2,
         zoo_eval_variants=1, reference_models=0, reference_rounds=2)
    return tmp_path


def stored_rounds(workspace: Path) -> int:
    """Rounds the store holds: in finished measurements and kept for unfinished ones."""
    from edgemeter.store import Store

    with Store(workspace) as store:
        kept = store.db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]
        return kept + sum(len(m.round_medians_ms) for m in store)


def test_build_interrupted_then_resumed_measures_nothing_twice(tiny_workspace, round_order,
                                                               monkeypatch):
    from edgemeter.backends import protocol
    from edgemeter.predictor import load_package
    from edgemeter.store import Store

    # Two rounds per measurement, in passes: an interruption leaves measurements half done.
    edit(tiny_workspace, "backend.yaml", rounds=2, max_rounds=2)
    recording = protocol.Rounds.next_round

    def interrupted(self):
        if len(round_order) == 5:
            raise KeyboardInterrupt
        return recording(self)

    monkeypatch.setattr(protocol.Rounds, "next_round", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(tiny_workspace, budget_s=600, progress=False, log=lambda _: None)
    assert stored_rounds(tiny_workspace) == 5  # every completed round is kept
    with Store(tiny_workspace) as store:
        assert store.db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0] > 0
        finished = len(store)
    monkeypatch.setattr(protocol.Rounds, "next_round", recording)

    report = build(tiny_workspace, budget_s=600, progress=False, log=lambda _: None)
    assert report.reused == finished and report.measured > 0
    # No round ran twice: the rerun's rounds and the interrupted run's make up the store's.
    assert stored_rounds(tiny_workspace) == len(round_order)
    with Store(tiny_workspace) as store:
        keys = [k for (k,) in store.db.execute("SELECT key FROM measurements")]
        assert store.db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0] == 0
        assert all(len(m.round_medians_ms) == 2 for m in store)
    assert len(keys) == len(set(keys)) == finished + report.measured

    package = load_package(report.package)
    assert "conv" in package.regressors and set(package.accuracy) >= {"conv"}
    assert set(package.feature_names("conv")) >= {"HW", "CIN", "COUT", "KERNEL_SIZE", "FLOPS"}
    assert set(package.extra["model_term"]) >= {"scale", "per_node_ms", "intercept_ms"}
    assert set(package.extra["fallback"]) == {"ms_per_gflop", "ms_per_mb", "ms_per_kernel"}
    assert "conv-relu6" in package.extra["groups"]["conv"]
    # Anchored by default: every row carries the anchor's time, the package the build's speed.
    assert package.extra["anchor"]["anchor_ms"] > 0
    assert all(row["anchor_ms"] > 0 for row in package.training_data["conv"])
    # One zoo model is too few to fit the slopes: every model shares the anchor's move.
    assert package.extra["anchor"]["sensitivity"] == {"per_log_flops": 0.0, "centre": 0.0}
    # Sampled kernels are flagged, zoo-model kernels are not (as every kernel predicted).
    flags = {row["source"].startswith("mobilenetv2"): row["ISOLATED"]
             for row in package.training_data["conv"]}
    assert flags == {True: 0, False: 1}
    # Groups the zoo models have but too few kernels to train are listed as missing.
    assert package.missing_kernels and not set(package.missing_kernels) & set(package.regressors)
    assert report.models["n"] == 1 and report.groups["conv"]["n_test"] > 0

    rounds_before = len(round_order)
    again = build(tiny_workspace, budget_s=600, progress=False, log=lambda _: None)
    assert again.measured == 0 and again.reused == report.reused + report.measured
    assert len(round_order) == rounds_before
    assert "held-out zoo models: 1" in again.format()

    # Retrained from the store on another statistic: nothing measured, the same rows. Under
    # another name, the build's package and report stay beside the retrain's.
    edit(tiny_workspace, "build.yaml", statistic="min", name="tiny-min")
    retrained = build(tiny_workspace, budget_s=600, progress=False, log=lambda _: None,
                      retrain=True)
    assert retrained.measured == 0 and retrained.rows == report.rows
    assert load_package(retrained.package).extra["statistic"] == "min"
    assert retrained.models["n"] == 1
    assert report.package.exists() and retrained.package != report.package
    reports = {p.name for p in (tiny_workspace / "results").glob("report-*.json")}
    assert reports == {f"report-{report.package.name}.json",
                       f"report-{retrained.package.name}.json"}


def test_model_term_is_put_at_the_level_of_reference_measurements(tiny_workspace, monkeypatch):
    from edgemeter.predictor import load_package
    from edgemeter.predictor.model import Predictor
    from edgemeter.store import Store

    edit(tiny_workspace, "build.yaml", zoo_train_variants=3, zoo_eval_variants=0,
         reference_models=3)
    report = build(tiny_workspace, budget_s=600, progress=False, log=lambda _: None)
    level = report.reference
    assert level["models"] == 3 and level["protocol"] == {"warmup": 10, "repeats": 30,
                                                          "rounds": 2}
    assert level["quartiles"][0] <= level["median"] <= level["quartiles"][1]
    # Applied only when the median is clearly away from 1 (LEVEL_Z standard errors).
    clear = abs(math.log(level["median"])) > LEVEL_Z * math.log1p(level["error"])
    assert level["factor"] == (level["median"] if clear else 1.0)
    term = load_package(report.package).extra["model_term"]
    assert term["reference_factor"] == level["factor"] and term["models"] == 3
    assert f"model term × {level['factor']:.3f}" in report.format()
    assert [m["models"] for m in level["moments"]] == [1, 1, 1]
    assert report.reused == 0  # the early slices are judged as measured, not read back
    assert "by moment (before the zoo models, after them, after the kernels): " in report.format()
    with Store(tiny_workspace) as store:
        level_models = [m for m in store if "models/zoo-level/" in m.model]
        order = [m.model.split("/models/")[1].split("/")[0] for m in store]
    # New variants, none of them a training model, each with the reference protocol's rounds.
    assert len(level_models) == 3 and all(len(m.round_medians_ms) == 2 for m in level_models)
    # Measured at three moments, a slice each: before the zoo models, after them, after the
    # sampled kernels.
    level_at = [i for i, folder in enumerate(order) if folder == "zoo-level"]
    zoo_at = [i for i, folder in enumerate(order) if folder == "zoo"]
    kernels_at = [i for i, folder in enumerate(order) if folder == "kernels"]
    assert level_at[0] < min(zoo_at) and max(zoo_at) < level_at[1] < min(kernels_at)
    assert max(kernels_at) < level_at[2]
    assert not {Path(m.model).stem for m in level_models} & {
        p.stem for p in (tiny_workspace / "models" / "zoo").glob("*.onnx")}

    # A retrain takes them from the store, and not as training models of their own. It reads
    # the store in the order measurements finished, which need not be the order they started
    # (reversed here): the retrain is still the build, to the last bit.
    edit(tiny_workspace, "build.yaml", name="tiny-retrained")
    stored = Store.__iter__
    monkeypatch.setattr(Store, "__iter__", lambda self: reversed(list(stored(self))))
    retrained = build(tiny_workspace, budget_s=600, progress=False, log=lambda _: None,
                      retrain=True)
    monkeypatch.undo()
    assert retrained.measured == 0 and retrained.reference == level
    assert load_package(retrained.package).extra["model_term"] == term
    assert retrained.groups == report.groups
    model = next((tiny_workspace / "models" / "zoo-level").glob("*.onnx"))
    built, again = (Predictor(load_package(r.package)).predict(model) for r in (report, retrained))
    assert [k["latency_ms"] for k in built.kernels] == [k["latency_ms"] for k in again.kernels]

    edit(tiny_workspace, "build.yaml", reference_models=0)
    plain = build(tiny_workspace, budget_s=600, progress=False, log=lambda _: None,
                  retrain=True)
    assert "reference_factor" not in load_package(plain.package).extra["model_term"]


def test_reference_level_is_applied_only_when_clearly_away_from_one():
    from edgemeter.builder.build import level_factor

    steady = level_factor([1.04, 1.05, 1.05, 1.06, 1.05, 1.04, 1.06, 1.05, 1.05, 1.04, 1.06, 1.05])
    assert steady["factor"] == steady["median"] == pytest.approx(1.05)
    assert 0 < steady["error"] < 0.005
    # Spread like the 30-minute build of 2026-12-01 12:53 (+4.9 %, quartiles -2.0 and +8.0 %).
    spread = level_factor([0.92, 0.96, 0.98, 0.98, 1.03, 1.04, 1.06, 1.07, 1.08, 1.09, 1.12, 1.2])
    assert spread["median"] == pytest.approx(1.05) and spread["factor"] == 1.0
    assert spread["quartiles"] == pytest.approx([0.98, 1.0825])
    assert level_factor([0.9, 0.9, 0.9])["factor"] == pytest.approx(0.9)


def test_reference_level_scales_every_coefficient_of_the_model_term():
    from edgemeter.builder.train import scaled_model_term

    term = {"scale": 1.1, "per_node_ms": 0.001, "intercept_ms": -0.2, "models": 40,
            "node_count": "kernels", "group_scale": {"conv": 1.2}}
    scaled = scaled_model_term(term, 1.05)
    assert scaled.pop("group_scale") == {"conv": pytest.approx(1.26)}
    assert scaled == pytest.approx({"scale": 1.155, "per_node_ms": 0.00105, "intercept_ms": -0.21,
                                    "models": 40, "node_count": "kernels",
                                    "reference_factor": 1.05})
    assert "group_scale" not in scaled_model_term({k: term[k] for k in term
                                                   if k != "group_scale"}, 1.05)


def test_unrunnable_kernel_is_skipped_and_listed(tiny_workspace, monkeypatch):
    from edgemeter.backends import protocol

    real = protocol.Rounds.next_round

    def reject_kernels(self):
        if "models/kernels" in self.result.model:
            self.fail("onnxruntime rejects it")
            return None
        return real(self)

    edit(tiny_workspace, "build.yaml", zoo_train_variants=1, zoo_eval_variants=0,
         statistic="min")
    monkeypatch.setattr(protocol.Rounds, "next_round", reject_kernels)
    report = build(tiny_workspace, budget_s=600, progress=False, log=lambda _: None)
    assert any("kernels" in model for model in report.skipped)
    assert "onnxruntime rejects it" in report.format()
    assert report.package is not None  # the zoo model's kernels still make a package
    # Trained on fastest runs, and says so (evaluation then compares with fastest runs).
    from edgemeter.predictor import load_package
    assert load_package(report.package).extra["statistic"] == "min"


def test_backend_failing_mid_build_stops_with_what_was_measured(tiny_workspace, round_order,
                                                                monkeypatch):
    from edgemeter.backends import protocol
    from edgemeter.store import Store

    recording = protocol.Rounds.next_round

    def dies_after_two(self):
        if len(round_order) < 2:
            return recording(self)
        # The runtime is gone: every model fails, the canary too.
        self.fail("runtime crashed (SIGSEGV)")
        return None

    edit(tiny_workspace, "build.yaml", zoo_train_variants=3, init_samples=60, batch_size=4)
    monkeypatch.setattr(protocol.Rounds, "next_round", dies_after_two)
    report = build(tiny_workspace, budget_s=600, progress=False, log=lambda _: None)
    assert report.stopped and "stopped working" in report.stopped
    assert report.package is None
    with Store(tiny_workspace) as store:
        assert sum(m.ok for m in store) == 2  # what was measured before is kept


def test_adaptive_round_samples_around_large_errors_a_model_can_have():
    from edgemeter.builder import train
    from edgemeter.builder.build import around_errors

    def concat(c, ms, **shape):
        return {"type": "concat", "INPUTS": 2, "CIN1": c, "CIN2": c, "BYTES": 4 * c,
                "latency_ms": ms, **shape}

    rows = [concat(c, 0.001 * c, HW=8) for c in range(8, 200, 8)]
    regressor = train.fit_group(rows, "rf", 10)
    wrong = [concat(64, 0.5, HW=8), concat(96, 0.5)]  # 5-8x slower; the second lacks a shape
    bad, around = around_errors("concat", rows[:5] + wrong, regressor, 0.5, 4,
                                np.random.default_rng(0), set())
    assert bad == 2
    assert 1 <= len(around) <= 4  # around the first only: no model has the second
    first = {"type": "concat", "HW": 8, "INPUTS": 2, "CIN1": 64, "CIN2": 64}
    # Each carries the absolute error of the row it varies (0.5 ms measured, ~0.06 predicted).
    assert all(e == around[0][0] for e, _ in around) and 0.3 < around[0][0] < 0.5
    configs = [c for _, c in around]
    assert all(c["HW"] == 8 and c != first and emit_error(c) is None for c in configs)
    assert "BYTES" not in configs[0] and "latency_ms" not in configs[0]  # shape columns only


def test_large_errors_come_largest_in_ms_first():
    from edgemeter.builder import train

    rows = [{"type": "conv", "FLOPS": f, "latency_ms": 0.01 * f} for f in range(1, 60)]
    regressor = train.fit_group(rows, "rf", 10)
    # 50% off each: a 3 µs kernel, a 0.5 ms one, a 0.1 ms one; and one 1% off.
    off = [{"type": "conv", "FLOPS": f, "latency_ms": 0.015 * f} for f in (0.2, 50, 10)]
    close = {"type": "conv", "FLOPS": 30, "latency_ms": 0.3}
    found = train.large_errors(regressor, off + [close], 0.2)
    assert [i for i, _ in found] == [1, 2, 0]
    assert [e for _, e in found] == sorted((e for _, e in found), reverse=True)


def test_profiler_cost_per_node_is_taken_off_before_shares():
    from edgemeter.builder.collect import PROFILER_COST_MAX_MS, net_node_times

    # 200 small nodes profiled at 3 µs and a 1 ms one; unprofiled, the run took 1.2 ms: the
    # 0.4 ms excess is 2 µs per node, which proportional shares would have taken 25% of the
    # big node's time for.
    times = {**{f"n{i}": 0.003 for i in range(200)}, "big": 1.0}
    net = net_node_times(times, 1.2)
    assert net["big"] == pytest.approx(0.998, abs=1e-4)
    assert net["n0"] == pytest.approx(0.001, abs=1e-4)
    assert sum(net.values()) == pytest.approx(1.2, abs=1e-3)
    # A profiled run slower all through (another moment's luck) gives up at most the cap per
    # node; the shares scale the rest.
    slow = net_node_times({k: 2 * v for k, v in times.items()}, 1.2)
    assert slow["big"] == pytest.approx(2.0 - PROFILER_COST_MAX_MS)
    assert slow["n0"] == pytest.approx(0.006 - PROFILER_COST_MAX_MS)
    # A profiled run faster than the unprofiled median loses nothing; a node keeps a tenth.
    assert net_node_times(times, 2.0) == times
    assert net_node_times({"a": 0.001, "b": 1.0}, 0.9)["a"] == pytest.approx(0.0001)


def test_in_context_times_are_shares_of_the_unprofiled_median(zoo_onnx):
    """A zoo model profiled on onnxruntime: one time per kernel detection finds, in its order;
    they add up to the unprofiled median, less what no kernel could be charged with."""
    from edgemeter.backends import Protocol, get_backend, measure
    from edgemeter.builder.collect import in_context_ms, kernel_rows
    from edgemeter.importers import load_graph
    from edgemeter.kernels import detect, load_rules

    path = zoo_onnx("mobilenetv2")
    m = measure(path, "onnxruntime-cpu", {"threads": 1},
                Protocol(rounds=1, max_rounds=1, repeats=5, warmup=2, profile_runs=5),
                profile=True)
    rules = load_rules(get_backend("onnxruntime-cpu", threads=1).rules)
    kernels, times = in_context_ms(path, m, rules)
    assert [k.nodes for k in kernels] == [k.nodes for k in detect(load_graph(path), rules)]
    assert 0.5 * m.median_ms < sum(times) <= m.median_ms * (1 + 1e-9)
    assert sum(t > 0 for t in times) > len(kernels) / 2
    rows = kernel_rows(path, m, rules, "mnv2")
    assert [row["latency_ms"] for row in rows] == [t for t in times if t > 0]


def test_group_scales_catch_a_modest_bias_the_common_term_cannot_fit():
    # A 6 % bias under 2 % noise: cross-validation must refit the common term per fold too,
    # or its in-sample error beats the group scales (it did for 4 of these 10 seeds).
    from edgemeter.builder.train import fit_model_term

    ratios = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        sums = [{"conv": rng.uniform(0.5, 5), "dwconv": rng.uniform(0.1, 2)} for _ in range(60)]
        counts = rng.integers(20, 200, 60)
        y = [(s["conv"] + 1.06 * s["dwconv"] + 0.002 * n + 0.05) * rng.normal(1, 0.02)
             for s, n in zip(sums, counts)]
        term = fit_model_term([sum(s.values()) for s in sums], counts, y, sums)
        assert "group_scale" in term, seed
        ratios.append(term["group_scale"]["dwconv"] / term["group_scale"]["conv"])
    # The ridge pulls each toward 1 by what its own data allow: right in direction, in mean.
    assert min(ratios) > 1 and np.mean(ratios) == pytest.approx(1.06, abs=0.01)


def test_group_scales_correct_a_biased_group_and_stay_off_otherwise():
    from edgemeter.builder.train import fit_model_term

    rng = np.random.default_rng(0)
    sums = [{"conv": rng.uniform(0.5, 5), "dwconv": rng.uniform(0.1, 2), "pool": 0.001}
            for _ in range(60)]
    counts = rng.integers(20, 200, 60)
    noise = rng.normal(1, 0.01, 60)
    # dwconv's kernel times are 40% low: one common scale cannot fit both groups.
    biased = [(s["conv"] + 1.4 * s["dwconv"] + 0.002 * n + 0.05) * e
              for s, n, e in zip(sums, counts, noise)]
    term = fit_model_term([sum(s.values()) for s in sums], counts, biased, sums)
    assert term["group_scale"]["dwconv"] / term["group_scale"]["conv"] == pytest.approx(1.4, abs=0.05)
    assert "pool" not in term["group_scale"]  # too small a share to fit a scale of its own
    # Unbiased data: the common scale predicts as well, so no group scales are fitted.
    fair = [(s["conv"] + s["dwconv"] + 0.002 * n + 0.05) * e for s, n, e in zip(sums, counts, noise)]
    assert "group_scale" not in fit_model_term([sum(s.values()) for s in sums], counts, fair, sums)
