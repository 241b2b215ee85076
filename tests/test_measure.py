"""The measurement protocol in fresh child processes, its faults, and the measure CLI."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgemeter.backends import Protocol, measure, measure_models
from edgemeter.backends import protocol as protocol_module
from edgemeter.backends.config import MeasureConfig
from edgemeter.errors import ConfigError
from test_backends import rejected_onnx, tiny_onnx, write_plugin

FAST = Protocol(warmup=2, repeats=5, rounds=2, max_rounds=2, timeout_s=60)

FAULTS = """
    import ctypes, os, time
    from edgemeter.backends.base import Backend, Runner

    class CallRunner(Runner):
        def __init__(self, action):
            self.action = action

        def run(self):
            self.action()

    class FaultBackend(Backend):
        name = "test-fine"

        def runtime_environment(self):
            return {"runtime": "fault", "runtime_version": "0", "precision": "f32",
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}

        def load(self, model_path):
            return CallRunner(lambda: None)

    class SegfaultBackend(FaultBackend):
        name = "test-segfault"

        def load(self, model_path):
            return CallRunner(lambda: ctypes.string_at(0))

    class HangBackend(FaultBackend):
        name = "test-hang"

        def load(self, model_path):
            return CallRunner(lambda: time.sleep(600))

    class MissingBackend(FaultBackend):
        name = "test-missing"
        extra = "npu"
        requires = "edgemeter_no_such_runtime"
"""


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return tiny_onnx(tmp_path / "tiny.onnx")


@pytest.fixture
def faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test-only backends as a real plug-in: a module plus entry points on the import path."""
    root = tmp_path / "plugins"
    root.mkdir()
    write_plugin(root, "edgemeter_fault_backends", FAULTS,
                 {"test-segfault": "SegfaultBackend", "test-hang": "HangBackend",
                  "test-missing": "MissingBackend", "test-fine": "FaultBackend"})
    monkeypatch.syspath_prepend(str(root))


def test_rounds_in_fresh_processes_give_median_of_medians(model):
    m = measure(model, "onnxruntime-cpu", {"threads": 1}, FAST)
    assert m.ok and m.error is None
    assert len(m.round_medians_ms) == 2 and len(m.samples_ms) == 10
    rounds = [m.samples_ms[:5], m.samples_ms[5:]]
    assert m.round_medians_ms == [statistics.median(r) for r in rounds]
    assert m.median_ms == statistics.median(m.round_medians_ms) > 0
    assert set(m.spread) == {"iqr_ms", "cv_within", "cv_between"}
    assert m.env["runtime"] == "onnxruntime" and m.env["threads"] == 1
    assert m.config == {"threads": 1, "graph_optimization_level": "all"}
    assert len(m.model_sha256) == 64 and m.node_times_ms is None
    assert json.loads(json.dumps(m.to_dict()))["median_ms"] == m.median_ms
    assert m.latency_ms("min") == m.min_ms == min(m.samples_ms) <= m.median_ms
    assert m.latency_ms("median") == m.median_ms


@pytest.fixture
def never_stable(monkeypatch):
    # A tiny model can meet any CV target (two rounds once gave identical medians in CI), so the
    # tests that need an unmet target make the spread judgement fail instead.
    monkeypatch.setattr(protocol_module, "is_stable", lambda spread, target_cv: False)


def test_unreached_spread_targets_run_every_allowed_round_and_are_flagged(model, never_stable):
    strict = Protocol(warmup=1, repeats=3, rounds=1, max_rounds=3)
    m = measure(model, "onnxruntime-cpu", {}, strict)
    assert m.ok and len(m.round_medians_ms) == 3 and not m.stable


def test_a_met_spread_target_stops_at_the_minimum_number_of_rounds(model):
    loose = Protocol(warmup=1, repeats=3, rounds=2, max_rounds=5, target_cv=10.0)
    m = measure(model, "onnxruntime-cpu", {}, loose)
    assert len(m.round_medians_ms) == 2 and m.stable


def test_stability_is_judged_on_the_spread_between_rounds_when_there_is_more_than_one():
    is_stable = protocol_module.is_stable
    assert is_stable({"cv_between": 0.01, "cv_within": 0.5}, 0.02)
    assert not is_stable({"cv_between": 0.05, "cv_within": 0.0}, 0.02)
    assert is_stable({"cv_between": None, "cv_within": 0.02}, 0.02)
    assert not is_stable({"cv_between": None, "cv_within": None}, 0.02)


