"""Predict kernels of every type in one vectorised pass: the batch API behind model prediction
and NAS.

Calling each kernel type's regressor separately costs one tree walk (a fixed ~20 numpy steps)
per type; a model has a dozen types. Here the forests of the types in use are merged into one,
every (row, tree) pair of every type walks together, and only the cheap per-type decoding is a
loop. The ``onnxruntime`` engine hands the same walk to one session instead (:mod:`.onnx_forests`).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from edgemeter.errors import ConfigError
from edgemeter.predictor.regressors import Forest, TreeRegressor, to_matrix, unique_rows


ENGINES = ("numpy", "onnxruntime")


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    return engine


class KernelBatchPredictor:
    """Latencies for many kernels of many types from fitted regressors (type → regressor).

    ``engine`` walks the trees: ``numpy`` (no set-up, no dependency beyond numpy) merges every
    type's forest into one and walks all pairs together; ``onnxruntime`` compiles them into a
    session once (about a second, :mod:`~edgemeter.predictor.onnx_forests`) and then answers
    small calls several times faster. Both give the same latencies (to ~1e-7).
    """

    def __init__(self, regressors: Mapping[str, TreeRegressor], engine: str = "numpy"):
        self.regressors = regressors  # not copied: a loaded package's reads each on first use
        self.engine = check_engine(engine)
        if engine == "onnxruntime":
            from edgemeter.predictor.onnx_forests import OnnxForests

            self._forests = OnnxForests({t: (r.forest_, r.n_features_in_)
                                         for t, r in self.regressors.items()})
        else:
            self._forests = MergedForests(self.regressors)

    def predict(self, matrices: Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
        """Kernel type → latencies of its rows; each matrix has the columns of that type's
        ``feature_names_``. Unknown types raise KeyError; bad matrices ValueError."""
        distinct = {kernel: unique_rows(self.regressors[kernel].check_features(X))
                    for kernel, X in matrices.items()}
        if not distinct:
            return {}
        rows = {kernel: unique.astype(np.float32) for kernel, (unique, _) in distinct.items()}
        sums = self._forests.leaf_sums(rows)
        results = {}
        for kernel, (unique, inverse) in distinct.items():
            regressor = self.regressors[kernel]
            forest = regressor.forest_
            raw = forest.offset + forest.scale * sums[kernel]
            results[kernel] = regressor.decode(raw, unique)[inverse]
        return results

    def predict_rows(self, types: Sequence[str],
                     rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """One latency per (kernel type, feature dict) pair, e.g. from ``Kernel.type`` and
        ``Kernel.features``; NaN where the type has no regressor, for the caller to fall back."""
        if len(types) != len(rows):
            raise ValueError(f"{len(types)} kernel types for {len(rows)} rows")
        groups: dict[str, list[int]] = defaultdict(list)
        for i, kernel in enumerate(types):
            if kernel in self.regressors:
                groups[kernel].append(i)
        predicted = self.predict({
            kernel: to_matrix([rows[i] for i in index], self.regressors[kernel].feature_names_)
            for kernel, index in groups.items()})
        result = np.full(len(types), np.nan)
        for kernel, index in groups.items():
            result[index] = predicted[kernel]
        return result


class MergedForests:
    """The numpy engine: the forests of the regressors asked for so far merged into one, so
    that the (row, tree) pairs of every name walk together. A name joins on first use: a model
    needs a few of a package's kernel types, and merging all of them took longer than
    predicting it."""

    def __init__(self, regressors: Mapping[str, TreeRegressor]):
        self._regressors = regressors
        self._merged: Forest | None = None
        self._trees: dict[str, tuple[int, int]] = {}

    def _merge(self, names: Iterable[str]) -> None:
        new = [name for name in names if name not in self._trees]
        if not new:
            return
        forests = {name: self._regressors[name].forest_ for name in [*self._trees, *new]}
        self._merged, firsts = Forest.concatenate(list(forests.values()))
        self._trees = {name: (first, forest.n_trees)
                       for (name, forest), first in zip(forests.items(), firsts)}

    def leaf_sums(self, rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Name → sum over its trees of the leaf each row reaches (float32 rows)."""
        self._merge(rows)
        flats, starts, roots, spans = [], [], [], []
        flat_size = n_pairs = 0
        for name, X in rows.items():
            n_rows, n_features = X.shape
            first, n_trees = self._trees[name]
            flats.append(X.ravel())
            starts.append(np.tile(flat_size + np.arange(n_rows, dtype=np.intp) * n_features,
                                  n_trees))
            roots.append(np.repeat(self._merged.roots[first:first + n_trees], n_rows))
            spans.append((name, n_pairs, n_trees, n_rows))
            flat_size += X.size
            n_pairs += n_rows * n_trees
        leaves = self._merged.walk(np.concatenate(flats), np.concatenate(starts),
                                   np.concatenate(roots))
        return {name: leaves[first:first + n_trees * n_rows].reshape(n_trees, n_rows).sum(0)
                for name, first, n_trees, n_rows in spans}
