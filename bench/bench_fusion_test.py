"""How far the fusion tester's timing agrees with what the runtime shows it executes.

    .venv/bin/python bench/bench_fusion_test.py [--backend onnxruntime-cpu --backend ...]
        [--runs 3] [--ops conv,dwconv,relu,add,mul,bn,sigmoid | --ops all] [--out DIR]

Runs ``edgemeter fusion-test`` ``--runs`` times per backend, each in a fresh workspace (nothing
reused from a store), and prints per run: pairs tested, pairs whose timing was clear, pairs where
a clear timing disagrees with the runtime's graph (onnxruntime's optimised model, OpenVINO's
runtime model, the XNNPACK operators LiteRT's profiler reports), the range of the savings of
element-wise pairs (0: the pair costs what its ops cost apart; 1: the cheaper op is hidden), and
the test's baseline T0. Last, whether the graph gave the same rules in every run.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

ELEMENTWISE = {"relu", "relu6", "hswish", "sigmoid", "add", "mul", "bn"}


def one_run(backend: str, ops: list[str] | str, folder: Path) -> dict:
    from edgemeter.builder import create_workspace
    from edgemeter.builder.collect import Collector
    from edgemeter.builder.fusion_test import run_fusion_test
    from edgemeter.store import Store

    ws = create_workspace(folder, backend, ops=ops)
    started = time.monotonic()
    with Store(folder) as store:
        collector = Collector(store, backend, ws.backend_config(), ws.protocol())
        result = run_fusion_test(ws, collector, log=lambda _: None, progress=False)
    seconds = time.monotonic() - started
    elementwise = [p.saving for p in result.pairs if p.saving is not None
                   and {p.first, p.second} <= ELEMENTWISE]
    return {"pairs": len(result.pairs), "clear": sum(p.clear for p in result.pairs),
            "disagree": [f"{p.first}>{p.second}" for p in result.disagreements()],
            "elementwise": (min(elementwise), max(elementwise)) if elementwise else None,
            "t0_us": 1000 * result.baseline_ms, "seconds": seconds,
            "rules": json.dumps(yaml.safe_load(result.path.read_text())["pairs"],
                                sort_keys=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", action="append",
                        help="backend to test (repeatable; default: onnxruntime-cpu, "
                             "openvino-cpu-f32, litert-xnnpack)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ops", default="conv,dwconv,relu,add,mul,bn,sigmoid",
                        help="comma-separated test ops, or 'all'")
    parser.add_argument("--out", type=Path, help="keep the workspaces here (default: a "
                        "temporary folder)")
    args = parser.parse_args()
    backends = args.backend or ["onnxruntime-cpu", "openvino-cpu-f32", "litert-xnnpack"]
    ops = "all" if args.ops == "all" else args.ops.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-fusion-") as tmp:
        root = args.out or Path(tmp)
        for backend in backends:
            runs = [one_run(backend, ops, root / f"{backend}-{i}") for i in range(args.runs)]
            for i, r in enumerate(runs):
                low_high = ("element-wise savings {:+.2f}..{:+.2f}".format(*r["elementwise"])
                            if r["elementwise"] else "no element-wise pairs")
                print(f"{backend} run {i + 1}: {r['pairs']} pairs, {r['clear']} clear, "
                      f"{len(r['disagree'])} disagree with the graph, {low_high}, "
                      f"T0 {r['t0_us']:.1f} us, {r['seconds']:.0f} s")
                if r["disagree"]:
                    print("   disagree: " + ", ".join(r["disagree"]))
            same = len({r["rules"] for r in runs}) == 1
            print(f"{backend}: the graph's rules {'the same' if same else 'DIFFER'} in all "
                  f"{len(runs)} runs")


if __name__ == "__main__":
    main()
