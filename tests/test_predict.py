"""Model latency prediction on a predictor package built in the test from real onnxruntime
measurements: Predictor API, coverage and fallback, batch == single, the ``predict`` CLI."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgemeter
from edgemeter.cli import main
from edgemeter.errors import ConfigError, ModelError
from edgemeter.predictor import metrics, registry
from edgemeter.predictor.model import Predictor
from edgemeter.predictor.package import regressor_file

from conftest import build_package  # the package builder behind the tiny_predictor fixture


@pytest.fixture(scope="module")
def trained(tiny_predictor) -> dict:
    """The training models, their profiles and the package saved as a folder."""
    return tiny_predictor("onnxruntime-cpu")


@pytest.fixture(scope="module")
def predictor(trained) -> Predictor:
    return Predictor.from_package(trained["folder"])


def topk_model(path: Path) -> Path:
    """Conv -> Relu -> Flatten -> TopK: TopK has no kernel type of its own."""
    weight = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    k = numpy_helper.from_array(np.array([5], np.int64), "k")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
             helper.make_node("TopK", ["f", "k"], ["values", "indices"], name="topk")]
    graph = helper.make_graph(
        nodes, "topk", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("values", TensorProto.FLOAT, [1, 5]),
         helper.make_tensor_value_info("indices", TensorProto.INT64, [1, 5])], [weight, k])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


# -- the Predictor API --------------------------------------------------------------------------

def test_predicts_training_models_close_to_measured(predictor, trained):
    for model in trained["profiled"]:
        p = predictor.predict(model["path"])
        assert p.coverage["kernels"] > 0.9 and p.coverage["flops"] > 0.9
        assert [k["type"] for k in p.kernels] == [k.type for k in model["kernels"]]
        assert p.latency_ms == pytest.approx(sum(k["latency_ms"] for k in p.kernels)
                                             + p.overhead_ms)
        # Seen models, a fitted model term: within a factor of 2 of the measured median.
        assert 0.5 < p.latency_ms / model["median_ms"] < 2.0, model["path"].name
        assert p.predictor == "tiny-ort 0.1" and p.model == str(model["path"])


def test_every_input_kind(predictor, trained, tmp_path):
    from edgemeter import zoo
    from edgemeter.importers import load_graph

    path = trained["paths"][0]
    expected = predictor.predict(path).latency_ms
    graph = load_graph(path)
    graph.save(tmp_path / "m.json")
    assert predictor.predict(onnx.load(path)).latency_ms == pytest.approx(expected)
    assert predictor.predict(str(tmp_path / "m.json")).latency_ms == pytest.approx(expected)
    assert predictor.predict(graph.to_dict()).latency_ms == pytest.approx(expected)
    module, shape = zoo.build("mobilenetv2", zoo.get_family("mobilenetv2").tiny)
    from_torch = predictor.predict(module, input_shape=shape)
    assert from_torch.latency_ms == pytest.approx(expected, rel=0.05)
    assert predictor.predict(path, input_shape="input=1x3x64x64").latency_ms == \
        pytest.approx(expected)


def test_uncovered_kernels_use_fallback_and_warn(trained, tmp_path):
    # Without the dwconv regressor, a MobileNet's depthwise kernels fall back, flagged.
    package = build_package(trained["profiled"], skip_groups=("dwconv",))
    predictor = Predictor(package)
    p = predictor.predict(trained["paths"][0])
    fallback = [k for k in p.kernels if not k["covered"]]
    assert fallback and all(k["type"].startswith("dwconv") for k in fallback)
    assert all(k["latency_ms"] > 0 for k in fallback)  # estimated, never zero
    assert p.coverage["kernels"] == pytest.approx(1 - len(fallback) / len(p.kernels))
    assert 0 < p.coverage["flops"] < 1
    assert any("no trained regressor" in w and "dwconv" in w for w in p.warnings)


def test_op_without_kernel_type_warns(predictor, tmp_path):
    p = predictor.predict(topk_model(tmp_path / "topk.onnx"))
    assert any("no kernel type" in w and "TopK" in w for w in p.warnings)
    assert p.coverage["kernels"] < 1 and p.latency_ms > 0


def test_other_machine_warns(trained):
    package = build_package(trained["profiled"][:3])
    package.fingerprint = {**package.fingerprint, "cpu_model": "Some Other CPU",
                           "runtimes": {"onnxruntime": "0.1.0"}}
    warnings = Predictor(package).predict(trained["paths"][0]).warnings
    assert any("another machine" in w and "Some Other CPU" in w and "onnxruntime" in w
               for w in warnings)


def test_batch_equals_single(predictor, trained):
    paths = trained["paths"]
    batch = predictor.predict_batch(paths)
    for path, p in zip(paths, batch):
        single = predictor.predict(path)
        # Equal up to float rounding (numpy sums a few rows in another order than many).
        assert p.latency_ms == pytest.approx(single.latency_ms, rel=1e-12)
        assert [k["latency_ms"] for k in p.kernels] == \
            pytest.approx([k["latency_ms"] for k in single.kernels], rel=1e-12)
        strip = lambda d: {**d, "latency_ms": 0, "overhead_ms": 0,  # noqa: E731
                           "kernels": [{**k, "latency_ms": 0} for k in d["kernels"]]}
        assert strip(p.to_dict()) == strip(single.to_dict())
    # The NAS fast path from pre-detected kernels gives the same totals.
    kernels = [predictor.detect(path)[1] for path in paths] * 30  # > 64 rows: dedup path too
    fast = predictor.predict_kernels(kernels)
    assert fast == pytest.approx([p.latency_ms for p in batch] * 30)


def test_load_predictor_by_name_and_path(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEMETER_HOME", str(tmp_path / "home"))
    registry.register(trained["folder"])
    by_name = edgemeter.load_predictor("tiny-ort", "0.1")
    assert by_name.label == "tiny-ort 0.1"
    assert edgemeter.load_predictor(trained["folder"]).label == "tiny-ort 0.1"
    with pytest.raises(ConfigError, match=r"available: .*tiny-ort 0\.1"):
        edgemeter.load_predictor("nosuch")
    with pytest.raises(ConfigError, match="available: 0.1"):
        edgemeter.load_predictor("tiny-ort", "9.9")


def test_bad_model_terms_are_refused(trained):
    package = build_package(trained["profiled"][:3])
    package.extra["model_term"] = {"scale": "big"}
    with pytest.raises(ModelError, match="model_term"):
        Predictor(package)
    package.extra["model_term"] = {"scale": 1, "per_node_ms": 0, "intercept_ms": 0,
                                   "node_count": "layers"}
    with pytest.raises(ModelError, match="node_count"):
        Predictor(package)


def test_no_fallback_is_an_error_not_zero(trained):
    package = build_package(trained["profiled"], skip_groups=("dwconv",))
    del package.extra["fallback"]
    with pytest.raises(ModelError, match="no regressor for dwconv.*no fallback"):
        Predictor(package).predict(trained["paths"][0])


# -- the predict CLI ------------------------------------------------------------------------------

def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json(trained, capsys):
    path = str(trained["paths"][1])
    code, out, _ = run_cli(["predict", path, "--predictor", str(trained["folder"]),
                            "--format", "json"], capsys)
    assert code == 0
    (result,) = json.loads(out)
    assert result["model"] == path and result["predictor"] == "tiny-ort 0.1"
    assert isinstance(result["latency_ms"], float) and result["latency_ms"] > 0
    assert {"type", "nodes", "latency_ms"} <= set(result["kernels"][0])
    assert set(result["coverage"]) == {"kernels", "flops"} and result["warnings"] == []
    # The table names the slowest kernel by its first node and how many more it holds.
    code, out, _ = run_cli(["predict", path, "--predictor", str(trained["folder"])], capsys)
    slowest = max(result["kernels"], key=lambda k: k["latency_ms"])
    more = len(slowest["nodes"]) - 1
    row = out.split("\nKERNEL ")[1].splitlines()[1].split()
    assert code == 0 and row[0] == slowest["type"]
    assert row[3:] == [slowest["nodes"][0]] + ([f"+{more}"] if more else [])


def test_cli_predict_stays_off_heavy_imports(trained):
    # `edgemeter predict` answers in well under a second only while its path imports none of
    # these (scikit-learn, torch and the runtimes take seconds; the backends package ~40 ms).
    script = ("import sys\nfrom edgemeter.cli import main\nmain(sys.argv[1:])\n"
              "print(*sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'torch', "
              "'onnxruntime', 'openvino', 'ai_edge_litert', 'matplotlib'}), "
              "*sorted(m for m in sys.modules if m.startswith('edgemeter.backends')))")
    done = subprocess.run([sys.executable, "-c", script, "predict", str(trained["paths"][0]),
                           "--predictor", str(trained["folder"]), "--format", "csv"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == ""


def test_cli_folder_skips_non_models(trained, tmp_path, capsys):
    for path in trained["paths"][:2]:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "weights.bin").write_bytes(b"\0" * 10)
    code, out, err = run_cli(["predict", str(tmp_path), "--predictor", str(trained["folder"]),
                              "--format", "csv"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("model,predictor,latency_ms") and len(lines) == 3
    assert "notes.txt" in err and "weights.bin" in err and "skipped 2" in err
    code, out, err = run_cli(["predict", str(tmp_path), "--predictor", str(trained["folder"])],
                             capsys)
    assert code == 0 and trained["paths"][0].name in out


def test_cli_unknown_predictor_lists_available(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGEMETER_HOME", str(tmp_path / "home"))
    registry.register(trained["folder"])
    code, _, err = run_cli(["predict", str(trained["paths"][0]), "--predictor", "nosuch"], capsys)
    assert code == 2 and "unknown predictor 'nosuch'" in err and "tiny-ort 0.1" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["predict", str(trained["paths"][0]), "--predictor", "tiny-ort",
                            "--version", "7"], capsys)
    assert code == 2 and "available: 0.1" in err
    code, _, err = run_cli(["predict", str(trained["paths"][0]), "--predictor", "tiny-ort",
                            "--input-shape", "0x3x32x32"], capsys)
    assert code == 2 and err.strip() == \
        "edgemeter: error: bad input shape 0x3x32x32: every dim must be 1 or more"


def test_cli_corrupt_package(trained, tmp_path, capsys):
    broken = shutil.copytree(trained["folder"], tmp_path / "broken")
    for kernel in trained["package"].regressors:  # each is read when a model first needs it
        target = broken / regressor_file(kernel)
        target.write_bytes(target.read_bytes()[:-7] + b"garbage")
    code, _, err = run_cli(["predict", str(trained["paths"][0]), "--predictor", str(broken)],
                           capsys)
    assert code == 2 and "checksum" in err and len(err.strip().splitlines()) == 1


def test_calibration_scales_by_the_anchor_ratio(trained, capsys):
    package = build_package(trained["profiled"][:3])
    path = trained["paths"][0]
    with pytest.raises(ConfigError, match="without the speed anchor"):
        Predictor(package).calibrated(0.3)
    package.extra["anchor"] = {"version": 1, "anchor_ms": 0.4}
    base = Predictor(package)
    slow = base.calibrated(0.5)  # the machine runs 25% slower than when it was built
    assert slow.predict(path).latency_ms == pytest.approx(1.25 * base.predict(path).latency_ms)
    assert [k["latency_ms"] for k in slow.predict(path).kernels] == \
        pytest.approx([1.25 * k["latency_ms"] for k in base.predict(path).kernels])
    # Timed now on the package's own backend: a real anchor time, within a plausible range.
    now = base.calibrated()
    assert 0.01 < now.predict(path).latency_ms / base.predict(path).latency_ms < 100
    for bad in (0, -0.5, float("nan"), "0.5", True):  # would scale predictions to nonsense
        with pytest.raises(ConfigError, match="an anchor time must be a positive number"):
            base.calibrated(bad)
    # Anchor times of another anchor network do not compare.
    package.extra["anchor"] = {"version": 0, "anchor_ms": 0.4}
    assert Predictor(package).anchor_ms is None


def test_calibration_and_truths_follow_each_models_slope(trained):
    package = build_package(trained["profiled"][:3])
    path = trained["paths"][0]
    base = Predictor(package)
    flops = sum(k.features["FLOPS"] for k in base.detect(path)[1])
    # This model is one e-fold above the fitted sizes' centre: slope 1 - 0.4 = 0.6.
    package.extra["anchor"] = {"version": 1, "anchor_ms": 0.4, "sensitivity": {
        "per_log_flops": -0.4, "centre": float(np.log(flops)) - 1.0}}
    base = Predictor(package)
    assert base.sensitivity.slope(flops) == pytest.approx(0.6)
    slow = base.calibrated(0.5)
    expected = 1.25 ** 0.6 * base.predict(path).latency_ms
    assert slow.predict(path).latency_ms == pytest.approx(expected)
    assert slow.predict_kernels([base.detect(path)[1]])[0] == pytest.approx(expected)
    # A truth measured while the anchor took 0.5 ms, at the build's speed by the same slope.
    assert base.at_own_speed(10.0, 0.5, flops) == pytest.approx(10.0 * 0.8 ** 0.6)
    package.extra["anchor"]["sensitivity"] = {"per_log_flops": "steep"}
    with pytest.raises(ModelError, match="anchor.sensitivity"):
        Predictor(package).sensitivity


def test_cli_calibrate(trained, tmp_path, capsys):
    from edgemeter.predictor.package import save_package

    package = build_package(trained["profiled"][:3])
    plain = save_package(package, tmp_path / "plain")
    path = str(trained["paths"][0])
    code, _, err = run_cli(["predict", path, "--predictor", str(plain), "--calibrate"], capsys)
    assert code == 2 and "without the speed anchor" in err and len(err.strip().splitlines()) == 1
    # Built where the anchor took far longer than it can here: no caveat about a slow machine.
    package.extra["anchor"] = {"version": 1, "anchor_ms": 50.0}
    anchored = save_package(package, tmp_path / "anchored")
    code, out, err = run_cli(["predict", path, "--predictor", str(anchored), "--calibrate",
                              "--format", "json"], capsys)
    assert code == 0 and json.loads(out)[0]["latency_ms"] > 0 and "warning" not in err


def test_cli_calibrate_warns_where_the_anchor_ran_far_slower_than_at_the_build(trained,
                                                                             tmp_path, capsys):
    from edgemeter.predictor.calibration import TRUSTED_ANCHOR_RATIO
    from edgemeter.predictor.package import save_package

    package = build_package(trained["profiled"][:3])
    package.extra["anchor"] = {"version": 1, "anchor_ms": 1.0}  # the ratio is the time now
    predictor = Predictor(package)
    assert predictor.speed_caveat is None  # not calibrated: at the build's speed
    assert predictor.calibrated(TRUSTED_ANCHOR_RATIO).speed_caveat is None
    slow = predictor.calibrated(TRUSTED_ANCHOR_RATIO + 0.01).speed_caveat
    assert slow.startswith(f"the speed anchor ran {TRUSTED_ANCHOR_RATIO + 0.01:.2f} times")
    # For real: an anchor built at a microsecond runs far slower than that here.
    package.extra["anchor"] = {"version": 1, "anchor_ms": 0.001}
    anchored = save_package(package, tmp_path / "fast-build")
    code, out, err = run_cli(["predict", str(trained["paths"][0]), "--predictor", str(anchored),
                              "--calibrate", "--format", "json"], capsys)
    assert code == 0 and json.loads(out)[0]["latency_ms"] > 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgemeter: warning: the speed anchor ran ")
    assert "--calibrate-models" in lines[0]


def test_cli_calibrate_warns_where_the_anchor_did_not_follow_the_backend(trained, tmp_path,
                                                                        capsys, monkeypatch):
    from edgemeter.backends import backend_class
    from edgemeter.predictor.package import save_package

    package = build_package(trained["profiled"][:3])
    package.extra["anchor"] = {"version": 1, "anchor_ms": 50.0}
    anchored = save_package(package, tmp_path / "anchored")
    monkeypatch.setattr(backend_class(package.backend), "anchor_caveat", "it drifted apart")
    assert Predictor(package).anchor_caveat == "it drifted apart"
    code, out, err = run_cli(["predict", str(trained["paths"][0]), "--predictor", str(anchored),
                              "--calibrate", "--format", "json"], capsys)
    assert code == 0 and json.loads(out)[0]["latency_ms"] > 0
    assert err.strip() == "edgemeter: warning: it drifted apart"
    # Only where it puts predictions at speed by the anchor.
    code, _, err = run_cli(["predict", str(trained["paths"][0]), "--predictor", str(anchored)],
                           capsys)
    assert code == 0 and "drifted" not in err


def test_a_level_scales_every_prediction_and_is_measured_on_reference_models(trained,
                                                                           tmp_path):
    pytest.importorskip("torch")
    from edgemeter.predictor.calibration import REFERENCE_SEED, measure_level
    from edgemeter.predictor.metrics import level

    base = Predictor.from_package(trained["folder"])
    path = trained["paths"][0]
    high = base.leveled(1.1)
    assert base.level == 1.0 and high.level == 1.1
    plain, leveled = base.predict(path), high.predict(path)
    assert leveled.latency_ms == pytest.approx(1.1 * plain.latency_ms)
    assert leveled.overhead_ms == pytest.approx(1.1 * plain.overhead_ms)
    assert [k["latency_ms"] for k in leveled.kernels] == \
        pytest.approx([1.1 * k["latency_ms"] for k in plain.kernels])
    kernels = [base.detect(path)[1]]
    assert high.predict_kernels(kernels) == pytest.approx(1.1 * base.predict_kernels(kernels))
    for bad in (0, -1.0, float("nan"), "fast"):
        with pytest.raises(ConfigError, match="positive number"):
            base.leveled(bad)
    # Measured: reference zoo variants of the fixed seed, run on the package's backend now;
    # the level is their median measured over predicted, whatever level was set before.
    found = measure_level(high, families=["squeezenet", "mobilenetv1"], folder=tmp_path)
    files = sorted(tmp_path.glob("models/*.onnx"))
    assert [f.name for f in files] == [f"mobilenetv1-s{REFERENCE_SEED}-000.onnx",
                                       f"squeezenet-s{REFERENCE_SEED}-000.onnx"]
    # The test's tiny predictor knows no zoo model well: the level is only sane, not near 1.
    assert found["models"] == 2 and 0.01 < found["median"] < 100
    rows = {r["model"]: r for r in found["rows"]}
    for f, p in zip(files, base.predict_batch(files)):
        row = rows[f"models/{f.name}"]
        assert row["predicted_ms"] == pytest.approx(p.latency_ms) and row["measured_ms"] > 0
    assert found["median"] == pytest.approx(
        level([r["measured_ms"] / r["predicted_ms"] for r in found["rows"]])["median"])
    assert [r["rounds"] for r in found["rows"]] == [3, 3]  # the default: three processes
    again = base.leveled(families=["squeezenet"], folder=tmp_path / "one", rounds=2)
    assert [r["rounds"] for r in again.reference_level["rows"]] == [2]
    assert 0.01 < again.level < 100 and again.level != 1.0
    # The measurement stays with the level it set; a level set by hand has none.
    assert again.reference_level["median"] == again.level and high.reference_level is None
    assert again.reference_level["models"] == 1 and base.reference_level is None
    assert {"spread", "expected_within_10", "rows"} <= set(again.reference_level)


def test_cli_calibrate_models_predicts_at_the_measured_level(trained, capsys, monkeypatch):
    from edgemeter.predictor import calibration

    path = str(trained["paths"][0])
    asked = []

    spread = {"value": 0.02}

    def fake_level(predictor, **options):  # the real measurement is tested above
        asked.append(options.get("rounds"))
        return {"models": 18, "median": 1.2, "error": 0.01, "quartiles": [1.1, 1.3],
                "spread": spread["value"],
                "expected_within_10": metrics.expected_within(spread["value"], 10)}

    monkeypatch.setattr(calibration, "measure_level", fake_level)
    code, out, _ = run_cli(["predict", path, "--predictor", str(trained["folder"]),
                            "--format", "json"], capsys)
    plain = json.loads(out)[0]["latency_ms"]
    command = ["predict", path, "--predictor", str(trained["folder"]), "--calibrate-models",
               "--format", "json"]
    code, out, err = run_cli(command, capsys)
    assert code == 0 and len(asked) == 1
    assert json.loads(out)[0]["latency_ms"] == pytest.approx(1.2 * plain)
    assert "18 reference models ran 1.200x the predictions (±1.0%), 2.0% apart (sd): " \
           "about 100% of models within ±10%" in err and "warning" not in err
    # References far apart: the same level, and a warning that single models are uncertain.
    spread["value"] = 0.07
    code, out, err = run_cli(command, capsys)
    assert code == 0 and json.loads(out)[0]["latency_ms"] == pytest.approx(1.2 * plain)
    assert "7.0% apart (sd): about 86% of models" in err
    assert "warning: this machine moves models unevenly now" in err
    # More processes per reference when asked; the option alone, or out of range, is refused.
    code, out, err = run_cli(command + ["--calibrate-rounds", "9"], capsys)
    assert code == 0 and asked == [None, None, 9]
    for bad in (["--calibrate-rounds", "9"], ["--calibrate-models", "--calibrate-rounds", "0"]):
        code, out, err = run_cli(["predict", path, "--predictor", str(trained["folder"]), *bad],
                                 capsys)
        assert code == 2 and "--calibrate-rounds" in err and "Traceback" not in err
    assert len(asked) == 3


def test_group_scale_applies_to_its_groups_kernels(trained):
    package = build_package(trained["profiled"][:3])
    path = trained["paths"][0]
    base = Predictor(package).predict(path)
    package.extra["model_term"] = {**package.extra["model_term"], "group_scale": {"dwconv": 0.0}}
    scaled = Predictor(package).predict(path)
    for k, b in zip(scaled.kernels, base.kernels):
        is_dw = k["type"].startswith("dwconv")
        assert k["latency_ms"] == (0.0 if is_dw else pytest.approx(b["latency_ms"]))
    assert scaled.latency_ms == pytest.approx(sum(k["latency_ms"] for k in scaled.kernels)
                                              + scaled.overhead_ms)
    package.extra["model_term"]["group_scale"] = {"dwconv": "x"}
    with pytest.raises(ModelError, match="group_scale"):
        Predictor(package)
