"""bench/bench_families.py: the README's reading of which family holds the accuracy goal back
rests on its levels and its pooling."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/bench_families.py")


def _evaluation(folder: Path, predicted: list[float], truth: list[float],
                reference_level: float | None,
                anchors: list[float] | None = None) -> SimpleNamespace:
    rows = [{"file": f"models/m{i}.onnx", "family": "f", "predicted_ms": p, "truth_ms": t,
             "anchor_ms": anchors[i] if anchors else None}
            for i, (p, t) in enumerate(zip(predicted, truth))]
    scale = float(np.median(np.array(predicted) / np.array(truth)))
    leveled = {"median": reference_level} if reference_level is not None else {}
    return SimpleNamespace(dataset=str(folder), rows=rows, relative={"scale": scale},
                           leveled=leveled, anchored=anchors is not None)


def test_rows_at_the_truths_own_level_and_at_its_references(bench, tmp_path):
    first = tmp_path / "ds"
    (first / "models").mkdir(parents=True)
    again = tmp_path / "ds-again"
    again.mkdir()
    (again / "models").symlink_to(first / "models")
    # Predictions at half the truth, one model 20 % slower than the rest; the references say
    # the host ran 2.2 times the predictions.
    # Model 0's rounds moved by e either side of its median; model 2 has one round only.
    e = 0.1
    rounds = {"models/m0.onnx": [2 * np.exp(-e), 2.0, 2 * np.exp(e)], "models/m1.onnx": [4.0, 4.0],
              "models/m2.onnx": [7.2]}
    rows = bench.truth_rows(_evaluation(first, [1.0, 2.0, 3.0], [2.0, 4.0, 7.2], 2.2,
                                        anchors=[0.52, 0.5, 0.61]), rounds)
    assert [r["own"] for r in rows] == pytest.approx([1.0, 1.0, 1 / 1.2])
    assert [r["references"] for r in rows] == pytest.approx([1.1, 1.1, 2.2 * 3 / 7.2])
    assert [r["rounds_sd"] for r in rows] == pytest.approx([e * np.sqrt(2 / 3), 0.0, None])
    # The anchor alone leaves the predictions at half the truth; the truth's anchor is the
    # median of its measurements'.
    assert [r["alone"] for r in rows] == pytest.approx([0.5, 0.5, 3 / 7.2])
    assert [r["anchor"] for r in rows] == pytest.approx([0.52] * 3)
    # Measured again beside it, without references: the same models, no reference level.
    later = bench.truth_rows(_evaluation(again, [1.0, 2.0, 3.0], [2.0, 4.0, 6.0], None), {})
    assert [r["model"] for r in later] == [r["model"] for r in rows]
    assert all(r["references"] is None and r["rounds_sd"] is None for r in later)
    assert all(r["anchor"] is None for r in later)  # measured without the anchor


def test_anchor_slope_reads_how_far_a_family_slows_beyond_the_anchor(bench):
    # Four truths; the family's truth over prediction grows as its anchor^0.3: it slows 0.3
    # (in logs) more than the anchor's correction, and is predicted low when the machine is slow.
    anchors = [0.50, 0.55, 0.62, 0.70]
    pairs = [(a, (a / 0.5) ** -0.3 * k) for a in anchors for k in (0.97, 1.03)]
    assert bench.anchor_slope(pairs) == pytest.approx(0.3)
    rows = [{"model": f"m{i % 2}", "family": "f", "own": 1.0, "references": None,
             "rounds_sd": None, "alone": alone, "anchor": anchor}
            for i, (anchor, alone) in enumerate(pairs)]
    assert bench.figures(rows)["anchor_slope"] == pytest.approx(0.3)
    assert bench.anchor_slope([(a, 1.1) for a in anchors]) == pytest.approx(0.0)
    assert bench.anchor_slope([(0.5, 0.9), (0.5, 1.1)]) is None  # one moment: no slope
    assert bench.anchor_slope([]) is None


def test_family_table_pools_truths_and_names_the_family_that_holds_the_rest_back(bench):
    def row(model: str, family: str, own: float, references: float | None = None,
            rounds_sd: float | None = None) -> dict:
        return {"model": model, "family": family, "own": own, "references": references,
                "rounds_sd": rounds_sd, "alone": own, "anchor": None}

    rows = [row("a1", "good", 1.02, 1.0, 0.01), row("a1", "good", 0.98, 1.05, 0.03),
            row("a2", "good", 1.05, 1.12), row("a2", "good", 0.95, None),
            row("b1", "bad", 1.20, 1.3, 0.1), row("b1", "bad", 1.05, 1.0, 0.2),
            row("b2", "bad", 0.85, 0.9, 0.3), row("b2", "bad", 0.80, None)]
    table, overall, worst, without = bench.family_table(rows)
    assert worst == "bad"
    assert table["good"]["own"] == 100.0 and table["good"]["references"] == pytest.approx(200 / 3)
    assert table["bad"]["own"] == 25.0 and table["bad"]["references"] == pytest.approx(200 / 3)
    assert overall["predictions"] == 8 and overall["own"] == pytest.approx(62.5)
    assert without == table["good"]
    # Each model's median error over its truths, their sd: b1 at ln(1.2·1.05)/2, b2 lower.
    b = [np.log(1.2 * 1.05) / 2, np.log(0.85 * 0.80) / 2]
    assert table["bad"]["models_sd"] == pytest.approx(100 * np.std(b))
    assert table["bad"]["models"] == 2
    # Each model's two errors sit |d|/√2 from their mean (one degree of freedom each): pooled.
    d = np.log([1.20 / 1.05, 0.85 / 0.80])
    assert table["bad"]["truths_sd"] == pytest.approx(100 * np.sqrt(np.mean(d ** 2) / 2))
    assert table["bad"]["rounds_sd"] == pytest.approx(20.0)  # the median of 0.1, 0.2, 0.3
    assert table["good"]["rounds_sd"] == pytest.approx(2.0)
    single = bench.figures([row("c1", "lone", 1.0)])
    assert single["truths_sd"] is None and single["rounds_sd"] is None
    assert single["anchor_slope"] is None  # no truth timed beside the anchor
    text = "\n".join(bench.lines(table, overall, worst, without))
    assert text.splitlines()[0].rstrip().endswith("anchor slope")
    assert all(line.rstrip().endswith("—") for line in text.splitlines()[1:])


def test_a_folder_that_is_no_dataset_gives_one_line(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_families.py"),
                          str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "not a dataset" in out.stderr
