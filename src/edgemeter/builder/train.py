"""Training: a regressor per group, the fallback for groups without one, and the model term.

The contract with :mod:`edgemeter.predictor.model`, which applies what is fitted here:

- regressors are keyed by :func:`edgemeter.kernels.groups.regressor_group`; their
  ``feature_names_`` are names of ``Kernel.features`` (a feature a kernel lacks reads as 0);
- ``extra["fallback"] = {"ms_per_gflop", "ms_per_mb", "ms_per_kernel"}``: a kernel whose group
  has no regressor takes ``ms_per_gflop·FLOPS/1e9 + ms_per_mb·BYTES/1e6 + ms_per_kernel``;
- ``extra["model_term"] = {"scale", "per_node_ms", "intercept_ms", "node_count", "group_scale"}``:
  a model takes ``Σ scale_g·kernel prediction + per_node_ms·N + intercept_ms``, ``scale_g`` the
  group's own scale or ``scale``, ``N`` = number of kernels that detection finds
  (``node_count: "kernels"``). It covers what per-kernel times leave out:
  scheduling between nodes, layout reorders, and on runtimes without per-node times the
  difference between a kernel alone and inside a model.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgemeter.backends.anchor import Sensitivity, at_speed
from edgemeter.predictor.regressors import TreeRegressor, make_regressor, to_matrix
from edgemeter.predictor.training import MIN_ROWS, train_kernel_regressor

# Row columns that are bookkeeping, not features.
NOT_FEATURES = frozenset({"source", "type", "group", "latency_ms", "anchor_ms"})


def feature_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every feature any row of a group has, in a stable order."""
    return sorted({k for row in rows for k in row if k not in NOT_FEATURES})


