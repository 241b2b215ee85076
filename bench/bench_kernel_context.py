"""Which kernel types does a predictor miss inside real models, and do they stay missed?

Each model is measured ``--repeats`` times, profiled, on the predictor's backend with the
settings it was built with (three fresh-process rounds each; the repeats interleaved, every
model once before any model twice, so a slow spell of the host shows as spread, not as one
model's bias). Each measurement gives every kernel's time as it ran in the model, read the way
a build reads its zoo models (``edgemeter.builder.collect.in_context_ms``: the profiler's own
cost per node taken off, then shares of the unprofiled median). For each model and kernel type
this prints the predicted ms, the in-context ms (median over the measurements), and the ratio
of the two: its median and range over the measurements, raw and as a share (the type's part of
the predicted model against its part of the measured one, which takes the host's level and the
predictor's level for the whole model out). Then per kernel type over all the models: the
median of the models' median share ratios and their range. Last, each model's prediction
against its measured median at the level of all the models, and those off it by over 10 %.

    .venv/bin/python bench/bench_kernel_context.py --predictor onnxruntime-cpu-1t --repeats 4 \\
        ds/models/ghostnet-s14100-000.onnx ds/models/ghostnet-s14100-001.onnx
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def type_totals(types: list[str], ms: list[float] | np.ndarray) -> dict[str, float]:
    """Each kernel type's summed ms."""
    totals: dict[str, float] = defaultdict(float)
    for kernel_type, t in zip(types, ms):
        totals[kernel_type] += float(t)
    return dict(totals)


def ratios(predicted: dict[str, float], measured: list[dict[str, float]]
           ) -> dict[str, tuple[float, np.ndarray, np.ndarray]]:
    """Per kernel type: the in-context ms (median over the measurements), the raw ratios
    (predicted over in context, one per measurement) and the share ratios (the type's share of
    the predicted kernel sum over its share of the measured one). Types a measurement gave no
    time (the runtime ran them inside other kernels) have no ratio there."""
    out = {}
    predicted_sum = sum(predicted.values())
    sums = np.array([sum(m.values()) for m in measured])
    for kernel_type, ms in predicted.items():
        times = np.array([m.get(kernel_type, 0.0) for m in measured])
        timed = times > 0
        raw = ms / times[timed]
        share = (ms / predicted_sum) / (times[timed] / sums[timed])
        out[kernel_type] = (float(np.median(times)), raw, share)
    return out


def _range(values: np.ndarray) -> str:
    if not values.size:
        return f"{'n/a':>19}"
    return f"{np.median(values):>5.2f} [{values.min():.2f}-{values.max():.2f}]"


def report(name: str, predicted_ms: float, medians: list[float],
           predicted: dict[str, float], measured: list[dict[str, float]]) -> list[str]:
    """Lines for one model: its totals, then one line per kernel type, largest predicted
    first."""
    lines = [f"{name}: predicted {predicted_ms:.3f} ms, measured {np.median(medians):.3f} ms "
             f"[{min(medians):.3f}-{max(medians):.3f}] over {len(medians)}",
             f"  {'kernel type':<18}{'predicted':>10}{'in context':>11}"
             f"{'ratio':>20}{'share ratio':>20}"]
    for kernel_type, (context, raw, share) in sorted(
            ratios(predicted, measured).items(), key=lambda item: -predicted[item[0]]):
        lines.append(f"  {kernel_type:<18}{predicted[kernel_type]:>10.3f}{context:>11.3f}"
                     f"{_range(raw):>20}{_range(share):>20}")
    return lines


def pooled(per_model: list[dict[str, tuple[float, np.ndarray, np.ndarray]]]) -> list[str]:
    """Per kernel type over the models: how many models have it, and the median and range of
    their median share ratios."""
    by_type: dict[str, list[float]] = defaultdict(list)
    for model in per_model:
        for kernel_type, (_, _, share) in model.items():
            if share.size:
                by_type[kernel_type].append(float(np.median(share)))
    lines = [f"  {'kernel type':<18}{'models':>7}{'share ratio, median [range]':>30}"]
    for kernel_type, values in sorted(by_type.items(), key=lambda item: -len(item[1])):
        lines.append(f"  {kernel_type:<18}{len(values):>7}{_range(np.array(values)):>30}")
    return lines


def at_level(names: list[str], measured_ms: list[float], predicted_ms: list[float]
             ) -> list[str]:
    """Each model's prediction put at the level of all of them (the median of predicted over
    measured, as ``relative_accuracy`` takes it): how many fall within ±10 % of their
    measured median there, and which do not."""
    from edgemeter.predictor.metrics import relative_accuracy

    figures = relative_accuracy(measured_ms, predicted_ms)
    relative = np.array(predicted_ms) / figures["scale"] / np.array(measured_ms)
    inside = round(figures["within_10"] * len(names) / 100)
    lines = [f"at the models' level (predicted at {figures['scale']:.3f} of the measured "
             f"median): {inside} of {len(names)} within ±10 %"]
    lines += [f"  {name:<32}{r:>6.2f}" for name, r in zip(names, relative)
              if abs(r - 1) > 0.10 + 1e-12]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="ONNX models to measure")
    parser.add_argument("--predictor", default=None,
                        help="predictor name or package path (default: this machine's default)")
    parser.add_argument("--version", default=None, help="predictor version (default: its default)")
    parser.add_argument("--repeats", type=int, default=4,
                        help="profiled measurements per model, three rounds each (default 4)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    from edgemeter import load_predictor
    from edgemeter.backends import Protocol, measure_models
    from edgemeter.builder.collect import in_context_ms
    from edgemeter.errors import EdgemeterError

    try:
        predictor = load_predictor(args.predictor, args.version)
    except EdgemeterError as error:
        parser.exit(1, f"error: {error}\n")
    settings = predictor.package.extra.get("backend_settings") or {}
    protocol = Protocol(rounds=3, max_rounds=3)
    print(f"predictor {predictor.label}, backend {predictor.backend} {settings}, "
          f"{args.repeats} profiled measurements per model")
    measured: dict[Path, list[dict[str, float]]] = defaultdict(list)
    medians: dict[Path, list[float]] = defaultdict(list)
    for repeat in range(1, args.repeats + 1):
        print(f"measurement {repeat} of {args.repeats} ...", file=sys.stderr, flush=True)
        for m in measure_models(args.models, predictor.backend, settings, protocol, profile=True):
            path = Path(m.model)
            if not m.ok:
                parser.exit(1, f"error: {path}: {m.error}\n")
            kernels, times = in_context_ms(path, m, predictor.rules)
            measured[path].append(type_totals([k.type for k in kernels], times))
            medians[path].append(float(m.median_ms))
    per_model, predicted_ms = [], []
    for path in args.models:
        prediction = predictor.predict(path)
        predicted = type_totals([k["type"] for k in prediction.kernels],
                                [k["latency_ms"] for k in prediction.kernels])
        per_model.append(ratios(predicted, measured[path]))
        predicted_ms.append(prediction.latency_ms)
        print("\n".join(report(path.name, prediction.latency_ms, medians[path], predicted,
                               measured[path])))
    print(f"over {len(args.models)} models, each model's median share ratio:")
    print("\n".join(pooled(per_model)))
    print("\n".join(at_level([path.name for path in args.models],
                              [float(np.median(medians[path])) for path in args.models],
                              predicted_ms)))


if __name__ == "__main__":
    main()
