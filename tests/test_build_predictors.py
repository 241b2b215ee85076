"""scripts/build_predictors.py: workspace settings given on its command line reach the build."""
import argparse

import pytest

import edgemeter.builder
from edgemeter.builder import create_workspace, load_workspace

from conftest import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/build_predictors.py")


class Built(Exception):
    """Raised in place of the build: the test stops where measuring would start."""


@pytest.fixture
def no_build(monkeypatch):
    def fake_build(ws, budget, retrain):
        raise Built(ws)

    monkeypatch.setattr(edgemeter.builder, "build", fake_build)


def test_overrides_reach_fresh_configs(script, tmp_path, no_build):
    with pytest.raises(Built) as built:
        script.build_target("onnxruntime-cpu-1t", tmp_path, "1m", True, "9.1", False,
                            {"zoo_seed": 2000, "reference_models": 3})
    ws = built.value.args[0]
    assert ws.build["zoo_seed"] == 2000 and ws.build["reference_models"] == 3
    assert ws.build["trees"] == script.SETTINGS["trees"]
    assert load_workspace(tmp_path / "onnxruntime-cpu-1t").build["version"] == "9.1"


@pytest.mark.parametrize("name", ["onnxruntime-cpu-1t", "onnxruntime-cpu-2t"])
def test_a_target_gets_its_own_settings(script, name, tmp_path, no_build):
    with pytest.raises(Built) as built:
        script.build_target(name, tmp_path, "1m", True, "9.1", False)
    weights = built.value.args[0].build["zoo_family_weights"]
    assert weights == ({"ghostnet": 6} if name == "onnxruntime-cpu-1t" else {})


@pytest.mark.parametrize("text, weights", [("none", {}), ("ghostnet=1", {"ghostnet": 1}),
                                           ("ghostnet=6,resnet=2", {"ghostnet": 6, "resnet": 2})])
def test_family_weights_replace_the_targets(script, text, weights, tmp_path, no_build):
    with pytest.raises(Built) as built:
        script.build_target("onnxruntime-cpu-1t", tmp_path, "1m", True, "9.1", False,
                            {"zoo_family_weights": script.family_weights(text)})
    assert built.value.args[0].build["zoo_family_weights"] == weights


@pytest.mark.parametrize("text", ["ghostnet", "ghostnet=0", "ghostnet=two", "mobilenet=3", ""])
def test_bad_family_weights_are_one_line(script, text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected 'none' or FAMILY=N"):
        script.family_weights(text)


def test_overrides_refused_on_kept_configs(script, tmp_path):
    create_workspace(tmp_path / "onnxruntime-cpu-1t", "onnxruntime-cpu", name="x", version="9.1")
    with pytest.raises(SystemExit, match="--zoo-seed changes the workspace's configs"):
        script.build_target("onnxruntime-cpu-1t", tmp_path, "1m", False, "9.1", False,
                            {"zoo_seed": 2000})
    with pytest.raises(SystemExit, match="--reference-models and --zoo-seed change"):
        script.build_target("onnxruntime-cpu-1t", tmp_path, "1m", False, "9.1", False,
                            {"reference_models": 0, "zoo_seed": 2000})


def test_port_ships_the_ported_package(script, tmp_path, monkeypatch, capsys):
    """--port V writes --version as what edgemeter.builder.port makes of shipped V (its real
    measurement is tested in test_port.py), and needs one --only predictor and the version."""
    import dataclasses
    import sys

    import edgemeter.builder.port

    def fake_port(predictor, version, **options):
        extra = {**predictor.package.extra, "ported": {"anchor_ms": [0.4, 0.5]}}
        extra["anchor"] = {**extra["anchor"], "anchor_ms": 0.45}
        extra["ported"]["level"] = {"models": 18, "median": 1.5, "error": 0.01, "spread": 0.05}
        return dataclasses.replace(predictor.package, version=version, extra=extra)

    monkeypatch.setattr(edgemeter.builder.port, "port", fake_port)
    monkeypatch.setattr(script, "SHIPPED", tmp_path)
    written = script.port_shipped("onnxruntime-cpu-2t", "1.4", "9.9")
    assert written == tmp_path / "onnxruntime-cpu-2t" / "9.9.zip" and written.is_file()
    assert capsys.readouterr().out.startswith(
        "onnxruntime-cpu-2t 1.4 -> 9.9: 18 reference models ran 1.500x its predictions")
    monkeypatch.setattr(sys, "argv", ["build_predictors.py", "--only", "onnxruntime-cpu-2t",
                                      "--port", "1.4"])
    with pytest.raises(SystemExit, match="--port needs one --only predictor and the --version"):
        script.main()