def filled(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """Rows with every feature present (missing → 0), as the predictor reads kernels."""
    return [{**{n: 0 for n in names}, **row} for row in rows]


def train_group(rows: Sequence[Mapping[str, Any]], algo: str = "rf", trees: int = 100,
                seed: int = 0) -> tuple[TreeRegressor, dict[str, float], list[int]]:
    """Regressor, its figures on the held-out 20%, and the positions of those 20% in ``rows``
    (the split of :func:`~edgemeter.predictor.training.train_kernel_regressor` with ``seed``)."""
    names = feature_names(rows)
    regressor, figures = train_kernel_regressor(filled(rows, names), names, algo=algo, seed=seed,
                                                n_estimators=trees)
    test = np.random.default_rng(seed).permutation(len(rows))[:figures["n_test"]]
    return regressor, figures, [int(i) for i in test]


def fit_group(rows: Sequence[Mapping[str, Any]], algo: str = "rf", trees: int = 100,
              seed: int = 0) -> TreeRegressor:
    """A regressor on all of ``rows`` (no held-out split: for out-of-fold predictions)."""
    names = feature_names(rows)
    table = filled(rows, names)
    y = np.array([row["latency_ms"] for row in table], dtype=float)
    return make_regressor(algo, n_estimators=trees, random_state=seed).fit(
        to_matrix(table, names), y, feature_names=names)


def large_errors(regressor: TreeRegressor, rows: Sequence[Mapping[str, Any]],
                 threshold: float) -> list[tuple[int, float]]:
    """``(index, absolute error in ms)`` of the ``rows`` the regressor predicts with a relative
    error above ``threshold``, largest absolute error first."""
    names = list(regressor.feature_names_)
    pred = regressor.predict(to_matrix(filled(rows, names), names))
    true = np.array([row["latency_ms"] for row in rows])
    error = np.abs(pred - true)
    large = np.flatnonzero(error / true > threshold)
    return [(int(i), float(error[i])) for i in large[np.argsort(-error[large], kind="stable")]]


def fit_fallback(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``latency ≈ a·GFLOPs + b·MB + k`` over all kernel rows, non-negative, fitted on the
    relative error (a 0.01 ms kernel counts as much as a 10 ms one)."""
    from scipy.optimize import nnls

    y = np.array([r["latency_ms"] for r in rows], dtype=float)
    A = np.column_stack([[r.get("FLOPS", 0) / 1e9 for r in rows],
                         [r.get("BYTES", 0) / 1e6 for r in rows], np.ones(len(rows))])
    scale = np.maximum(A.max(axis=0), 1e-12)
    coef, _ = nnls(A / scale / y[:, None], np.ones(len(y)))
    a, b, k = coef / scale
    return {"ms_per_gflop": float(a), "ms_per_mb": float(b), "ms_per_kernel": float(k)}


def fit_model_term(kernel_sums: Sequence[float], counts: Sequence[int],
                   medians: Sequence[float],
                   group_sums: Sequence[Mapping[str, float]] | None = None) -> dict[str, Any]:
    """``median ≈ scale·Σpred + per_node_ms·N + intercept_ms`` by least squares on the relative
    error; with too few models for three terms, the scale alone. With ``group_sums`` (each
    model's Σpred per regressor group), groups may get their own scale
    (:func:`fit_group_scales`) where cross-validation over the models says it helps."""
    s, n, y = (np.asarray(v, dtype=float) for v in (kernel_sums, counts, medians))
    term: dict[str, Any] = {"scale": 1.0, "per_node_ms": 0.0, "intercept_ms": 0.0,
                            "node_count": "kernels", "models": int(y.size)}
    if y.size == 0:
        return term
    if y.size < 6:
        term["scale"] = float(np.sum(s / y) / np.sum((s / y) ** 2))
        return term
    A = np.column_stack([s, n, np.ones_like(s)]) / y[:, None]
    coef, *_ = np.linalg.lstsq(A, np.ones_like(y), rcond=None)
    term.update(scale=float(coef[0]), per_node_ms=float(coef[1]), intercept_ms=float(coef[2]))
    if group_sums is not None:
        term.update(fit_group_scales(group_sums, n, y, term))
    return term


def scaled_model_term(term: Mapping[str, Any], factor: float) -> dict[str, Any]:
    """``term`` as fitted to medians ``factor`` times larger (the least squares on relative
    errors scales every coefficient with them), the factor kept as ``reference_factor``."""
    from edgemeter.predictor.model import ModelTerm

    keys = ("scale", "per_node_ms", "intercept_ms", "group_scale")
    scaled = ModelTerm(**{k: term[k] for k in keys if k in term}).times(factor)
    return {**term, **{k: getattr(scaled, k) for k in keys if k in term},
            "reference_factor": factor}


# Ridge strengths tried for the group scales, weakest last: 1 weighs the pull toward the common
# scale as much as the group's own data (its squared shares summed over the models).
GROUP_SCALE_RIDGE = (3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.001)
# A group needs a share of at least this in this many models to get a scale of its own.
GROUP_SCALE_SHARE, GROUP_SCALE_MODELS = 0.02, 8
GROUP_SCALE_FOLDS = 5
GROUP_SCALE_RANGE = 2.0


def fit_group_scales(group_sums: Sequence[Mapping[str, float]], counts: np.ndarray,
                     medians: np.ndarray, term: Mapping[str, Any]) -> dict[str, Any]:
    """Per-group scales, refitted jointly with ``per_node_ms`` and ``intercept_ms``, pulled
    toward the common ``scale`` by a ridge whose strength cross-validation over the models
    picks; ``{}`` when no strength predicts left-out models better than the common scale.

    Kernel times from profiler shares carry biases of their own per kind of kernel (measured
    here: SE- and depthwise-heavy families under-predicted by one common scale)."""
    y = medians
    groups = sorted({g for sums in group_sums for g in sums})
    share = np.array([[sums.get(g, 0.0) for g in groups] for sums in group_sums]) / y[:, None]
    own = [i for i, g in enumerate(groups)
           if np.sum(share[:, i] * term["scale"] >= GROUP_SCALE_SHARE) >= GROUP_SCALE_MODELS]
    if not own:
        return {}
    rest = np.delete(share, own, axis=1).sum(axis=1)
    A = np.column_stack([share[:, own], counts / y, 1 / y])
    common = np.column_stack([share.sum(axis=1), counts / y, 1 / y])

    def solve(rows: np.ndarray, strength: float, base: np.ndarray) -> np.ndarray:
        """Group scales, per-node and intercept on ``rows``, the group scales pulled toward
        ``base`` (the common scale, per-node and intercept): the coefficients of ``A``."""
        from scipy.optimize import lsq_linear

        scale = base[0]
        # A group's scale stays within a factor of GROUP_SCALE_RANGE of the common one: without
        # bounds, groups that always come together traded off (softmax fitted at -0.26).
        low = np.r_[[scale / GROUP_SCALE_RANGE] * len(own), -np.inf, -np.inf]
        high = np.r_[[scale * GROUP_SCALE_RANGE] * len(own), np.inf, np.inf]
        # Ridge on the group scales only (toward the common scale), not on c and e.
        energy = np.sum(A[rows][:, :len(own)] ** 2, axis=0)
        weight = np.sqrt(strength * np.r_[energy, 0, 0])
        prior = np.r_[[scale] * len(own), base[1:]]
        return lsq_linear(np.vstack([A[rows], np.diag(weight)]),
                          np.r_[1 - scale * rest[rows], weight * prior], bounds=(low, high)).x

    # Each fold refits the common term on its training models, for both contenders: with the
    # term fitted on every model, the test fold is in its own fit. Measured on two Zen 5 builds
    # (2026-12-02): that in-sample common term turned group scales off in the build of one and
    # a retrain of the other; with them, +1.8 to +3.7 points within ±10 % on three of four
    # fresh truths, -2.8 on the fourth.
    folds = np.arange(y.size) % GROUP_SCALE_FOLDS
    splits = []
    for fold in range(GROUP_SCALE_FOLDS):
        train_rows, test_rows = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        base, *_ = np.linalg.lstsq(common[train_rows], np.ones(train_rows.size), rcond=None)
        splits.append((train_rows, test_rows, base))

    def cv_error(strength: float | None) -> float:
        errors = []
        for train_rows, test_rows, base in splits:
            if strength is None:
                errors.append(common[test_rows] @ base - 1)
            else:
                coef = solve(train_rows, strength, base)
                errors.append(A[test_rows] @ coef + base[0] * rest[test_rows] - 1)
        return float(np.mean(np.concatenate(errors) ** 2))

    errors = {strength: cv_error(strength) for strength in GROUP_SCALE_RIDGE}
    best = min(errors, key=errors.get)
    if errors[best] >= cv_error(None):
        return {}
    coef = solve(np.arange(y.size), best,
                 np.array([term["scale"], term["per_node_ms"], term["intercept_ms"]]))
    return {"group_scale": {groups[i]: float(v) for i, v in zip(own, coef[:len(own)])},
            "per_node_ms": float(coef[-2]), "intercept_ms": float(coef[-1]),
            "group_scale_ridge": best}


def anchor_speed(anchors: Sequence[float | None]) -> float | None:
    """The machine speed a build's latencies are put at: the median time of the speed anchor
    over its measurements (None when none was anchored)."""
    timed = [a for a in anchors if a]
    return float(np.median(timed)) if timed else None


def at_anchor_speed(rows: Sequence[Mapping[str, Any]], anchor_ms: float | None,
                    slopes: Mapping[str, float] | None = None) -> list[Mapping[str, Any]]:
    """Rows with ``latency_ms`` as it would have measured when the anchor took ``anchor_ms``
    (:func:`edgemeter.backends.anchor.at_speed`), each by the slope of the model it was timed
    in (``slopes``, keyed by the rows' ``source``; 1 for the others); rows without an anchor
    time stay as they are."""
    slopes = slopes or {}
    return [{**row, "latency_ms": at_speed(row["latency_ms"], row.get("anchor_ms"), anchor_ms,
                                           slopes.get(row.get("source"), 1.0))}
            for row in rows]


# Models with two or more rounds beside the anchor's that a sensitivity fit needs.
SENSITIVITY_MIN_MODELS = 20


def fit_sensitivity(models: Sequence[tuple[float, Sequence[float], Sequence[float]]]
                    ) -> Sensitivity:
    """The anchor sensitivity (:class:`~edgemeter.backends.anchor.Sensitivity`) of measured
    models, each given as ``(FLOPs, its round medians, the anchor's round medians)``.

    Within each measurement, the moves of the model's log round times from their mean are
    fitted as ``(a + b · (ln FLOPs - centre)) ·`` the anchor's moves, by least squares over all
    rounds of all models; ``b`` is the steepness kept, ``a`` gives way to 1 (see the class).
    Too few models, or an anchor that never moved: slope 1 for every model."""
    moves, anchor_moves, log_flops = [], [], []
    for flops, rounds, anchors in models:
        if flops > 0 and len(rounds) >= 2 and len(anchors) == len(rounds):
            model, anchor = np.log(rounds), np.log(anchors)
            moves.append(model - model.mean())
            anchor_moves.append(anchor - anchor.mean())
            log_flops.append(np.log(flops))
    if len(moves) < SENSITIVITY_MIN_MODELS:
        return Sensitivity()
    y, x = np.concatenate(moves), np.concatenate(anchor_moves)
    if x @ x < 1e-6:
        return Sensitivity()
    centre = float(np.mean(log_flops))
    size = np.repeat(np.array(log_flops) - centre, [len(m) for m in moves])
    (_, steepness), *_ = np.linalg.lstsq(np.column_stack([x, size * x]), y, rcond=None)
    return Sensitivity(float(steepness), centre)


def split_by_group(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row["group"]), []).append(row)
    return groups


__all__ = ["MIN_ROWS", "anchor_speed", "at_anchor_speed", "feature_names", "fit_fallback",
           "fit_group", "fit_group_scales", "fit_model_term", "fit_sensitivity", "large_errors",
           "scaled_model_term", "split_by_group", "train_group"]
