"""bench/bench_kernel_context.py: the README's reading of which kernel types a predictor misses
inside real models rests on its ratios."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/bench_kernel_context.py")


def test_share_ratio_takes_the_whole_models_level_out(bench):
    predicted = {"conv": 2.0, "fc": 1.0}
    # The host ran everything 25 % slower than predicted, and the fc another 2x slower in the
    # second measurement; a type the runtime gave no time of its own has no ratio there.
    measured = [{"conv": 2.5, "fc": 1.25}, {"conv": 2.5, "fc": 2.5}, {"conv": 2.5}]
    out = bench.ratios(predicted, measured)
    context, raw, share = out["conv"]
    assert context == 2.5
    assert np.allclose(raw, 0.8)
    assert share[0] == pytest.approx(1.0)
    fc_context, fc_raw, fc_share = out["fc"]
    assert fc_context == 1.25  # the median of 1.25, 2.5 and 0
    assert np.allclose(fc_raw, [0.8, 0.4])
    assert fc_share[0] == pytest.approx(1.0)
    assert fc_share[1] == pytest.approx((1 / 3) / (2.5 / 5))


def test_pooled_ratio_is_the_median_over_models(bench):
    one = bench.ratios({"conv": 1.0, "fc": 1.0}, [{"conv": 1.0, "fc": 1.0}])
    two = bench.ratios({"conv": 1.0, "fc": 1.0}, [{"conv": 1.0, "fc": 3.0}])
    three = bench.ratios({"conv": 1.0}, [{"conv": 2.0}])
    lines = bench.pooled([one, two, three])
    conv = next(line for line in lines if line.split()[0] == "conv").split()
    fc = next(line for line in lines if line.split()[0] == "fc").split()
    assert conv[1:3] == ["3", "1.00"]  # 1, 2 and 1
    assert fc[1:3] == ["2", f"{np.median([1.0, 0.5 / 0.75]):.2f}"]
    assert bench.type_totals(["conv", "fc", "conv"], [1.0, 2.0, 0.5]) == {"conv": 1.5, "fc": 2.0}


def test_models_are_judged_at_the_level_of_all_of_them(bench):
    # The predictor runs 10 % fast on everything but one model it puts 25 % further low.
    lines = bench.at_level(["a", "b", "c", "d"], [1.0, 2.0, 4.0, 8.0],
                           [0.9, 1.8, 3.6, 8.0 * 0.9 * 0.75])
    assert "0.900 of the measured median" in lines[0]
    assert "3 of 4 within" in lines[0]
    assert [line.split() for line in lines[1:]] == [["d", "0.75"]]
