"""Predict kernels of every type in one vectorised pass: the batch API behind model prediction
and NAS.

Calling each kernel type's regressor separately costs one tree walk (a fixed ~20 numpy steps)
per type; a model has a dozen types. Here the forests of all types are merged into one, every
(row, tree) pair of every type walks together, and only the cheap per-type decoding is a loop.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from edgemeter.predictor.regressors import Forest, TreeRegressor, to_matrix, unique_rows


class KernelBatchPredictor:
    """Latencies for many kernels of many types from fitted regressors (type → regressor)."""

    def __init__(self, regressors: Mapping[str, TreeRegressor]):
        self.regressors = dict(regressors)
        types = list(self.regressors)
        merged, firsts = Forest.concatenate([self.regressors[t].forest_ for t in types]) \
            if types else (None, [])
        self._forest = merged
        self._first_tree = dict(zip(types, firsts))

    def predict(self, matrices: Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
        """Kernel type → latencies of its rows; each matrix has the columns of that type's
        ``feature_names_``. Unknown types raise KeyError; bad matrices ValueError."""
        parts, flats, starts, roots = [], [], [], []
        flat_size = n_pairs = 0
        for kernel, X in matrices.items():
            regressor = self.regressors[kernel]
            unique, inverse = unique_rows(regressor.check_features(X))
            n_rows, n_features = unique.shape
            n_trees, first = regressor.forest_.n_trees, self._first_tree[kernel]
            flats.append(unique.astype(np.float32).ravel())
            starts.append(np.tile(flat_size + np.arange(n_rows, dtype=np.intp) * n_features,
                                  n_trees))
            roots.append(np.repeat(self._forest.roots[first:first + n_trees], n_rows))
            parts.append((kernel, unique, inverse, n_pairs))
            flat_size += unique.size
            n_pairs += n_rows * n_trees
        if not parts:
            return {}
        leaves = self._forest.walk(np.concatenate(flats), np.concatenate(starts),
                                   np.concatenate(roots))
        results = {}
        for kernel, unique, inverse, first_pair in parts:
            regressor = self.regressors[kernel]
            forest, n_rows = regressor.forest_, unique.shape[0]
            own = leaves[first_pair:first_pair + n_rows * forest.n_trees]
            raw = forest.offset + forest.scale * own.reshape(forest.n_trees, n_rows).sum(axis=0)
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
