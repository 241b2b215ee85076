"""The fast paths of detection and prediction against straightforward references, on zoo models:
detection that tries at each node only the patterns whose first step fits it finds what trying
every pattern finds, and the merged, vectorised forest walk predicts what walking each tree node
by node predicts."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgemeter import load_predictor
from edgemeter.importers import load_graph
from edgemeter.kernels import detect, list_rules, load_rules, parse_rules
from edgemeter.predictor import regressors

PATTERN_FAMILIES = ("mobilenetv3", "efficientnet", "shufflenetv2", "vit", "mobilevit", "densenet")
PREDICT_FAMILIES = ("mobilenetv2", "mobilenetv3", "vit", "ssd")


def every_rule_set():
    """The shipped rules, each also with the other multiple-consumer policy (fuse-first walks
    the cycle check that the shipped 'stop' never reaches)."""
    sets = []
    for name in list_rules():
        rules = load_rules(name)
        data = yaml.safe_load(Path(rules.source).read_text())
        data["multiple_consumers"] = "fuse-first"
        sets += [rules, parse_rules(data, source=f"{name} fuse-first")]
    return sets


@pytest.mark.parametrize("family", PATTERN_FAMILIES)
def test_pattern_shortlist_finds_what_trying_every_pattern_finds(zoo_onnx, monkeypatch, family):
    graph = load_graph(zoo_onnx(family))
    rule_sets = every_rule_set()
    fast = [[k.to_dict() for k in detect(graph, rules)] for rules in rule_sets]
    module = importlib.import_module("edgemeter.kernels.detect")
    monkeypatch.setattr(module, "_first_step_fits", lambda patterns, kind, op: list(patterns))
    assert fast == [[k.to_dict() for k in detect(graph, rules)] for rules in rule_sets]
    assert any(k["type"] in {p.type for p in rule_sets[0].patterns} for k in fast[0])


def walked_node_by_node(regressor, features: dict) -> float:
    """One kernel's latency: its features read in the regressor's order (missing ones 0), each
    tree walked from its root comparing the float32 feature with the threshold as sklearn does,
    the leaves summed, then decoded."""
    forest = regressor.forest_
    row = [float(features.get(name, 0)) for name in regressor.feature_names_]
    x = [float(np.float32(v)) for v in row]
    feature, threshold, left, right, value = (a.tolist() for a in (
        forest.feature, forest.threshold, forest.left, forest.right, forest.value))
    leaves = 0.0
    for node in forest.roots.tolist():
        while left[node] >= 0:
            node = left[node] if x[feature[node]] <= threshold[node] else right[node]
        leaves += value[node]
    raw = forest.offset + forest.scale * leaves
    return float(regressor.decode(np.array([raw]), np.array([row]))[0])


@pytest.fixture(scope="module")
def default_predictor():
    return load_predictor()


@pytest.fixture(scope="module")
def shipped_builds(default_predictor):
    """The shipped default's builds: its members if it is an ensemble, else itself."""
    return getattr(default_predictor, "members", [default_predictor])


@pytest.mark.parametrize("family", PREDICT_FAMILIES)
def test_kernel_latencies_equal_a_node_by_node_walk(zoo_onnx, shipped_builds, family):
    for predictor in shipped_builds:
        _, kernels = predictor.detect(zoo_onnx(family))
        ms, covered = predictor.kernel_latencies(kernels)
        assert covered.all()
        expected = [walked_node_by_node(predictor.package.regressors[predictor.group(k.type)],
                                        k.features) for k in kernels]
        np.testing.assert_allclose(ms, expected, rtol=1e-12)


def test_batch_across_models_and_walk_chunks_equals_the_walk(zoo_onnx, shipped_builds,
                                                             monkeypatch):
    """Many models at once (rows past the de-duplication threshold), and the pairs walked in
    chunks much smaller than the batch, as a NAS batch is."""
    monkeypatch.setattr(regressors, "_PAIRS_PER_CHUNK", 1000)
    for predictor in shipped_builds:
        kernels = [k for family in PREDICT_FAMILIES
                   for k in predictor.detect(zoo_onnx(family))[1]]
        ms, _ = predictor.kernel_latencies(kernels)
        expected = [walked_node_by_node(predictor.package.regressors[predictor.group(k.type)],
                                        k.features) for k in kernels]
        np.testing.assert_allclose(ms, expected, rtol=1e-12)
        # conv rows alone exceed the threshold below which rows are not de-duplicated
        assert sum(predictor.group(k.type) == "conv" for k in kernels) > \
            regressors._DEDUP_MIN_ROWS


def test_the_onnxruntime_engine_predicts_what_the_numpy_walk_predicts(zoo_onnx,
                                                                      default_predictor):
    """Same trees, same float32 decisions; only the leaf sum is rounded in float32."""
    compiled = load_predictor(engine="onnxruntime")
    assert compiled.package is not default_predictor.package  # compiled from its own load
    models = [zoo_onnx(family) for family in PREDICT_FAMILIES]
    for walked, fast in zip(default_predictor.predict_batch(models),
                            compiled.predict_batch(models)):
        assert [k["type"] for k in fast.kernels] == [k["type"] for k in walked.kernels]
        np.testing.assert_allclose([k["latency_ms"] for k in fast.kernels],
                                   [k["latency_ms"] for k in walked.kernels], rtol=1e-5)
        assert fast.latency_ms == pytest.approx(walked.latency_ms, rel=1e-6)
        assert fast.coverage == walked.coverage
    kernels = [default_predictor.detect(m)[1] for m in models]
    np.testing.assert_allclose(compiled.predict_kernels(kernels),
                               default_predictor.predict_kernels(kernels), rtol=1e-6)
