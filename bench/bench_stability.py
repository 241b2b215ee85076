"""Stability of latency measurements per backend: how much to trust one number.

For each backend and a few models built here (no downloads) it runs the measurement protocol's
child processes and reports:

- CV within a process: the robust spread (IQR / 1.349 / median) of repeated runs in one process,
  median over processes (stdev / mean is meaningless here: rare 10x outliers dominate it);
- CV between processes: the spread of the medians of fresh processes of the same model;
- repetitions needed: for protocols of R rounds x N timed runs, the share of independent
  estimates (median of round medians, from processes not used for the reference) that fall within
  ±2 % of a long reference run (median of REF_ROUNDS processes x 100 runs), and the cheapest
  protocol whose estimates all do.

    .venv/bin/python bench/bench_stability.py                  # ~3-5 minutes on 2 cores
    .venv/bin/python bench/bench_stability.py --backends onnxruntime-cpu --test-rounds 12
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from edgemeter.backends import Protocol, measure
from edgemeter.backends.protocol import cv, robust_cv

REPEATS = 100
CANDIDATES = [(1, 10), (1, 30), (1, 100), (2, 30), (3, 10), (3, 30), (3, 100)]


def build_models(folder: Path) -> dict[str, dict[str, Path]]:
    """A few small models as ONNX (and .pt2 for torch): model name -> suffix -> path."""
    import torch
    from torch import nn

    from edgemeter.backends.torch import save_module

    def separable(c_in: int, c_out: int, stride: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in), nn.ReLU6(),
                             nn.Conv2d(c_in, c_out, 1), nn.ReLU6())

    modules = {
        "convnet-64px": (nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, 100)), torch.randn(1, 3, 64, 64)),
        "separable-96px": (nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6(), separable(16, 32, 1), separable(32, 64, 2),
            separable(64, 64, 1), separable(64, 128, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(128, 100)), torch.randn(1, 3, 96, 96)),
        "mlp-512": (nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                                  nn.Linear(512, 10)), torch.randn(1, 512)),
    }
    paths = {}
    for name, (module, x) in modules.items():
        module.eval()
        onnx_path = folder / f"{name}.onnx"
        torch.onnx.export(module, x, onnx_path, dynamo=False, opset_version=17)
        pt2_path = save_module(module, (x,), folder / f"{name}.pt2")
        paths[name] = {".onnx": onnx_path, ".pt2": pt2_path}
    return paths


def rounds_of(backend: str, model: Path, count: int, threads: int) -> list[list[float]]:
    """``count`` fresh processes of REPEATS timed runs each (no adaptive rounds)."""
    protocol = Protocol(warmup=10, repeats=REPEATS, rounds=count, max_rounds=count,
                        timeout_s=300)
    m = measure(model, backend, {"threads": threads}, protocol)
    if not m.ok:
        raise RuntimeError(m.error)
    return [m.samples_ms[i:i + REPEATS] for i in range(0, len(m.samples_ms), REPEATS)]


def estimate(rounds: list[list[float]], repeats: int) -> float:
    return statistics.median(statistics.median(r[:repeats]) for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["onnxruntime-cpu", "openvino-cpu-f32",
                        "openvino-cpu-bf16", "litert-xnnpack", "torch-cpu"])
    parser.add_argument("--models", nargs="+", default=["convnet-64px", "separable-96px"],
                        help="from: convnet-64px separable-96px mlp-512")
    parser.add_argument("--ref-rounds", type=int, default=4)
    parser.add_argument("--test-rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tolerance", type=float, default=0.02)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgemeter-bench-") as tmp:
        models = build_models(Path(tmp))
        # Other processes on the machine are the main source of spread: say how busy it was.
        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'backend':<18} {'model':<15} {'ref ms':>8} {'CV in':>6} {'CV betw':>7}  "
              + "  ".join(f"{r}x{n:<3}" for r, n in CANDIDATES) + "   needs")
        for backend in args.backends:
            suffix = ".pt2" if backend == "torch-cpu" else ".onnx"
            for name in args.models:
                start = time.monotonic()
                try:
                    rounds = rounds_of(backend, models[name][suffix],
                                       args.ref_rounds + args.test_rounds, args.threads)
                except RuntimeError as exc:
                    print(f"{backend:<18} {name:<15} FAILED: {exc}")
                    continue
                reference = estimate(rounds[:args.ref_rounds], REPEATS)
                test = rounds[args.ref_rounds:]
                within = statistics.median(robust_cv(r) for r in rounds)
                between = cv([statistics.median(r) for r in rounds])
                shares, needs = [], "-"
                for r, n in CANDIDATES:
                    estimates = [estimate(test[i:i + r], n)
                                 for i in range(0, len(test) - r + 1, r)]
                    ok = [abs(e / reference - 1) <= args.tolerance for e in estimates]
                    shares.append(f"{sum(ok)}/{len(ok)}")
                    if all(ok) and needs == "-":
                        needs = f"{r}x{n}"
                print(f"{backend:<18} {name:<15} {reference:8.4f} {within:6.1%} {between:7.1%}  "
                      + "  ".join(f"{s:<5}" for s in shares)
                      + f"   {needs:<6} ({time.monotonic() - start:.0f} s)", flush=True)
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
        print(f"\nshares: estimates within ±{args.tolerance:.0%} of the reference "
              f"({args.ref_rounds} processes x {REPEATS} runs); RxN = R fresh processes x N runs;"
              " 'needs' = the first candidate (cheapest first) whose estimates all qualify.")


if __name__ == "__main__":
    main()