def fed_rounds(model: Path, protocol: Protocol, rounds: list[tuple[float, float]]):
    """A Rounds given (model ms, anchor ms) rounds as if measured, without running a process."""
    run = protocol_module.Rounds(model, "onnxruntime-cpu", {}, protocol)
    for model_ms, anchor_ms in rounds:
        run.take({"samples_ms": [model_ms] * 3, "anchor_samples_ms": [anchor_ms] * 3,
                  "env": {}, "max_rss_kb": 1, "elapsed_s": 0.01})
        if run.done:
            break
    return run


def test_a_standard_error_target_adds_rounds_while_the_median_is_uncertain(model):
    adaptive = Protocol(rounds=3, max_rounds=12, target_sem=0.02)
    # Processes 20 % apart: the median stays uncertain, so every allowed round runs.
    spread = fed_rounds(model, adaptive, [(1.0, 1.0), (1.2, 1.0)] * 6)
    assert spread.done and len(spread.rounds) == 12
    # The same host moving model and anchor together: the ratios agree, three rounds do.
    moved = fed_rounds(model, adaptive, [(1.0, 1.0), (1.2, 1.2)] * 6)
    assert moved.done and len(moved.rounds) == 3
    # Rounds 3 % apart: a few rounds more than the minimum settle the median.
    near = fed_rounds(model, adaptive, [(1.0, 1.0), (1.03, 1.0), (0.97, 1.0)] * 4)
    assert 3 < len(near.rounds) < 12 and near.done
    assert protocol_module.median_sem([1.0]) is None
    assert protocol_module.median_sem([1.0, 1.0]) == 0.0


def test_time_budget_stops_adding_rounds(model, never_stable):
    budget = Protocol(warmup=1, repeats=3, rounds=1, max_rounds=5, time_budget_s=0.001)
    m = measure(model, "onnxruntime-cpu", {}, budget)
    assert len(m.round_medians_ms) == 1 and not m.stable


@pytest.mark.parametrize("backend", ["onnxruntime-cpu", "openvino-cpu-f32"])
def test_profile_gives_per_node_times(model, backend):
    m = measure(model, backend, {}, FAST, profile=True)
    # OpenVINO counts whole microseconds: a layout reorder of this tiny model can read 0.
    assert m.ok and m.profiled and m.node_times_ms and all(
        t >= 0 for t in m.node_times_ms.values()) and max(m.node_times_ms.values()) > 0


def test_threads_are_pinned_in_the_child(model, faults):
    m = measure(model, "test-fine", {"threads": 2}, FAST)
    assert m.ok, m.error
    assert m.env["omp_num_threads"] == "2" and m.env["threads"] == 2


def test_a_segfault_is_a_failed_measurement(model, faults):
    m = measure(model, "test-segfault", {}, FAST)
    assert not m.ok and m.error.startswith("runtime crashed (SIGSEGV)")
    assert m.median_ms is None


def test_a_hang_is_killed_at_the_timeout(model, faults):
    m = measure(model, "test-hang", {}, Protocol(warmup=0, repeats=1, rounds=1, timeout_s=2))
    assert not m.ok and m.error == "timed out after 2 s"


def test_a_missing_runtime_names_the_extra(model, faults):
    m = measure(model, "test-missing", {}, FAST)
    assert m.error == "edgemeter_no_such_runtime is not installed: pip install 'edgemeter[npu]'"


def test_a_runtime_that_fails_to_import_in_the_child_names_the_extra(model, tmp_path,
                                                                     monkeypatch):
    # The child sees a broken openvino first on its path, as after a half-done uninstall.
    shadow = tmp_path / "shadow" / "openvino"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('openvino is broken here')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    m = measure(model, "openvino-cpu-f32", {}, FAST)
    assert m.error == "openvino is not installed: pip install 'edgemeter[openvino]'"


def test_a_rejected_model_fails_and_the_run_goes_on(model, tmp_path):
    rejected = rejected_onnx(tmp_path / "rejected.onnx")
    completed = []
    results = measure_models([rejected, tmp_path / "missing.onnx", model], "onnxruntime-cpu",
                             {}, FAST, on_round=lambda: completed.append(1))
    assert [m.ok for m in results] == [False, False, True]
    assert len(completed) == 2  # the good model's rounds; the rejected one's failed round ends it
    assert "onnxruntime rejects rejected.onnx" in results[0].error
    assert results[1].error == "cannot read model: No such file or directory"


