"""Distillation: how closely packages fitted to an ensemble follow it, their size and speed.

    .venv/bin/python bench/bench_distill.py [--predictor onnxruntime-cpu-1t] --version 1.33
        [--trees 10,20,30] [--max-depth 10,12,14,none] [--distill-zoo 0,20] [--per-family 3]
        [--seed 10500]

For each forest setting, ``edgemeter.builder.distill`` fits a package to the ensemble (or any
predictor) named, on its members' training rows and, per ``--distill-zoo``, the kernels of that
many unmeasured zoo variants per family of the builds' training seed; then both predict the same
zoo variants of every family (a seed no build uses; nothing is measured): the figures are the
distilled package's gaps to the ensemble's own predictions, model by model (median and largest,
and the share within ±1 % and ±2 %), its zipped size, and one MobileNetV2 graph → prediction
with each tree engine (medians of ``--calls`` calls, the ensemble's beside them). Accuracy
against measured truths is bench_accuracy.py's job; this says how much of the ensemble a setting
keeps, and at what cost. No ensemble ships: take one and its builds back from git history first
(README, "Predict latency").
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_predict import median_time  # the script's folder is on sys.path


def graph_ms(predictors, graph, calls: int) -> str:
    """One graph → prediction with each predictor (one per engine), ``numpy / onnxruntime`` ms."""
    figures = []
    for predictor in predictors:
        predictor.predict(graph)  # warm caches
        figures.append(f"{1e3 * median_time(lambda: predictor.predict(graph), calls):.2f}")
    return " / ".join(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", default="onnxruntime-cpu-1t")
    parser.add_argument("--version", required=True, help="the version to distil (an ensemble)")
    parser.add_argument("--trees", default="10,20,30", help="comma-separated tree counts")
    parser.add_argument("--max-depth", default="10,12,14,none",
                        help="comma-separated depth bounds ('none': unbounded)")
    parser.add_argument("--distill-zoo", default="0",
                        help="comma-separated counts of unmeasured zoo variants per family to "
                             "fit on beside the training rows")
    parser.add_argument("--per-family", type=int, default=3)
    parser.add_argument("--seed", type=int, default=10500)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()

    from edgemeter import load_predictor, zoo
    from edgemeter.builder.distill import distill, zoo_kernels
    from edgemeter.predictor.model import Predictor
    from edgemeter.predictor.package import save_package

    source = load_predictor(args.predictor, args.version)
    engines = (source, load_predictor(args.predictor, args.version, engine="onnxruntime"))
    kernel_lists = zoo_kernels(source, args.per_family, args.seed)
    reference = source.predict_kernels(kernel_lists)
    fit_on = {count: zoo_kernels(source, count)
              for count in map(int, args.distill_zoo.split(","))}
    module, shape = zoo.build("mobilenetv2")
    graph = source.detect(module, input_shape=list(shape))[0]
    print(f"{source.label}: {len(kernel_lists)} zoo variants (seed {args.seed}); graph → "
          f"prediction numpy / onnxruntime {graph_ms(engines, graph, args.calls)} ms")
    print("zoo  trees  max depth  fit s  zip MB  median gap  largest  within ±1 %  "
          "within ±2 %  graph ms (numpy / onnxruntime)")
    scratch = tempfile.TemporaryDirectory(prefix="bench-distill-")  # removed at exit
    folder = Path(scratch.name)
    for count, models in fit_on.items():
        for trees in (int(t) for t in args.trees.split(",")):
            for depth in args.max_depth.split(","):
                max_depth = None if depth == "none" else int(depth)
                start = time.perf_counter()
                package = distill(source, "0.0", trees=trees, max_depth=max_depth,
                                  models=models)
                fit_s = time.perf_counter() - start
                path = save_package(package, folder / f"{count}-{trees}-{depth}.zip")
                distilled = [Predictor(package, engine) for engine in ("numpy", "onnxruntime")]
                predicted = distilled[0].predict_kernels(kernel_lists)
                gaps = np.abs(predicted / reference - 1) * 100
                within = [100 * np.mean(gaps <= limit) for limit in (1, 2)]
                print(f"{count:3d}  {trees:5d}  {depth:>9}  {fit_s:5.1f}  "
                      f"{path.stat().st_size / 1e6:6.2f}  {np.median(gaps):8.2f} %  "
                      f"{gaps.max():5.1f} %  {within[0]:9.1f} %  {within[1]:9.1f} %  "
                      f"{graph_ms(distilled, graph, args.calls)}")


if __name__ == "__main__":
    main()
