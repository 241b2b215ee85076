"""Import speed: ONNX import (+ kernel detection) in-process, and ``edgemeter --help`` start-up.

    python bench/bench_import.py                   # zoo MobileNetV3, onnxruntime-cpu rules
    python bench/bench_import.py --model m.onnx --rules openvino-cpu --runs 50

Targets (issue 2): import + detection of a MobileNetV3-size ONNX under 50 ms in-process;
``edgemeter --help`` under 0.3 s. Figures are medians with their min-max range, in wall time and
in CPU time (this process, or the child for --help), which is less inflated on a shared, busy
machine; the first, cold call (lazy imports of onnx and the importer) is reported on its own.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from edgemeter.importers import load_graph


def cpu_seconds() -> float:
    """CPU time of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], object], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU times of ``runs`` calls, in ms."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        fn()
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((cpu_seconds() - start_cpu) * 1e3)
    return wall, cpu


def summary(times: tuple[list[float], list[float]]) -> str:
    wall, cpu = times
    return (f"median {statistics.median(wall):.1f} ms (min {min(wall):.1f}, max {max(wall):.1f}, "
            f"n={len(wall)}); CPU median {statistics.median(cpu):.1f} ms")


def zoo_mobilenetv3(folder: Path) -> Path:
    from edgemeter import zoo

    module, shape = zoo.build("mobilenetv3")
    return zoo.export_onnx(module, shape, folder / "mobilenetv3.onnx")


def cli_help_times(runs: int) -> list[float]:
    script = Path(sys.executable).with_name("edgemeter")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "edgemeter"]
    return timed(lambda: subprocess.run([*command, "--help"], check=True,
                                        stdout=subprocess.DEVNULL), runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="ONNX file (default: zoo MobileNetV3)")
    parser.add_argument("--rules", default="onnxruntime-cpu", help="fusion rules for detection")
    parser.add_argument("--runs", type=int, default=30, help="timed imports")
    parser.add_argument("--cli-runs", type=int, default=7, help="timed `edgemeter --help` runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or zoo_mobilenetv3(Path(tmp))
        cold = timed(lambda: load_graph(model), 1)[0][0]
        graph = load_graph(model)
        shape = "x".join(map(str, graph.tensors[graph.inputs[0]].shape))
        print(f"model: {model.name if args.model else 'zoo mobilenetv3'} ({shape}), "
              f"{model.stat().st_size / 1e6:.1f} MB, {len(graph.nodes)} nodes, "
              f"{graph.total_cost().flops / 1e6:.0f} MFLOPs")
        print(f"import, first call:  {cold:.1f} ms")
        print(f"import:              {summary(timed(lambda: load_graph(model), args.runs))}")
        try:
            from edgemeter.kernels import detect, load_rules
        except ImportError:
            print("import + detect:     skipped (edgemeter.kernels not available)")
        else:
            rules = load_rules(args.rules)
            kernels = detect(graph, rules)
            both = timed(lambda: detect(load_graph(model), rules), args.runs)
            print(f"import + detect:     {summary(both)}  [{args.rules}, {len(kernels)} kernels]")
    print(f"edgemeter --help:    {summary(cli_help_times(args.cli_runs))}")


if __name__ == "__main__":
    main()