@pytest.mark.parametrize("interleave, expected", [(False, "aabbcc"), (True, "abcabc")])
def test_interleaved_models_run_round_r_of_every_model_before_round_r_plus_1(
        tmp_path, round_order, interleave, expected):
    models = [tiny_onnx(tmp_path / f"{name}.onnx") for name in "abc"]
    models.insert(1, tmp_path / "missing.onnx")  # fails before its first round: runs none
    reported, rounds_seen = [], []
    results = measure_models(models, "onnxruntime-cpu", {}, replace(FAST, interleave=interleave),
                             on_result=lambda m, reused: reported.append(Path(m.model).stem),
                             on_round=lambda: rounds_seen.append(1))
    assert "".join(round_order) == expected and len(rounds_seen) == 6
    assert [Path(m.model).stem for m in results] == reported == ["a", "missing", "b", "c"]
    assert [len(m.round_medians_ms) for m in results] == [2, 0, 2, 2]
    assert results[1].error == "cannot read model: No such file or directory"
    assert results[0].protocol["interleave"] is interleave


def test_interleaved_measurements_are_stored_and_reused(tmp_path, round_order):
    from edgemeter.store import Store

    models = [tiny_onnx(tmp_path / f"{name}.onnx", seed=seed) for seed, name in enumerate("ab")]
    protocol = replace(FAST, interleave=True)
    with Store(tmp_path / "ws") as store:
        first = measure_models(models, "onnxruntime-cpu", {}, protocol, store=store)
        reused = []
        again = measure_models(models, "onnxruntime-cpu", {}, protocol, store=store,
                               on_result=lambda m, was_reused: reused.append(was_reused))
    assert "".join(round_order) == "abab" and reused == [True, True]
    assert [m.median_ms for m in again] == [m.median_ms for m in first]


def test_an_interrupted_interleaved_run_resumes_from_its_stored_rounds(tmp_path, round_order,
                                                                      monkeypatch):
    from edgemeter.store import Store

    models = [tiny_onnx(tmp_path / f"{name}.onnx", seed=seed) for seed, name in enumerate("ab")]
    protocol = replace(FAST, rounds=3, max_rounds=3, interleave=True)
    recording = protocol_module.Rounds.next_round

    def interrupted(self):
        if len(round_order) == 3:  # a, b, a done; b's second round never starts
            raise KeyboardInterrupt
        return recording(self)

    monkeypatch.setattr(protocol_module.Rounds, "next_round", interrupted)
    with Store(tmp_path / "ws") as store:
        with pytest.raises(KeyboardInterrupt):
            measure_models(models, "onnxruntime-cpu", {}, protocol, store=store)
        assert len(store) == 0
        monkeypatch.setattr(protocol_module.Rounds, "next_round", recording)
        results = measure_models(models, "onnxruntime-cpu", {}, protocol, store=store)
        # a had two rounds kept and b one: the rerun runs only the rounds missing.
        assert "".join(round_order) == "aba" + "abb"
        assert [len(m.round_medians_ms) for m in results] == [3, 3] and len(store) == 2
        assert store.rounds(results[0]) == []  # kept rounds go once the measurement is stored


def test_until_stops_starting_models_and_models_are_read_lazily(tmp_path, round_order):
    models = [tiny_onnx(tmp_path / f"{name}.onnx", seed=seed) for seed, name in enumerate("abc")]
    taken = []

    def lazily():
        for model in models:
            taken.append(model.stem)
            yield model

    results = measure_models(lazily(), "onnxruntime-cpu", {}, replace(FAST, interleave=True),
                             until=lambda: len(taken) == 2)
    # Started models finish their rounds; the third is never read, let alone measured.
    assert taken == ["a", "b"] and "".join(round_order) == "abab"
    assert [Path(m.model).stem for m in results] == ["a", "b"] and all(m.ok for m in results)


def test_bad_protocol_settings_are_config_errors():
    with pytest.raises(ConfigError, match="repeats=0 must be an integer >= 1"):
        Protocol(repeats=0)
    with pytest.raises(ConfigError, match="unknown setting 'round'"):
        Protocol.from_dict({"round": 3})
    with pytest.raises(ConfigError, match="interleave='yes' must be true or false"):
        Protocol(interleave="yes")
    with pytest.raises(ConfigError, match="target_sem=0 must be a number > 0"):
        Protocol(target_sem=0)


