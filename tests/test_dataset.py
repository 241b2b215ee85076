"""Benchmark datasets: generate, measure (resumable), evaluate a predictor trained in the test
from real measurements; and the CLI commands over them."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from edgemeter.backends.protocol import paired_anchor_ms
from edgemeter.cli import main
from edgemeter.dataset import (evaluate, generate, measure, read_index, read_measurements,
                               sibling)
from edgemeter.dataset.evaluate import latency_band
from edgemeter.dataset.measure import measurements_file
from edgemeter.errors import ConfigError
from edgemeter.predictor.package import save_package
from edgemeter.store import Store

from conftest import build_package, profile_models  # shared with test_predict and test_pareto

FAMILIES = ["squeezenet", "mobilenetv1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("ds")
    generate(folder, per_family=1, seed=7, families=FAMILIES)
    return folder


def test_generate_index_and_determinism(dataset, tmp_path):
    entries = read_index(dataset)
    assert [e["family"] for e in entries] == FAMILIES
    for e in entries:
        assert (dataset / e["file"]).is_file() and e["seed"] == 7 and e["flops"] > 0
        assert e["input_shape"][:2] == [1, 3] and e["variant"]["resolution"] == e["input_shape"][2]
    # Same seed → same variants; the index is completed, not redone.
    again = generate(dataset, per_family=1, seed=7, families=FAMILIES)
    assert again == entries and len(read_index(dataset)) == 2
    other = generate(tmp_path, per_family=1, seed=8, families=FAMILIES[:1])
    assert other[0]["variant"] != entries[0]["variant"]
    with pytest.raises(ConfigError, match="unknown model family"):
        generate(tmp_path, families=["nosuchnet"])


def test_canonical_set_is_each_family_at_its_published_configuration(tmp_path):
    pytest.importorskip("torch")
    from edgemeter import zoo
    from edgemeter.importers import load_graph

    entries = generate(tmp_path, families=FAMILIES, canonical=True, per_family=5, seed=3)
    assert [e["file"] for e in entries] == [f"models/{f}-canonical.onnx" for f in FAMILIES]
    for e in entries:
        assert e["variant"] == {} and e["seed"] is None
        module, shape = zoo.build(e["family"])
        assert e["input_shape"] == list(shape)
        assert load_graph(tmp_path / e["file"]).total_cost().flops == e["flops"]
    assert generate(tmp_path, families=FAMILIES, canonical=True) == entries


def test_measure_then_resume(dataset):
    done = measure(dataset, "onnxruntime-cpu", threads=1, rounds=1, repeats=5, warmup=2)
    assert all(m.ok and m.median_ms > 0 for m in done)
    lines = read_measurements(dataset, "onnxruntime-cpu")
    assert sorted(r["file"] for r in lines) == sorted(e["file"] for e in read_index(dataset))
    with Store(dataset) as store:
        stored = len(store)
        assert all(m.protocol["interleave"] for m in store)  # the default for a dataset
    # A crash while writing the last line: the rerun measures nothing again and repairs it.
    path = measurements_file(dataset, "onnxruntime-cpu")
    text = path.read_text()
    path.write_text(text[:-40])
    again = measure(dataset, "onnxruntime-cpu", threads=1, rounds=1, repeats=5, warmup=2)
    assert [m.median_ms for m in again] == [m.median_ms for m in done]
    with Store(dataset) as store:
        assert len(store) == stored
    assert path.read_text().count("\n") == 2
    assert [json.loads(line)["median_ms"] for line in path.read_text().splitlines()] == \
        [m.median_ms for m in done]
    # The fastest run travels too (a predictor trained on it is judged on it), and the rounds
    # beside the anchor's (a truth is put at a predictor's speed round by round).
    for r, m in zip(read_measurements(dataset, "onnxruntime-cpu"), done):
        assert 0 < r["min_ms"] == min(m.samples_ms) <= r["median_ms"]
        assert r["round_medians_ms"] == m.round_medians_ms
        assert r["anchor_round_medians_ms"] == m.anchor_round_medians_ms
        assert len(r["anchor_round_medians_ms"]) == 1


def test_a_sibling_measures_the_same_models_again_apart(dataset):
    first = read_measurements(dataset, "onnxruntime-cpu")
    assert first, "test_measure_then_resume measures the dataset first"
    again = sibling(dataset, dataset.name + "-again")
    assert again.parent == dataset.parent and read_index(again) == read_index(dataset)
    assert (again / "models").resolve() == (dataset / "models").resolve()
    assert read_measurements(again, "onnxruntime-cpu") == []
    second = measure(again, "onnxruntime-cpu", threads=1, rounds=1, repeats=3, warmup=1)
    assert all(m.ok for m in second)
    assert len(read_measurements(again, "onnxruntime-cpu")) == len(first)
    assert read_measurements(dataset, "onnxruntime-cpu") == first
    assert sibling(dataset, dataset.name + "-again") == again  # reusing it keeps its truth
    assert len(read_measurements(again, "onnxruntime-cpu")) == len(first)


@pytest.mark.parametrize("sem, rounds", [(1.0, 3), (0.0, 1)])
def test_max_rounds_adds_rounds_only_to_uncertain_medians(dataset, monkeypatch, sem, rounds):
    from edgemeter.backends import protocol

    monkeypatch.setattr(protocol, "median_sem", lambda values: sem)
    folder = sibling(dataset, f"{dataset.name}-adaptive-{rounds}")
    done = measure(folder, "onnxruntime-cpu", threads=1, rounds=1, max_rounds=3, repeats=3,
                   warmup=1)
    assert all(m.ok and len(m.round_medians_ms) == rounds for m in done)
    assert [r["rounds"] for r in read_measurements(folder, "onnxruntime-cpu")] == \
        [rounds] * len(done)


@pytest.fixture(scope="module")
def package(dataset, tmp_path_factory) -> Path:
    """A small real predictor, profiled on the dataset's own models."""
    paths = [dataset / e["file"] for e in read_index(dataset)]
    return save_package(build_package(profile_models(paths, runs=5)),
                        tmp_path_factory.mktemp("pkg") / "pkg")


