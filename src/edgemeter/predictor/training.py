"""Train one kernel regressor from a feature table and report its held-out accuracy."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgemeter.predictor.metrics import accuracy
from edgemeter.predictor.regressors import TreeRegressor, make_regressor, to_matrix

Table = Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]

# Fewer rows than this leave a test split too small to say anything.
MIN_ROWS = 10


def as_rows(table: Table) -> list[Mapping[str, Any]]:
    """A table as a list of row dicts; accepts rows already, or columns (name -> values)."""
    if isinstance(table, Mapping):
        columns = {name: list(values) for name, values in table.items()}
        lengths = {len(values) for values in columns.values()}
        if len(lengths) > 1:
            raise ValueError("table columns differ in length")
        n = lengths.pop() if lengths else 0
        return [{name: values[i] for name, values in columns.items()} for i in range(n)]
    return list(table)


def train_kernel_regressor(rows: Table, feature_names: Sequence[str],
                           target: str = "latency_ms", algo: str = "rf", seed: int = 0,
                           test_size: float = 0.2,
                           **params: Any) -> tuple[TreeRegressor, dict[str, float]]:
    """Fit a regressor on an 80/20 split and return it with its accuracy on the 20%.

    The figures (``n_train``, ``n_test``, ``rmse``, ``rmspe``, ``within_5``, ``within_10``; see
    :mod:`edgemeter.predictor.metrics`) describe rows the regressor never saw. ``params`` go to
    the regressor (e.g. ``n_estimators``); ``seed`` fixes both the split and the trees.
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    table = as_rows(rows)
    if len(table) < MIN_ROWS:
        raise ValueError(f"{len(table)} rows are too few to train and test a regressor "
                         f"(need at least {MIN_ROWS})")
    X = to_matrix(table, feature_names)
    y = to_matrix(table, [target])[:, 0]
    order = np.random.default_rng(seed).permutation(len(table))
    n_test = max(1, round(test_size * len(table)))
    test, train = order[:n_test], order[n_test:]
    regressor = make_regressor(algo, random_state=seed, **params)
    regressor.fit(X[train], y[train], feature_names=feature_names)
    figures = {"n_train": int(train.size), "n_test": int(test.size)}
    figures |= {k: v for k, v in accuracy(y[test], regressor.predict(X[test])).items() if k != "n"}
    return regressor, figures