def test_workspace_yaml_then_flags(tmp_path):
    (tmp_path / "backend.yaml").write_text(
        "backend: openvino-cpu-f32\nthreads: 2\nprotocol: {rounds: 4}\n")
    config = MeasureConfig.resolve(None, tmp_path, threads=1, protocol={"repeats": 7})
    assert config.backend == "openvino-cpu-f32" and config.threads == 1
    assert config.make_protocol().rounds == 4 and config.make_protocol().repeats == 7
    (tmp_path / "backend.yaml").write_text("backend: x\nthread: 2\n")
    with pytest.raises(ConfigError, match="unknown key 'thread'"):
        MeasureConfig.resolve(None, tmp_path)


def edgemeter(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgemeter", *args], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


CLI_FAST = ["--rounds", "1", "--max-rounds", "1", "--repeats", "3", "--warmup", "1"]


def test_cli_json_and_exit_code_1_when_something_failed(model, tmp_path):
    rejected = rejected_onnx(tmp_path / "rejected.onnx")
    out = edgemeter("measure", str(model), str(rejected), "-b", "onnxruntime-cpu", "--profile",
                    "--format", "json", *CLI_FAST)
    assert out.returncode == 1, out.stderr
    good, bad = map(json.loads, out.stdout.splitlines())
    assert {"model", "backend", "median_ms", "spread", "samples", "env", "kernels"} <= set(good)
    assert good["median_ms"] > 0 and len(good["samples"]) == 3
    assert good["min_ms"] == min(good["samples"]) and bad["min_ms"] is None
    # Per edgemeter kernel; with the runtime-inserted nodes they add up to the profiled sum.
    assert good["kernels"] and {"type", "nodes", "latency_ms"} <= set(good["kernels"][0])
    assert sum(k["latency_ms"] for k in good["kernels"]) + good["unattributed_ms"] == \
        pytest.approx(sum(good["node_times_ms"].values()))
    assert bad["error"] and bad["median_ms"] is None


def test_cli_interleave_and_target_sem_flags_reach_the_protocol(model, tmp_path):
    from edgemeter.store import Store

    other = tiny_onnx(tmp_path / "other.onnx", seed=1)
    out = edgemeter("measure", str(model), str(other), "-b", "onnxruntime-cpu", "--interleave",
                    "--target-sem", "0.5", "--workspace", str(tmp_path / "ws"), "--format",
                    "json", *CLI_FAST)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["model"] for line in out.stdout.splitlines()] == \
        [str(model), str(other)]
    with Store(tmp_path / "ws") as store:
        assert [(m.protocol["interleave"], m.protocol["target_sem"]) for m in store] == \
            [(True, 0.5)] * 2
    out = edgemeter("measure", str(model), "-b", "onnxruntime-cpu", "--target-sem", "0")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "edgemeter: error: protocol: target_sem=0.0 must be a number > 0"]


def test_cli_table_and_bad_option(model):
    out = edgemeter("measure", str(model), "-b", "openvino-cpu-f32", "--profile", *CLI_FAST)
    assert out.returncode == 0, out.stderr
    assert "openvino-cpu-f32" in out.stdout and " ms ± " in out.stdout
    assert "profiled sum" in out.stdout
    out = edgemeter("measure", str(model), "-b", "onnxruntime-cpu",
                    "-o", "graph_optimization_level=fast")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "edgemeter: error: backend onnxruntime-cpu: option graph_optimization_level='fast' is "
        "not allowed (allowed: disable, basic, extended, layout, all)"]


def test_cli_backends_list_and_connect():
    out = edgemeter("backends", "list")
    assert out.returncode == 0 and "litert-xnnpack" in out.stdout
    out = edgemeter("backends", "connect", "onnxruntime-cpu", "--threads", "2")
    assert out.returncode == 0
    assert out.stdout.startswith("hello from onnxruntime-cpu: onnxruntime")
    assert "  threads: 2" in out.stdout


def test_anchor_is_timed_beside_the_model_in_every_round(tmp_path):
    model = tiny_onnx(tmp_path / "tiny.onnx")
    m = measure(model, "onnxruntime-cpu", {"threads": 1}, replace(FAST, anchor=True))
    assert m.ok and len(m.anchor_round_medians_ms) == len(m.round_medians_ms) == 2
    ratio = statistics.median(x / a for x, a in zip(m.round_medians_ms,
                                                     m.anchor_round_medians_ms))
    assert m.anchor_ms == pytest.approx(m.median_ms / ratio) and m.anchor_ms > 0
    plain = measure(model, "onnxruntime-cpu", {"threads": 1}, FAST)
    assert plain.ok and plain.anchor_ms is None and plain.anchor_round_medians_ms is None
    with pytest.raises(ConfigError, match="anchor"):
        Protocol(anchor="yes")


