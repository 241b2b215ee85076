"""The ceiling in bench/bench_truth_hours.py: the best one time per model, each measurement at its
level. The README's claim of what no predictor can reach on this host rests on it, so it is
checked on matrices whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def hours():
    return load_script("bench/bench_truth_hours.py")


def times(moved: float) -> np.ndarray:
    """Log times of 20 models × 5 measurements: model times, a machine level per measurement,
    and the first four models moved by ``moved`` (log) in the last measurement only."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (20, 1)) + np.array([[0.0, 0.3, -0.2, 0.1, 0.25]])
    x[:4, -1] += moved
    return x


def test_levels_and_model_times_are_taken_out(hours):
    assert np.allclose(hours.level_out(times(0.0)), 0, atol=1e-9)
    assert np.allclose(hours.held_out(times(0.0)), 0, atol=1e-9)


def test_a_group_that_moves_at_one_hour_is_what_the_ceiling_loses(hours):
    x = times(np.log(1.2))
    assert hours._within(hours.level_out(x)) == pytest.approx((96.0, 80.0, 100.0))
    # Scored against the other hours, the moved measurement misses them; the moved models,
    # held out of theirs, still agree with the rest (their time is a median over the others).
    residuals = hours.held_out(x)
    assert np.allclose(residuals[:4, -1], np.log(1.2))
    assert np.allclose(residuals[:, :-1], 0, atol=1e-9)
