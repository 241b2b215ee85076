"""Are the models a predictor misses those that stream their weights fastest?

A kernel regressor sees one kernel's configuration; whether that kernel's weights are still in
the cache when it runs depends on the whole model: a model that reads many MB of weights per
millisecond of its run (a big classifier head on a small body, say) may wait on memory that no
single kernel's features show. This evaluates each predictor on each stored dataset and prints,
per band of weight rate (the model's parameters as float32 MB over its measured median ms), how
many models fall in it, their median error (predicted over truth) and the share within ±10 %,
then the same pooled over every pair.

    .venv/bin/python bench/bench_weight_rate.py --predictor onnxruntime-cpu-1t \\
        --dataset /tmp/truth-a --dataset /tmp/truth-b
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

BANDS_MB_PER_MS = (1.0, 2.0, 4.0, 8.0)
LABELS = [f"{lo:g}-{hi:g}" for lo, hi in zip((0.0, *BANDS_MB_PER_MS), BANDS_MB_PER_MS)] + [
    f">={BANDS_MB_PER_MS[-1]:g}"]


def table(rows: list[tuple[float, float]]) -> list[str]:
    """Lines of (band, n, median error %, within ±10 %) for ``(rate, predicted/truth)`` rows."""
    lines = [f"  {'MB/ms':>8}{'models':>8}{'median err %':>14}{'±10 %':>8}"]
    rates, ratios = np.array(rows).T
    bands = np.searchsorted(BANDS_MB_PER_MS, rates, side="right")
    for band, label in enumerate(LABELS):
        inside = ratios[bands == band]
        if inside.size:
            lines.append(f"  {label:>8}{inside.size:>8}{100 * (np.median(inside) - 1):>+14.1f}"
                         f"{100 * np.mean(np.abs(inside - 1) <= 0.10):>8.1f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", action="append", required=True,
                        help="a predictor name or package path, repeatable")
    parser.add_argument("--dataset", type=Path, action="append", required=True,
                        help="a measured edgemeter dataset folder, repeatable")
    args = parser.parse_args()

    from edgemeter.dataset import evaluate
    from edgemeter.dataset.generate import read_index

    pooled: list[tuple[float, float]] = []
    for predictor in args.predictor:
        for folder in args.dataset:
            params = {e["file"]: e["params"] for e in read_index(folder)}
            result = evaluate(predictor, folder)
            rows = [(4 * params[r["file"]] / 1e6 / r["measured_ms"],
                     r["predicted_ms"] / r["truth_ms"]) for r in result.rows]
            pooled += rows
            print(f"{predictor} on {folder}: within ±10 % {result.overall['within_10']:.1f} %")
            print("\n".join(table(rows)))
    if len(args.predictor) * len(args.dataset) > 1:
        print(f"pooled over {len(args.predictor)} predictors x {len(args.dataset)} datasets:")
        print("\n".join(table(pooled)))


if __name__ == "__main__":
    main()
