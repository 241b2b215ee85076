"""Accuracy figures for latency predictions, as nn-Meter and LitePred report them.

Relative figures (RMSPE, share within a tolerance) are in percent: latency errors matter relative
to the latency, and a percentage reads the same for a 0.05 ms ReLU and a 40 ms model.
"""
from __future__ import annotations

from math import erf

import numpy as np
from numpy.typing import ArrayLike


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(y_true, dtype=np.float64).ravel()
    pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} values but y_pred has {pred.size}")
    if true.size == 0:
        raise ValueError("no values to score")
    return true, pred


def _relative_errors(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    true, pred = _pair(y_true, y_pred)
    if np.any(true <= 0):
        raise ValueError("relative errors need positive true values (latencies)")
    return (pred - true) / true


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error, in the unit of ``y_true``."""
    true, pred = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def rmspe(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared percentage error, in percent."""
    return float(100.0 * np.sqrt(np.mean(_relative_errors(y_true, y_pred) ** 2)))


def within(y_true: ArrayLike, y_pred: ArrayLike, tolerance_pct: float) -> float:
    """Share of predictions within ±``tolerance_pct`` percent of the truth, in percent."""
    errors = np.abs(_relative_errors(y_true, y_pred))
    # A hair of slack so that an error of exactly 10% (up to rounding) counts as within 10%.
    return float(100.0 * np.mean(errors <= tolerance_pct / 100.0 + 1e-12))


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """Every figure at once: ``n``, ``rmse``, ``rmspe``, ``within_5``, ``within_10``."""
    return {
        "n": int(np.asarray(y_true).size),
        "rmse": rmse(y_true, y_pred),
        "rmspe": rmspe(y_true, y_pred),
        "within_5": within(y_true, y_pred, 5),
        "within_10": within(y_true, y_pred, 10),
    }


def kendall_tau(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Kendall's rank correlation (tau-a) over every pair of models: 1 when the predictions
    order the models exactly as the truth does. Quadratic in the number of models."""
    true, pred = _pair(y_true, y_pred)
    n = true.size
    if n < 2:
        raise ValueError("a rank correlation needs at least two values")
    agree = np.sign(true[:, None] - true[None, :]) * np.sign(pred[:, None] - pred[None, :])
    return float(agree[np.triu_indices(n, 1)].mean())


def relative_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """Figures blind to one factor shared by every model (a machine that runs all of them
    slower today): ``scale``, the median of predicted / true; ``within_5`` and ``within_10``
    once the predictions are divided by it; ``kendall_tau`` (None for a single model). A NAS
    search compares candidates with each other, so these are what it relies on."""
    true, pred = _pair(y_true, y_pred)
    scale = float(np.median(pred / true))
    return {"scale": scale, "within_5": within(true, pred / scale, 5),
            "within_10": within(true, pred / scale, 10),
            "kendall_tau": kendall_tau(true, pred) if true.size > 1 else None}


def level(ratios: ArrayLike) -> dict[str, float]:
    """How much slower than predicted a set of models ran (``ratios``: measured over predicted):
    ``models``, the ``median`` ratio, its standard ``error`` (a fraction), the ``quartiles``,
    the ``spread`` of single models around the median (a fraction) and the share of models
    that spread puts within ±10 % of predictions at that level (``expected_within_10``, see
    :func:`expected_within`). Spread and error come from the quartiles, in log terms (sd ≈
    IQR / 1.349, the median's error 1.2533 sd / √n): robust to the odd model that measured in
    a slow spell."""
    ratios = np.asarray(ratios, dtype=np.float64).ravel()
    if ratios.size == 0 or np.any(ratios <= 0) or not np.all(np.isfinite(ratios)):
        raise ValueError("a level needs one or more positive, finite ratios")
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    sd = np.log(q3 / q1) / 1.349
    spread = float(np.expm1(sd))
    return {"models": int(ratios.size), "median": float(median),
            "error": float(np.expm1(1.2533 * sd / np.sqrt(ratios.size))),
            "quartiles": [float(q1), float(q3)], "spread": spread,
            "expected_within_10": expected_within(spread, 10)}


def expected_within(spread: float, tolerance_pct: float) -> float:
    """Share of models (percent) within ±``tolerance_pct`` of their predictions when their log
    errors are normal around zero with sd ``log1p(spread)``. On 40 one-thread truths of a Xeon
    VM (2026-12-04/05, 1.25, each at its own median level) the spread of 18 models drawn one
    per family foretold the share within ±10 %: at 2.4–3.0 % all models were within (this
    gives 100 %), at 3.1–3.9 % 94–100 % (99–100 %), at 4.1–4.8 % 97–100 % (96–99 %), at 5.2 %
    91 % (95 %), at 6.9–7.1 % 86–89 % (84–85 %)."""
    if spread < 0 or tolerance_pct <= 0:
        raise ValueError("expected_within needs a spread >= 0 and a positive tolerance")
    sd = np.log1p(spread)
    if sd == 0:
        return 100.0
    tolerance = tolerance_pct / 100.0
    return float(50.0 * (erf(np.log1p(tolerance) / sd / np.sqrt(2))
                         - erf(np.log1p(-tolerance) / sd / np.sqrt(2))))
