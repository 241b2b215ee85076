"""Porting: a package built on another CPU, put at this machine's speed by reference models and
the speed anchor measured here."""
from __future__ import annotations

import dataclasses
import statistics

import pytest
from test_predict import run_cli, trained  # noqa: F401  (fixture: a tiny onnxruntime package)

from edgemeter.builder.port import port
from edgemeter.errors import ConfigError
from edgemeter.predictor import calibration, fingerprint
from edgemeter.predictor.ensemble import Ensemble
from edgemeter.predictor.metrics import level
from edgemeter.predictor.model import Predictor, load_predictor
from edgemeter.predictor.package import load_package, save_package


@pytest.fixture
def foreign(trained):  # noqa: F811
    """The tiny package as if built on another CPU, with a speed anchor of its own."""
    package = trained["package"]
    return dataclasses.replace(
        package, fingerprint={**package.fingerprint, "cpu_model": "Another CPU"},
        extra={**package.extra, "anchor": {"version": 1, "anchor_ms": 9.0}})


def test_a_port_scales_every_prediction_by_the_level_measured_here(trained, foreign,  # noqa: F811
                                                                   tmp_path):
    pytest.importorskip("torch")
    source = Predictor(foreign)
    package = port(source, "0.2", rounds=2, families=["squeezenet", "mobilenetv1"],
                   folder=tmp_path / "refs")
    ported = package.extra["ported"]
    rows, found = ported["rows"], ported["level"]
    # Real measurements: two reference models, two fresh processes each, the anchor beside.
    assert [r["rounds"] for r in rows] == [2, 2] and all(r["measured_ms"] > 0 for r in rows)
    assert found["median"] == pytest.approx(
        level([r["measured_ms"] / r["predicted_ms"] for r in rows])["median"])
    assert 0.01 < found["median"] < 100 and found["median"] != 1.0
    anchors = [r["anchor_ms"] for r in rows]
    assert package.extra["anchor"]["anchor_ms"] == pytest.approx(statistics.median(anchors))
    assert ported["anchor_ms"] == [min(anchors), max(anchors)] and min(anchors) > 0
    # This machine's fingerprint; where it came from is kept.
    assert package.fingerprint == fingerprint.current(list(foreign.runtime_versions))
    assert ported["from"] == "tiny-ort 0.1"
    assert ported["from_fingerprint"]["cpu_model"] == "Another CPU"
    term, source_term = package.extra["model_term"], foreign.extra["model_term"]
    assert term["scale"] == pytest.approx(found["median"] * source_term["scale"])
    # Saved and loaded again, it predicts the source's times the level, at its own anchor.
    # (Both as saved: a saved tree's thresholds are float32.)
    again = Predictor(load_package(save_package(package, tmp_path / "ported.zip")))
    saved = Predictor(load_package(save_package(foreign, tmp_path / "source.zip")))
    assert again.label == "tiny-ort 0.2"
    assert again.anchor_ms == pytest.approx(statistics.median(anchors))
    for model in trained["paths"]:
        assert again.predict(model).latency_ms == pytest.approx(
            found["median"] * saved.predict(model).latency_ms)
    assert again.package.kernels == foreign.kernels


def test_what_cannot_be_ported(foreign):
    source = Predictor(foreign)
    refusals = {"ensemble": (Ensemble([source, source], "tiny-ort", "2.0"), "0.2"),
                "calibrated to another machine speed": (source.leveled(1.1), "0.2"),
                "version of its own": (source, "0.1"),
                "bad predictor version": (source, "0 2")}
    for why, (predictor, version) in refusals.items():
        with pytest.raises(ConfigError, match=why):
            port(predictor, version)


def test_cli_port_writes_a_version_this_machine_picks(foreign, tmp_path, monkeypatch,
                                                     capsys):
    """``predictors port`` writes the package, ``register`` installs it, and it is the version
    found for this machine where the source was built on another CPU."""
    monkeypatch.setenv("EDGEMETER_HOME", str(tmp_path / "home"))
    source = save_package(foreign, tmp_path / "tiny-ort" / "0.1")
    asked = []

    def fake_level(predictor, **options):  # the real measurement is tested above
        asked.append(options)
        rows = [{"model": f"m{i}", "measured_ms": 1.2, "predicted_ms": 1.0, "rounds": 9,
                 "anchor_ms": a} for i, a in enumerate((0.5, 0.6, 0.7))]
        return {**level([1.1, 1.2, 1.3]), "rows": rows}

    monkeypatch.setattr(calibration, "measure_level", fake_level)
    out = tmp_path / "ported.zip"
    command = ["predictors", "port", str(source), "--as", "0.2", "--out", str(out)]
    code, stdout, _ = run_cli(command, capsys)
    assert code == 0 and asked[0]["rounds"] == 9 and asked[0]["anchor"] is True
    assert stdout.startswith("Ported tiny-ort 0.1 as tiny-ort 0.2: 3 reference models ran "
                             "1.200x its predictions") and "0.600 ms beside them" in stdout
    # Never over an existing file, and before measuring: one line, a non-zero exit.
    code, _, err = run_cli(command, capsys)
    assert code != 0 and err.strip() == (f"edgemeter: error: {out} already exists: give --out "
                                         "a new path") and len(asked) == 1
    code, _, _ = run_cli([*command[:-1], str(tmp_path / "three.zip"), "--rounds", "3"], capsys)
    assert code == 0 and asked[-1]["rounds"] == 3
    code, _, _ = run_cli(["predictors", "register", str(source)], capsys)
    code, _, _ = run_cli(["predictors", "register", str(out)], capsys)
    assert code == 0 and load_predictor("tiny-ort").label == "tiny-ort 0.2"
    code, stdout, _ = run_cli(["predictors", "info", "tiny-ort", "--version", "0.2"], capsys)
    assert code == 0 and ("ported:    from tiny-ort 0.1, its regressors; 3 reference models ran "
                          "1.200x its predictions here") in stdout
    assert "Another CPU" not in stdout  # no warning: built, in effect, on this machine