def test_the_anchor_is_timed_alike_whatever_the_protocol(tmp_path):
    # A yardstick: a build's few warm-up runs read it 1 % slow beside a truth's.
    from edgemeter.backends import backend_target, get_backend
    from edgemeter.backends.anchor import ANCHOR_BLOCK
    from edgemeter.backends.worker import run_round

    model = tiny_onnx(tmp_path / "tiny.onnx")
    for warmup, repeats in ((0, 2), (10, 30)):
        out = run_round({"target": backend_target("onnxruntime-cpu"),
                         "config": get_backend("onnxruntime-cpu", threads=1).settings(),
                         "model": str(model), "warmup": warmup, "repeats": repeats,
                         "profile_runs": 0, "anchor": True})
        assert len(out["samples_ms"]) == repeats
        assert len(out["anchor_samples_ms"]) == 2 * ANCHOR_BLOCK


def test_the_anchor_pairs_with_the_model_round_by_round():
    from edgemeter.backends.protocol import Measurement, paired_anchor_ms

    # Round 2 ran in a slow spell that slowed model and anchor alike (x1.3), round 3 had a
    # slow model and a quick anchor. Two rounds of three say the model takes 4 anchors; the
    # two medians (4.4 ms, 1.0 ms) come from different rounds and would say 4.4.
    rounds, anchors = [4.0, 5.2, 4.4], [1.0, 1.3, 0.95]
    assert paired_anchor_ms(rounds, anchors) == pytest.approx(4.4 / 4.0)
    assert statistics.median(anchors) == 1.0
    assert paired_anchor_ms([4.0, 3.6], [1.0, 0.9, 1.3]) == 1.0  # rounds that do not pair
    # Stored before the pairing: read back, the anchor is paired again.
    old = Measurement("m.onnx", "onnxruntime-cpu", {}, round_medians_ms=rounds, median_ms=4.4,
                      anchor_round_medians_ms=anchors, anchor_ms=1.0)
    assert Measurement.from_dict(old.to_dict()).anchor_ms == pytest.approx(1.1)


def test_a_median_is_put_at_speed_round_by_round():
    from edgemeter.backends.anchor import at_speed, measured_at_speed, paired_rounds
    from edgemeter.backends.protocol import paired_anchor_ms

    rounds, anchors = [4.0, 5.2, 4.4], [1.0, 1.3, 0.95]
    paired = paired_anchor_ms(rounds, anchors)  # 1.1: the median 4.4 over the median ratio 4
    # Slope 1: the median at the paired anchor, whichever way.
    assert measured_at_speed(4.4, paired, 0.8, 1.0, (rounds, anchors)) == \
        pytest.approx(at_speed(4.4, paired, 0.8))
    # Slope 2: each round at speed by its own anchor (2.56, 1.97, 3.12 ms), then the median;
    # the paired anchor would stretch the gap between the rounds of the two medians.
    assert measured_at_speed(4.4, paired, 0.8, 2.0, (rounds, anchors)) == pytest.approx(2.56)
    assert at_speed(4.4, paired, 0.8, 2.0) == pytest.approx(4.4 * (0.8 / 1.1) ** 2)
    # Rounds that do not pair: the paired anchor; no speed to go to: as measured.
    assert measured_at_speed(4.4, paired, 0.8, 2.0, ([4.0], [1.0, 1.1])) == \
        at_speed(4.4, paired, 0.8, 2.0)
    assert measured_at_speed(4.4, paired, None, 2.0, (rounds, anchors)) == 4.4
    assert paired_rounds("median", rounds, anchors) == (rounds, anchors)
    assert paired_rounds("min", rounds, anchors) is None
    assert paired_rounds("median", rounds, None) is None