def test_evaluate_writes_report(dataset, package, tmp_path, capsys):
    measure(dataset, "onnxruntime-cpu", threads=1, rounds=1, repeats=5, warmup=2)
    result = evaluate(str(package), dataset, out=tmp_path / "report")
    assert result.overall["n"] == 2 and set(result.families) == set(FAMILIES)
    for row in result.rows:
        assert row["measured_ms"] > 0 and row["predicted_ms"] > 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "within ±10%" in report and "squeezenet" in report
    # Each model in exactly one latency band, the band its truth falls in.
    assert sum(f["n"] for f in result.bands.values()) == 2
    assert {latency_band(r["truth_ms"]) for r in result.rows} == set(result.bands)
    assert "By the truth's latency" in report
    # Two models: one pair to rank, one shared factor (the median of the two ratios).
    ratios = [r["predicted_ms"] / r["truth_ms"] for r in result.rows]
    assert result.relative["scale"] == pytest.approx(sum(ratios) / 2)
    assert result.relative["kendall_tau"] in (-1.0, 1.0)
    assert "Kendall's tau" in report
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["relative"] == \
        result.relative
    png = (tmp_path / "report" / "scatter.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "report" / "results.csv").read_text().splitlines()) == 3
    # The CLI over the same data.
    main(["evaluate", "--predictor", str(package), "--dataset", str(dataset),
          "--out", str(tmp_path / "cli-report")])
    out = capsys.readouterr().out
    assert "within ±10%" in out and "relative to each other" in out
    assert "within ±10% by latency: " in out
    assert (tmp_path / "cli-report" / "scatter.png").is_file()


def test_evaluate_puts_the_truth_at_the_predictors_speed(dataset, package, tmp_path):
    from edgemeter.predictor import load_package
    from edgemeter.predictor.model import Predictor

    plain = evaluate(str(package), dataset)
    assert not plain.anchored and plain.overall == plain.overall_as_measured
    # Built while the anchor took twice what it took when the dataset was measured: the
    # machine was twice as slow then, so the truth at its speed is twice the measured median.
    pkg = load_package(package)
    anchors = [r["anchor_ms"] for r in read_measurements(dataset, "onnxruntime-cpu")]
    assert all(a > 0 for a in anchors)
    pkg.extra["anchor"] = {"version": 1, "anchor_ms": 2 * anchors[0]}
    result = evaluate(Predictor(pkg), dataset, out=tmp_path / "report")
    assert result.anchored and result.overall_as_measured == plain.overall
    first = result.rows[0]
    assert first["truth_ms"] == pytest.approx(2 * first["measured_ms"])
    assert first["error_pct"] == pytest.approx(100 * (first["predicted_ms"] / first["truth_ms"]
                                                      - 1))
    assert "put at the predictor's machine speed" in (tmp_path / "report" / "report.md").read_text()
    # A model that moves twice as much as the anchor is put at speed round by round: each of
    # its rounds by the anchor timed in that round (a two-round line written here).
    flops = {e["file"]: e["flops"] for e in read_index(dataset)}[first["file"]]
    pkg.extra["anchor"]["sensitivity"] = {"per_log_flops": 1.0, "centre": math.log(flops) - 1.0}
    path = measurements_file(dataset, "onnxruntime-cpu")
    kept = path.read_text()
    line = {r["file"]: r for r in read_measurements(dataset, "onnxruntime-cpu")}[first["file"]]
    ms, anchor = line["median_ms"], line["anchor_ms"]
    rounds, anchors = [0.9 * ms, 1.1 * ms], [anchor, 1.3 * anchor]
    paired = paired_anchor_ms(rounds, anchors)
    path.write_text(kept + json.dumps({**line, "round_medians_ms": rounds,
                                       "anchor_round_medians_ms": anchors,
                                       "anchor_ms": paired}) + "\n")
    speed = pkg.extra["anchor"]["anchor_ms"]
    steep = evaluate(Predictor(pkg), dataset).rows[0]
    path.write_text(kept)
    expected = statistics.median(t * (speed / a) ** 2 for t, a in zip(rounds, anchors))
    assert steep["file"] == first["file"] and steep["truth_ms"] == pytest.approx(expected)
    assert expected != pytest.approx(ms * (speed / paired) ** 2)


def test_reference_models_are_measured_not_scored_and_set_the_level(dataset, package,
                                                                   tmp_path):
    from edgemeter.predictor.metrics import accuracy, level

    folder = tmp_path / "ds"
    entries = generate(folder, per_family=1, seed=7, families=FAMILIES, reference=1)
    # The scored models are those of the same seed without references; the next variant of
    # each family is marked.
    assert [e["file"] for e in entries if not e.get("reference")] == \
        [e["file"] for e in read_index(dataset)]
    assert [e["index"] for e in entries if e.get("reference")] == [1, 1]
    measure(folder, "onnxruntime-cpu", threads=1, rounds=1, repeats=5, warmup=2)
    result = evaluate(str(package), folder, out=tmp_path / "report")
    assert result.overall["n"] == 2 and len(result.references) == 2
    assert not any(r["reference"] for r in result.rows)
    for leveled, truth in ((result.leveled, "truth_ms"),
                           (result.leveled_as_measured, "measured_ms")):
        found = level([r[truth] / r["predicted_ms"] for r in result.references])
        assert found["median"] == pytest.approx(statistics.median(
            r[truth] / r["predicted_ms"] for r in result.references))
        expected = accuracy([r[truth] for r in result.rows],
                            [found["median"] * r["predicted_ms"] for r in result.rows])
        assert leveled == {**found, **expected}
    assert len((tmp_path / "report" / "results.csv").read_text().splitlines()) == 5
    assert "at the level of 2 reference models" in (tmp_path / "report" / "report.md").read_text()
    # Asked for as scored models now, the references are scored: the index's last line counts.
    again = generate(folder, per_family=2, seed=7, families=FAMILIES)
    assert not any(e.get("reference") for e in again + read_index(folder))
    plain = evaluate(str(package), folder)
    assert plain.overall["n"] == 4 and plain.leveled == {} and plain.references == []
    # Nothing but references: nothing to score, said in one line.
    generate(folder, per_family=1, seed=7, families=FAMILIES[:1], reference=1)
    path = folder / "index.jsonl"
    path.write_text(path.read_text() + "".join(
        json.dumps({**e, "reference": True}) + "\n" for e in read_index(folder)))
    with pytest.raises(ConfigError, match="reference models only"):
        evaluate(str(package), folder)


def test_evaluate_judges_a_min_trained_predictor_on_fastest_runs(dataset, package, tmp_path):
    from edgemeter.predictor import load_package
    from edgemeter.predictor.model import Predictor

    measure(dataset, "onnxruntime-cpu", threads=1, rounds=1, repeats=5, warmup=2)
    pkg = load_package(package)
    pkg.extra["statistic"] = "min"
    result = evaluate(Predictor(pkg), dataset, out=tmp_path / "report")
    lines = read_measurements(dataset, "onnxruntime-cpu")
    fastest = {r["file"]: r["min_ms"] for r in lines}
    anchors = {r["file"]: r["anchor_ms"] for r in lines}
    # Lines from before min_ms (and from before the anchor was paired per round): evaluation
    # says what to run, and that run writes them again from the store, measuring nothing.
    path = measurements_file(dataset, "onnxruntime-cpu")
    old = [{k: v * 1.1 if k == "anchor_ms" else v for k, v in json.loads(line).items()
            if k != "min_ms" or i} for i, line in enumerate(path.read_text().splitlines())]
    assert len(old) > 1 and "min_ms" in old[1]
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    with pytest.raises(ConfigError, match="1 of 2 lines .* lack .*dataset measure"):
        evaluate(Predictor(pkg), dataset)
    with Store(dataset) as store:
        stored = len(store)
    measure(dataset, "onnxruntime-cpu", threads=1, rounds=1, repeats=5, warmup=2)
    with Store(dataset) as store:
        assert len(store) == stored
    lines = read_measurements(dataset, "onnxruntime-cpu")
    assert {r["file"]: r["min_ms"] for r in lines} == fastest
    assert {r["file"]: r["anchor_ms"] for r in lines} == anchors
    assert result.statistic == "min"
    assert all(row["measured_ms"] == fastest[row["file"]] for row in result.rows)
    assert "fastest timed run" in (tmp_path / "report" / "report.md").read_text()


def test_a_truth_cut_to_its_first_rounds_is_judged_as_if_it_had_stopped_there(dataset,
                                                                               package):
    from edgemeter.dataset.evaluate import first_rounds

    folder = sibling(dataset, f"{dataset.name}-cut")
    measure(folder, "onnxruntime-cpu", threads=1, rounds=3, repeats=3, warmup=1)
    lines = {r["file"]: r for r in read_measurements(folder, "onnxruntime-cpu")}
    full, cut = evaluate(package, folder), evaluate(package, folder, rounds=2)
    for whole, first in zip(full.rows, cut.rows):
        line = lines[whole["file"]]
        assert whole["measured_ms"] == line["median_ms"]
        assert first["measured_ms"] == statistics.median(line["round_medians_ms"][:2])
        assert first["anchor_ms"] == paired_anchor_ms(line["round_medians_ms"][:2],
                                                      line["anchor_round_medians_ms"][:2])
    with pytest.raises(ConfigError, match="min latency cannot be cut"):
        first_rounds(line, 2, "min")


def test_a_level_can_come_from_references_cut_to_their_first_rounds(package, tmp_path):
    folder = tmp_path / "ds"
    generate(folder, per_family=1, seed=7, families=FAMILIES, reference=1)
    measure(folder, "onnxruntime-cpu", threads=1, rounds=3, repeats=3, warmup=1)
    lines = {r["file"]: r for r in read_measurements(folder, "onnxruntime-cpu")}
    full = evaluate(package, folder)
    short = evaluate(package, folder, reference_rounds=2)
    # The scored models keep all three rounds; only the references are cut, and the level
    # follows them.
    assert [r["measured_ms"] for r in short.rows] == [r["measured_ms"] for r in full.rows]
    for r in short.references:
        assert r["measured_ms"] == statistics.median(lines[r["file"]]["round_medians_ms"][:2])
    cut_level = statistics.median(r["truth_ms"] / r["predicted_ms"] for r in short.references)
    assert short.leveled["median"] == pytest.approx(cut_level)
    # A mean of two rounds against a median of three: equal only by a fluke of float sums.
    assert short.leveled["median"] != full.leveled["median"]


def test_evaluate_without_measurements_says_what_to_run(dataset, package):
    with pytest.raises(ConfigError, match="dataset measure .* --backend openvino-cpu-f32"):
        evaluate(str(package), dataset, backend="openvino-cpu-f32")


def test_cli_generate_and_measure(tmp_path, capsys):
    pytest.importorskip("torch")
    folder = tmp_path / "ds"
    main(["dataset", "generate", "--out", str(folder), "--per-family", "1", "--seed", "3",
          "--families", "squeezenet"])
    assert "1 models" in capsys.readouterr().out
    main(["dataset", "measure", str(folder), "--backend", "onnxruntime-cpu", "--rounds", "1",
          "--repeats", "3", "--consecutive"])
    assert "1 measured, 0 failed" in capsys.readouterr().out
    assert len(read_measurements(folder, "onnxruntime-cpu")) == 1
    with Store(folder) as store:
        assert [m.protocol["interleave"] for m in store] == [False]


def test_latency_bands_double_from_one_millisecond():
    assert [latency_band(ms) for ms in (0.3, 1.0, 1.9, 2.0, 7.99, 8.0, 15.9, 16.0, 400.0)] == [
        "< 1 ms", "1-2 ms", "1-2 ms", "2-4 ms", "4-8 ms", "8-16 ms", "8-16 ms", ">= 16 ms",
        ">= 16 ms"]
