"""bench/bench_anchor.py: whether an anchor tracks its backend's models rests on its slope and on
keeping each backend's cycles apart."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/bench_anchor.py")


def test_slope_reads_how_far_models_follow_the_anchor(bench):
    anchor = np.array([0.40, 0.44, 0.50, 0.46])
    assert bench.slope(anchor, 3.0 * anchor ** 0.6) == pytest.approx(0.6)
    assert bench.slope(anchor, 3.0 * anchor) == pytest.approx(1.0)
    assert math.isnan(bench.slope(np.full(4, 0.4), np.array([1.0, 1.1, 1.2, 1.3])))


def test_summary_keeps_backends_apart_and_regresses_on_the_cycle_anchor(bench, capsys):
    # Backend "b": every model runs 2 x anchor^0.5 of its cycle; the first model's own anchor
    # reads off by a cycle's noise, which the cycle's median anchor leaves out. The models are
    # whatever the records name (--family), in the order measured.
    models = ["resnext", "regnet", "ghostnet", "vgg"]
    records = []
    for cycle, (a, noise) in enumerate(((0.40, 1.1), (0.48, 0.9), (0.44, 1.05))):
        for i, model in enumerate(models):
            records.append({"cycle": cycle, "backend": "b", "model": model,
                            "median_ms": 2 * a ** 0.5, "min_ms": 2 * a ** 0.5,
                            "anchor_ms": a * (noise if i == 0 else 1.0)})
        # Written before --backend took several: onnxruntime's, models tracking the anchor.
        records.append({"cycle": cycle, "model": "resnet", "median_ms": 5 * a,
                        "min_ms": 5 * a, "anchor_ms": a})
    bench.summarise(records)
    out = capsys.readouterr().out
    b = out[out.index("backend b:"):out.index("backend onnxruntime-cpu:")]
    ort = out[out.index("backend onnxruntime-cpu:"):]
    assert "3 cycles, 12 measurements" in b and "3 cycles, 3 measurements" in ort
    rows = [line.split() for line in b.splitlines()[3:]]
    assert [row[0] for row in rows] == models
    assert [float(row[-1]) for row in rows] == pytest.approx([0.5] * len(models), abs=0.005)
    assert float(ort.splitlines()[3].split()[-1]) == pytest.approx(1.0, abs=0.005)


@pytest.mark.parametrize("args, message", [
    (["--backend", "onnxruntime-cpu", "--backend", "openvino-cpu"],
     "unknown backend 'openvino-cpu'"),
    (["--family", "resnet", "--family", "resnex"], "unknown model family 'resnex'"),
])
def test_unknown_name_ends_in_one_line_before_measuring(tmp_path, args, message):
    out = tmp_path / "anchor.jsonl"
    done = subprocess.run([sys.executable, str(ROOT / "bench/bench_anchor.py"), *args,
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr
    assert not out.exists()
