"""Ensembles of builds: the mean of members put at one machine speed, their file, the registry
and the CLI."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import build_package
from test_predict import run_cli

from edgemeter.errors import ConfigError, ModelError
from edgemeter.predictor import registry
from edgemeter.predictor.ensemble import Ensemble, load_ensemble, write_ensemble
from edgemeter.predictor.model import Predictor, load_predictor
from edgemeter.predictor.package import save_package


@pytest.fixture(scope="module")
def builds(tiny_predictor) -> dict:
    """Two builds of one predictor at different machine speeds: the second trained on other
    models, with a model term 60 % higher, and its anchor 25 % slower."""
    trained = tiny_predictor("onnxruntime-cpu")
    first = build_package(trained["profiled"][:3], name="tiny-ort", version="1.0")
    second = build_package(trained["profiled"][1:], name="tiny-ort", version="1.1")
    first.extra["anchor"] = {"version": 1, "anchor_ms": 0.4}
    second.extra["anchor"] = {"version": 1, "anchor_ms": 0.5, "sensitivity": {
        "per_log_flops": -0.1, "centre": 20.0}}
    term = second.extra["model_term"]
    second.extra["model_term"] = {**term, "scale": 1.6 * term["scale"]}
    return {"paths": trained["paths"], "first": first, "second": second}


def test_the_mean_of_members_at_the_first_members_speed(builds):
    first, second = Predictor(builds["first"]), Predictor(builds["second"])
    ensemble = Ensemble([first, second], "tiny-ort", "2.0")
    assert ensemble.label == "tiny-ort 2.0" and ensemble.anchor_ms == 0.4
    second_here = second.calibrated(0.4)  # its milliseconds at the first build's speed
    gaps = []
    for path in builds["paths"]:
        a, b, mean = first.predict(path), second_here.predict(path), ensemble.predict(path)
        gaps.append(abs(b.latency_ms / a.latency_ms - 1))
        assert mean.latency_ms == pytest.approx((a.latency_ms + b.latency_ms) / 2)
        assert [k["latency_ms"] for k in mean.kernels] == pytest.approx(
            [(x["latency_ms"] + y["latency_ms"]) / 2 for x, y in zip(a.kernels, b.kernels)])
        assert mean.latency_ms == pytest.approx(
            sum(k["latency_ms"] for k in mean.kernels) + mean.overhead_ms)
        assert mean.predictor == "tiny-ort 2.0" and mean.model == str(path)
    assert max(gaps) > 0.05  # the members differ: a mean of equals would prove nothing
    kernels = [first.detect(p)[1] for p in builds["paths"]]
    assert ensemble.predict_kernels(kernels) == pytest.approx(
        (first.predict_kernels(kernels) + second_here.predict_kernels(kernels)) / 2)
    # At another speed every member moves by its own slope.
    slow = ensemble.calibrated(0.5)
    path = builds["paths"][0]
    assert slow.predict(path).latency_ms == pytest.approx(
        (first.calibrated(0.5).predict(path).latency_ms
         + second.calibrated(0.5).predict(path).latency_ms) / 2)
    assert slow.anchor_ms == 0.4 and slow.speed_ratio == pytest.approx(1.25)
    with pytest.raises(ConfigError, match="an anchor time must be a positive number"):
        ensemble.calibrated(0)  # not read as "no anchor time given"
    with pytest.raises(ConfigError, match="an anchor time must be a positive number"):
        Ensemble(ensemble.members, ensemble.name, ensemble.version, -0.4)
    # Timed now on the members' backend (`edgemeter predict --calibrate`): a real anchor time.
    now = ensemble.calibrated()
    assert isinstance(now, Ensemble) and 0.01 < now.speed_ratio < 100
    assert now.predict(path).latency_ms == pytest.approx(
        ensemble.calibrated(0.4 * now.speed_ratio).predict(path).latency_ms)
    with pytest.raises(ConfigError, match="is an ensemble"):
        ensemble.kernel_latencies(kernels[0])


def test_coverage_is_the_least_and_warnings_are_merged(builds, tiny_predictor):
    profiled = tiny_predictor("onnxruntime-cpu")["profiled"]
    lacking = build_package(profiled[:3], skip_groups=("dwconv",), name="tiny-ort", version="1.2")
    lacking.extra["anchor"] = {"version": 1, "anchor_ms": 0.4}
    ensemble = Ensemble([Predictor(builds["first"]), Predictor(lacking)], "tiny-ort", "2.0")
    mobilenet = next(p for p in builds["paths"] if "mobilenetv2" in p.name)
    p = ensemble.predict(mobilenet)
    assert p.coverage["kernels"] < 1.0
    assert not all(k["covered"] for k in p.kernels if k["type"].startswith("dwconv"))
    assert sum("no trained regressor in predictor tiny-ort 2.0" in w for w in p.warnings) == 1


def test_members_must_be_builds_of_one_predictor(builds):
    first = Predictor(builds["first"])
    with pytest.raises(ConfigError, match="two or more"):
        Ensemble([first], "tiny-ort", "2.0")
    other_rules = replace(builds["second"], fusion_rules=builds["second"].fusion_rules + "\n#")
    with pytest.raises(ModelError, match="different fusion rules"):
        Ensemble([first, Predictor(other_rules)], "tiny-ort", "2.0")
    unanchored = replace(builds["second"], extra={
        k: v for k, v in builds["second"].extra.items() if k != "anchor"})
    with pytest.raises(ModelError, match="speed anchor"):
        Ensemble([first, Predictor(unanchored)], "tiny-ort", "2.0")
    # a CPU other than the one the tests run on, whichever that is
    elsewhere = replace(builds["second"], fingerprint={
        **builds["second"].fingerprint, "cpu_id": "cpu family 99, model 1"})
    with pytest.raises(ModelError, match="different CPUs"):
        Ensemble([first, Predictor(elsewhere)], "tiny-ort", "2.0")
    with pytest.raises(ModelError, match="not other-name"):
        Ensemble([first, Predictor(builds["second"])], "other-name", "2.0")


@pytest.fixture
def shipped(builds, tmp_path, monkeypatch):
    """Both builds shipped as versions of tiny-ort (the default name), no user registry."""
    monkeypatch.setenv("EDGEMETER_HOME", str(tmp_path / "home"))
    folder = tmp_path / "shipped"
    (folder / "tiny-ort").mkdir(parents=True)
    (folder / "index.json").write_text(json.dumps({"default": "tiny-ort"}))
    monkeypatch.setattr(registry, "shipped_dir", lambda: folder)
    for build in ("first", "second"):
        save_package(builds[build], folder / "tiny-ort" / f"{builds[build].version}.zip")
    return folder / "tiny-ort"


def test_an_ensemble_file_is_a_version_like_any_other(builds, shipped, capsys):
    path = write_ensemble(shipped, "tiny-ort", "2.0", ["1.0", "1.1"])
    assert json.loads(path.read_text())["members"] == ["1.0", "1.1"]
    info = registry.find_predictor()  # the newest version built on a machine like this one
    assert (info.version, info.members, info.backend) == ("2.0", ("1.0", "1.1"),
                                                          builds["first"].backend)
    ensemble = load_predictor()
    assert isinstance(ensemble, Ensemble) and ensemble.label == "tiny-ort 2.0"
    assert isinstance(load_predictor(path), Ensemble)
    model = builds["paths"][0]
    expected = Ensemble([Predictor(builds["first"]), Predictor(builds["second"])],
                        "tiny-ort", "2.0").predict(model).latency_ms
    assert ensemble.predict(model).latency_ms == pytest.approx(expected, rel=2e-3)  # float16 leaves
    code, out, _ = run_cli(["predict", str(model), "--format", "json"], capsys)
    assert code == 0 and json.loads(out)[0]["predictor"] == "tiny-ort 2.0"
    code, out, _ = run_cli(["predictors", "info", "tiny-ort", "--json"], capsys)
    manifest = json.loads(out)
    assert code == 0 and (manifest["version"], manifest["members"]) == ("2.0", ["1.0", "1.1"])
    code, out, _ = run_cli(["predictors", "info", "tiny-ort"], capsys)
    assert code == 0 and "members:   1.0, 1.1 (their mean" in out
    code, out, _ = run_cli(["predictors", "list"], capsys)
    assert code == 0 and "2.0 (mean of 1.0, 1.1)" in out
    code, out, _ = run_cli(["predictors", "list", "--json"], capsys)
    listed = {p["version"]: p for p in json.loads(out)}
    assert listed["2.0"]["members"] == ["1.0", "1.1"] and listed["2.0"]["default"]
    assert listed["1.1"]["members"] == []


def test_a_broken_ensemble_is_refused_with_one_line(builds, shipped, capsys):
    with pytest.raises(ModelError, match="different fusion rules"):
        save_package(replace(builds["second"], version="1.5",
                             fusion_rules=builds["second"].fusion_rules + "\n#"),
                     shipped / "1.5.zip")
        write_ensemble(shipped, "tiny-ort", "2.0", ["1.0", "1.5"])
    assert not list(shipped.glob("*.json")) and not list(shipped.glob(".*"))
    (shipped / "1.5.zip").unlink()
    with pytest.raises(ModelError, match="1.7 is not installed"):
        write_ensemble(shipped, "tiny-ort", "2.0", ["1.0", "1.7"])
    (shipped / "2.0.json").write_text(json.dumps(
        {"format": "edgemeter-ensemble/1", "name": "tiny-ort", "version": "2.0",
         "members": ["1.0", "1.9"]}))
    broken = {p.version: p for p in registry.list_predictors()}["2.0"]
    assert "1.9 is not installed" in broken.problem
    assert registry.find_predictor().version == "1.1"  # the newest that works
    code, _, err = run_cli(["predict", str(builds["paths"][0]), "--version", "2.0"], capsys)
    assert code == 2 and "1.9 is not installed" in err and len(err.strip().splitlines()) == 1
    (shipped / "2.0.json").write_text('{"format": "edgemeter-ensemble/1", "members": ["1.0"]}')
    assert "two or more" in {p.version: p for p in registry.list_predictors()}["2.0"].problem
    (shipped / "2.0.json").write_text(json.dumps(
        {"format": "edgemeter-ensemble/1", "name": "tiny-ort", "version": "2.0",
         "members": [{"version": "1.0"}, "1.1"]}))
    assert "two or more" in {p.version: p for p in registry.list_predictors()}["2.0"].problem
    (shipped / "2.0.json").write_text("not json")
    assert "unreadable" in {p.version: p for p in registry.list_predictors()}["2.0"].problem
