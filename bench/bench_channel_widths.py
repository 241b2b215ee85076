"""Does a runtime care what a kernel's channel count is divisible by? Time one kernel type at
several channel counts, everything else fixed.

    .venv/bin/python bench/bench_channel_widths.py [--backend onnxruntime-cpu] [--type dwconv]
        [--hw 28] [--kernel-size 3] [--channels 56,58,60,64,112,116,120] [--rounds 7]

Each configuration is emitted as a stand-alone kernel model (as the builder emits its samples),
loaded once, and timed in interleaved rounds (every configuration's round r before any round
r + 1) of 30 runs after 3 warm-up runs; the figure is the median over the rounds of each
round's median, in µs and in ns per output element. Builds draw channel counts in multiples of
8 and, for a fifth of the kernels, of 2: what a runtime does at the other widths is what this
shows.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="onnxruntime-cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--type", default="dwconv", help="kernel type (dwconv, conv, …)")
    parser.add_argument("--hw", type=int, default=28)
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--channels", default="56,58,60,64,112,116,120")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import onnx

    from edgemeter.backends import get_backend
    from edgemeter.builder.kernel_models import emit

    backend = get_backend(args.backend, threads=args.threads)
    channels = [int(c) for c in args.channels.split(",")]
    runners = {}
    with tempfile.TemporaryDirectory(prefix="bench-widths-") as tmp:
        for c in channels:
            config = {"type": args.type, "HW": args.hw, "CIN": c, "COUT": c,
                      "KERNEL_SIZE": args.kernel_size, "STRIDES": 1}
            if args.type.startswith("dwconv"):
                del config["COUT"]
            path = Path(tmp) / f"{args.type}-{c}.onnx"
            onnx.save(emit(config), path)
            runners[c] = backend.load(path)
        medians: dict[int, list[float]] = {c: [] for c in channels}
        for _ in range(args.rounds):
            for c, runner in runners.items():
                for _ in range(3):
                    runner.run()
                times = []
                for _ in range(30):
                    start = time.perf_counter()
                    runner.run()
                    times.append(time.perf_counter() - start)
                medians[c].append(statistics.median(times))
        for runner in runners.values():
            runner.close()
    print(f"{args.backend}, {args.threads} thread(s): {args.type} {args.kernel_size}×"
          f"{args.kernel_size} at {args.hw}×{args.hw}, median of {args.rounds} rounds of 30 runs")
    for c in channels:
        us = 1e6 * statistics.median(medians[c])
        largest = c & -c
        print(f"  {c:5d} channels (largest power of two dividing them: {largest:3d}): "
              f"{us:8.1f} µs, {1000 * us / (args.hw * args.hw * c):.2f} ns per output")


if __name__ == "__main__":
    main()
