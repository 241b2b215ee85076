"""Prediction speed: in-memory ms per model, batch models/s, and ``edgemeter predict`` end to end,
against measuring the same model on onnxruntime.

    .venv/bin/python bench/bench_predict.py [--predictor NAME|PATH] [--family mobilenetv2]
        [--batch 5000] [--runs 7]

Figures (medians of ``--calls`` calls for one model, of ``--runs`` for the rest):
- import + detect + predict of one model from its ONNX file, and ``Predictor.predict`` on a
  graph already imported (the per-model cost the issue's "in-memory graph" goal is about), with
  its steps (cost annotation, kernel detection, kernels → prediction) each timed alone; the
  graph figures with each tree engine (``numpy``, the default; ``onnxruntime``, compiled once);
- batch: ``Predictor.predict_kernels`` on ``--batch`` random variants of the family whose kernels
  were detected beforehand (the NAS loop: graph → ms), with each engine;
- ``edgemeter predict model.onnx`` as a subprocess (Python start, imports, package load),
  with bytecode cached (a first warm-up call writes it to a scratch folder);
  with ``--baseline-src DIR`` each call alternates with the same command on the code in
  DIR (another checkout's ``src``), so a change is judged in the same minutes as the code
  before it;
- ``edgemeter measure`` of the same model on onnxruntime (1 thread, 3 fresh processes), once.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", default=None, help="name or package path (default: the "
                                                          "shipped default)")
    parser.add_argument("--family", default="mobilenetv2")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--variants", type=int, default=200,
                        help="distinct random variants the batch cycles through")
    parser.add_argument("--runs", type=int, default=7,
                        help="runs of the batch and the end-to-end figures")
    parser.add_argument("--calls", type=int, default=300,
                        help="calls behind each one-model figure (a millisecond each: many are "
                             "cheap, and a median of few moves with every slow spell)")
    parser.add_argument("--baseline-src", type=Path, default=None, metavar="DIR",
                        help="alternate each end-to-end call with one on the code in DIR")
    args = parser.parse_args()

    from edgemeter import load_predictor, zoo
    from edgemeter.backends import Protocol, measure
    from edgemeter.cost import annotate
    from edgemeter.importers import load_graph
    from edgemeter.kernels import detect

    predictor = load_predictor(args.predictor)
    print(f"predictor {predictor.label} ({predictor.backend}); {platform.processor() or '?'}, "
          f"{platform.python_version()}")
    scratch = tempfile.TemporaryDirectory(prefix="bench-predict-")  # removed at exit
    tmp = Path(scratch.name)
    module, shape = zoo.build(args.family)
    path = zoo.export_onnx(module, shape, tmp / f"{args.family}.onnx")
    graph = load_graph(path)
    print(f"model: {args.family} default, input {shape}, {len(graph.nodes)} nodes, "
          f"{graph.total_cost().flops / 1e9:.2f} GFLOPs")

    predictor.predict(path)  # warm caches (regressor walk arrays)
    full = median_time(lambda: predictor.predict(path), args.calls)
    print(f"one model, file → prediction:      {1e3 * full:8.2f} ms")
    start = time.perf_counter()
    compiled = load_predictor(args.predictor, engine="onnxruntime")
    print(f"onnxruntime engine compiled in {time.perf_counter() - start:.2f} s")
    # The in-memory figure: predict() on a Graph that load_graph returned (costs annotated, as
    # every importer leaves them) detects its kernels and predicts them. Then its steps, each
    # timed alone; annotation is the importer's, shown for scale.
    kernels = detect(graph, predictor.rules)
    annotate_s = median_time(lambda: annotate(graph), args.calls)
    detect_s = median_time(lambda: detect(graph, predictor.rules), args.calls)
    for engine in (predictor, compiled):
        engine.predict(graph)
        from_graph = median_time(lambda: engine.predict(graph), args.calls)
        rest = median_time(lambda: engine.predict_detected([(graph, kernels)]), args.calls)
        print(f"one model, graph → prediction:     {1e3 * from_graph:8.2f} ms  ({engine.engine} "
              f"engine; alone: detect {1e3 * detect_s:.2f}, kernels → prediction "
              f"{1e3 * rest:.2f}; annotate {1e3 * annotate_s:.2f})")

    # NAS batch: random variants, kernels detected once, then graph → ms for the whole batch.
    rng = np.random.default_rng(0)
    variant_kernels = []
    for _ in range(args.variants):
        m, s = zoo.build(args.family, zoo.sample_variant(args.family, rng))
        variant_kernels.append(predictor.detect(m, input_shape=list(s))[1])
    batch = [variant_kernels[i % len(variant_kernels)] for i in range(args.batch)]
    n_kernels = sum(len(k) for k in batch)
    for engine in (predictor, compiled):
        seconds = median_time(lambda: engine.predict_kernels(batch), max(3, args.runs // 2))
        print(f"batch of {args.batch} models ({n_kernels} kernels, {args.variants} distinct "
              f"variants): {seconds:.3f} s = {args.batch / seconds:,.0f} models/s "
              f"({engine.engine} engine)")

    # End to end through the CLI, a fresh Python each time, with bytecode cached as a user's
    # Python has it from the second run on. (Where PYTHONDONTWRITEBYTECODE is set, as on the
    # VMs we measure on, an editable install compiles every edgemeter module on each run.)
    cmd = [sys.executable, "-m", "edgemeter", "predict", str(path), "--format", "json"]
    if args.predictor:
        cmd[4:4] = ["--predictor", args.predictor]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    runs = {"": {"env": env}}
    if args.baseline_src:
        runs[f" (the code in {args.baseline_src})"] = {
            "env": {**env, "PYTHONPATH": str(args.baseline_src.resolve())}}
    walls: dict[str, list[float]] = {label: [] for label in runs}
    for how in runs.values():
        subprocess.run(cmd, check=True, capture_output=True, **how)  # warm the file cache
    for _ in range(args.runs):
        for label, how in runs.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, **how)
            walls[label].append(time.perf_counter() - start)
    for label, times in walls.items():
        print(f"`edgemeter predict {path.name}` end to end{label}: "
              f"{statistics.median(times):.3f} s wall (median of {args.runs})")

    start = time.perf_counter()
    m = measure(path, "onnxruntime-cpu", {"threads": 1}, Protocol(rounds=3, max_rounds=3))
    took = time.perf_counter() - start
    print(f"measuring it on onnxruntime (1 thread, 3 fresh processes × 30 runs): {took:.1f} s "
          f"wall, median {m.median_ms:.2f} ms; predicted {predictor.predict(path).latency_ms:.2f} ms")


if __name__ == "__main__":
    main()
