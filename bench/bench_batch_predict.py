"""Rows per second: edgemeter's numpy forest evaluator against scikit-learn's predict.

A 100-tree random forest (the default kernel regressor) is trained on latency-shaped synthetic
rows, then both evaluate the same batches; the figure is the median over repeated runs. Two
kinds of batch: all rows distinct, and a NAS-like batch where configurations repeat (edgemeter
predicts each distinct row once). The numpy evaluator's results are checked against sklearn's.

A second table prices whole models: kernels of 10 types (10 forests), predicted type by type
with sklearn, type by type with edgemeter, and in one merged pass (KernelBatchPredictor).

    .venv/bin/python bench/bench_batch_predict.py [--trees 100] [--train-rows 2000] [--repeats 7]
"""
from __future__ import annotations

import argparse
import io
import platform
import time

import numpy as np

from edgemeter.predictor.batch import KernelBatchPredictor
from edgemeter.predictor.regressors import ForestRegressor

FEATURES = ["HW", "CIN", "COUT", "KERNEL_SIZE", "STRIDES", "FLOPS", "BYTES"]


def conv_rows(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    hw = rng.choice([7, 14, 28, 56, 112], n)
    cin, cout = rng.integers(8, 513, n), rng.integers(8, 513, n)
    k, s = rng.choice([1, 3, 5, 7], n), rng.choice([1, 2], n)
    out = hw // s
    flops = 2.0 * out ** 2 * cin * cout * k ** 2
    nbytes = 4.0 * (hw ** 2 * cin + out ** 2 * cout + cin * cout * k ** 2)
    y = 1e-8 * flops * (1 + 32 / cin) + 2.5e-7 * nbytes + 0.01
    y *= 1 + 0.03 * rng.standard_normal(n)
    return np.column_stack([hw, cin, cout, k, s, flops, nbytes]).astype(float), y


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: caches, lazily built arrays
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    X_train, y_train = conv_rows(args.train_rows, rng)
    regressor = ForestRegressor(args.trees).fit(X_train, y_train, feature_names=FEATURES)
    sklearn_model, forest = regressor.estimator_, regressor.forest_
    buffer = io.BytesIO()
    regressor.save(buffer)
    depth = max(e.tree_.max_depth for e in sklearn_model.estimators_)
    print(f"{args.trees} trees, {forest.n_nodes} nodes, max depth {depth}, trained on "
          f"{args.train_rows} rows; file {len(buffer.getvalue()) / 1e6:.2f} MB (.npz, compressed)")
    print(f"{platform.processor() or platform.machine()}, numpy {np.__version__}; "
          f"median of {args.repeats} runs\n")

    print("| batch | rows | edgemeter predict (rows/s) | numpy forest only (rows/s) "
          "| sklearn predict (rows/s) | edgemeter / sklearn |")
    print("|---|---:|---:|---:|---:|---:|")
    X_new, _ = conv_rows(20000, rng)
    batches = [("distinct", X_new[:n]) for n in (1, 10, 100, 1000, 10000)]
    # NAS-like: 20,000 kernel rows drawn from 500 distinct configurations.
    batches.append(("NAS-like (500 distinct)", X_new[rng.integers(0, 500, 20000)]))
    for label, X in batches:
        X32 = X.astype(np.float32)
        assert np.allclose(forest.predict(X32), sklearn_model.predict(X), rtol=1e-9, atol=0)
        ours = median_seconds(lambda: regressor.predict(X), args.repeats)
        raw = median_seconds(lambda: forest.predict(X32), args.repeats)
        theirs = median_seconds(lambda: sklearn_model.predict(X), args.repeats)
        n = len(X)
        print(f"| {label} | {n} | {n / ours:,.0f} | {n / raw:,.0f} | {n / theirs:,.0f} "
              f"| {theirs / ours:.2f}× |")
    whole_models(args, rng)


def whole_models(args: argparse.Namespace, rng: np.random.Generator, n_types: int = 10,
                 kernels_per_model: int = 60) -> None:
    """Models of 60 kernels over 10 types; a NAS batch draws them from 300 configs per type."""
    X_train, y_train = conv_rows(args.train_rows, rng)
    regressors = {f"type{t}": ForestRegressor(args.trees, random_state=t).fit(
        X_train, y_train, feature_names=FEATURES) for t in range(n_types)}
    batch = KernelBatchPredictor(regressors)
    pool, _ = conv_rows(300, rng)
    print("\n| models | kernel rows | sklearn per type (models/s) | edgemeter per type "
          "(models/s) | edgemeter one pass (models/s) |")
    print("|---:|---:|---:|---:|---:|")
    for n_models in (1, 1000):
        per_type = kernels_per_model * n_models // n_types
        matrices = {t: pool[rng.integers(0, len(pool), per_type)] for t in regressors}
        merged = batch.predict(matrices)
        for t, X in matrices.items():
            assert np.allclose(merged[t], regressors[t].predict(X), rtol=1e-12)
        sk = median_seconds(lambda: [r.estimator_.predict(matrices[t])
                                     for t, r in regressors.items()], args.repeats)
        ours = median_seconds(lambda: [r.predict(matrices[t]) for t, r in regressors.items()],
                              args.repeats)
        one = median_seconds(lambda: batch.predict(matrices), args.repeats)
        print(f"| {n_models} | {per_type * n_types} | {n_models / sk:,.0f} "
              f"| {n_models / ours:,.0f} | {n_models / one:,.0f} |")


if __name__ == "__main__":
    main()