def test_anchor_puts_latencies_at_one_machine_speed():
    from edgemeter.backends.anchor import anchor_bytes, at_speed
    from edgemeter.builder.train import anchor_speed, at_anchor_speed

    # Measured while the anchor ran 25% slow: at the reference speed, 25% less.
    assert at_speed(10.0, 0.5, 0.4) == pytest.approx(8.0)
    assert at_speed(10.0, None, 0.4) == at_speed(10.0, 0.5, None) == 10.0
    assert anchor_speed([0.4, None, 0.5, 0.6]) == 0.5 and anchor_speed([None]) is None
    rows = at_anchor_speed([{"source": "a", "latency_ms": 2.0, "anchor_ms": 0.6},
                            {"source": "b", "latency_ms": 2.0}], 0.3)
    assert [r["latency_ms"] for r in rows] == [1.0, 2.0]
    # A model that shares half the anchor's move (in log terms) is put at speed by half of it.
    assert at_speed(10.0, 0.5, 0.4, slope=0.5) == pytest.approx(10.0 * 0.8 ** 0.5)
    rows = at_anchor_speed([{"source": "a", "latency_ms": 2.0, "anchor_ms": 0.6},
                            {"source": "b", "latency_ms": 2.0, "anchor_ms": 0.6}], 0.3, {"a": 2})
    assert [r["latency_ms"] for r in rows] == pytest.approx([0.5, 1.0])
    assert anchor_bytes() == anchor_bytes.__wrapped__()  # the same network in every worker


def test_sensitivity_is_fitted_from_rounds_and_centred_on_one():
    from edgemeter.backends.anchor import Sensitivity
    from edgemeter.builder.train import SENSITIVITY_MIN_MODELS, fit_sensitivity

    rng = np.random.default_rng(7)
    log_flops = rng.uniform(np.log(1e7), np.log(1e10), 60)
    centre = log_flops.mean()

    def measured(steepness: float, level: float, anchor_sd: float = 0.05):
        """Models whose rounds move by (level + steepness · (ln FLOPs - centre)) times the
        anchor's move, with a little noise of their own."""
        models = []
        for size in log_flops:
            anchor = rng.normal(0.0, anchor_sd, 5)
            slope = level + steepness * (size - centre)
            model = slope * anchor + rng.normal(0.0, 0.005, 5)
            models.append((float(np.exp(size)), list(3.0 * np.exp(model)),
                           list(0.5 * np.exp(anchor))))
        return models

    fitted = fit_sensitivity(measured(-0.4, 0.7))
    assert fitted.per_log_flops == pytest.approx(-0.4, abs=0.03)
    assert fitted.centre == pytest.approx(centre)
    # The level gives way to 1 at the mean size; small models move more, big ones less.
    assert fitted.slope(np.exp(centre)) == pytest.approx(1.0)
    assert fitted.slope(1e7) > 1.5 and fitted.slope(1e10) < 0.6
    lo, hi = Sensitivity.SLOPE_RANGE
    assert fitted.slope(1e3) == hi and fitted.slope(1e15) == lo
    # Too few models, a steady anchor, single rounds: slope 1 for every model.
    assert fit_sensitivity(measured(-0.4, 0.7)[:SENSITIVITY_MIN_MODELS - 1]) == Sensitivity()
    assert fit_sensitivity(measured(-0.4, 0.7, anchor_sd=0.0)) == Sensitivity()
    assert fit_sensitivity([(f, r[:1], a[:1]) for f, r, a in measured(-0.4, 0.7)]) \
        == Sensitivity()
    assert Sensitivity().slope(1e9) == 1.0
    assert str(Sensitivity()) == "slope 1 for every model"
    assert str(Sensitivity(-0.25, 20.0)) == "slope 1 - 0.250 · (ln FLOPs - 20.00)"


def test_worker_raises_its_priority_where_allowed(tmp_path):
    m = measure(tiny_onnx(tmp_path / "tiny.onnx"), "onnxruntime-cpu", {"threads": 1}, FAST)
    # Root may raise it (CI and this machine run as root); anyone else is refused, quietly.
    assert m.ok and m.env["priority_raised"] is (os.geteuid() == 0)


def test_busy_neighbour_is_seen_and_reported(tmp_path, capsys):
    from edgemeter.cli import main

    model = tiny_onnx(tmp_path / "tiny.onnx")
    # A neighbour spinning on every core for the whole measurement.
    code = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count())]
    try:
        busy = measure(model, "onnxruntime-cpu", {"threads": 1},
                       Protocol(warmup=50, repeats=2000, rounds=1, max_rounds=1))
        with pytest.raises(SystemExit) as done:
            main(["measure", str(model), "-b", "onnxruntime-cpu", "--rounds", "1",
                  "--repeats", "2000"])
    finally:
        for spinner in spinners:
            spinner.kill()
    assert busy.ok and busy.others_cores is not None and busy.others_cores >= 0.5
    assert done.value.code == 0 and "cores busy" in capsys.readouterr().out
