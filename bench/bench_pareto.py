"""Benchmark of the Pareto search on real runtimes.

For a MobileNetV2-like and a ResNet-like model (edgemeter.zoo) in name mode:

1. brute force: measure every assignment in a fresh process, in ``--rounds`` passes over all
   of them, each in its own shuffled order; an assignment's latency is its median over the
   passes -> the true front and its hypervolume (HV). On a noisy host one pass is not enough:
   its lucky assignments make the front;
2. replay each search algorithm on those measurements (a lookup, as the seed's brute-force
   profiler intends) over several seeds: how many measurements it needs to reach 95% of the
   brute-force HV;
3. offline mode: per-node latencies predict every assignment, from one profiled run per backend
   and, where predictors are installed (shipped, registered, or given with --predictor), from
   the edgemeter predictors (a backend without one falls back to its profiled run), calibrated
   on the single-backend anchors and not; the predicted front is "measured" from the lookup;
   HV of what was measured over the brute-force HV.

    .venv/bin/python bench/bench_pareto.py [--backends a,b] [--resolution 64] [--out DIR]
        [--rounds 3] [--predictor BACKEND=NAME|PATH ...]

Defaults finish in a few minutes on 2 cores (2 backends: 64 + 128 assignments; each more
round as long again). Each pass's dump is a checkpoint: rerunning with the same --out resumes.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from edgemeter import zoo
from edgemeter.backends import Protocol
from edgemeter.pareto.archive import reference_point
from edgemeter.pareto.executor import PartitionedEvaluator
from edgemeter.cli.pareto_commands import parse_predictors
from edgemeter.pareto.offline import (PredictorLatency, find_predictors, hypervolume_ratio,
                                      offline_search, profiled_predictor)
from edgemeter.pareto.partition import prepare_model
from edgemeter.pareto.plot import plot_front
from edgemeter.pareto.search import (Solution, Study, brute_force, local_search, nsga2,
                                     random_search)
from edgemeter.pareto.space import build_space

MODELS = {"mobilenetv2": "MobileNetV2-like", "resnet": "ResNet-like"}
ALGORITHMS = {"random": random_search, "nsga2": nsga2, "local": local_search}


class Reached(Exception):
    pass


def measurements_to_reach(algo, space, lookup, target: float, reference, seed: int) -> int | None:
    """Distinct measurements ``algo`` makes before its front's HV reaches ``target``; None when
    it stops first."""
    def watch(_solution) -> None:
        if study.archive.hypervolume(reference) >= target:
            raise Reached

    study = Study(space, lookup.__getitem__, on_solution=watch)
    try:
        algo(study, budget=space.size, seed=seed)
    except Reached:
        return study.measured
    return None


def bench_model(family: str, args, out: Path) -> dict:
    model, shape = zoo.build(family, {"resolution": args.resolution})
    path = zoo.export_onnx(model, shape, out / f"{family}.onnx")
    prepared = prepare_model(path)
    space = build_space(prepared, args.backends, "name")
    print(f"\n## {MODELS[family]} ({family}, {args.resolution} px): {space.describe()}")
    protocol = Protocol(warmup=5, repeats=args.repeats, rounds=1, max_rounds=1)
    evaluator = PartitionedEvaluator(path, space, out / f"{family}.work", protocol=protocol)
    start = time.monotonic()
    passes = [brute_force_pass(space, evaluator, out / f"{family}-brute-{k}.json", seed=k)
              for k in range(args.rounds)]
    brute_s = time.monotonic() - start
    study = Study(space, lambda ident: median_solution([p[ident] for p in passes]))
    brute_force(study)
    lookup = study.solutions
    front = [lookup[i] for i in study.archive.front]
    # Reference just beyond the front's worst values (its nadir): a reference set by the slowest
    # assignments would let the one fastest-and-smallest corner point fill most of the HV.
    reference = reference_point([s.objectives for s in front])
    hv_true = study.archive.hypervolume(reference)
    print(f"brute force: {study.measured} assignments in {brute_s:.0f} s "
          f"({sum(not s.feasible for s in lookup.values())} infeasible); front:")
    for s in front:
        config = ", ".join(f"{k}={v}" for k, v in space.config(s.id).items())
        print(f"  #{s.id}: {s.exec_time:.3f} ms, {s.max_rss / 1024:.1f} MiB, "
              f"{s.partitions} partitions [{config}]")
    plot_front(study.to_dict(), out / f"{family}-front.png",
               title=f"{MODELS[family]}: {space.describe()}")

    needed = {}
    for name, algo in ALGORITHMS.items():
        counts = [measurements_to_reach(algo, space, lookup, 0.95 * hv_true, reference, seed)
                  for seed in range(args.seeds)]
        reached = [c for c in counts if c is not None]
        needed[name] = {"median": statistics.median(reached) if reached else None,
                        "reached": f"{len(reached)}/{len(counts)}", "runs": counts}
    needed["brute"] = {"median": measurements_to_reach(
        lambda s, budget, seed: brute_force(s), space, lookup, 0.95 * hv_true, reference, 0),
        "reached": "1/1"}
    print(f"measurements to reach 95% of the brute-force HV (median over {args.seeds} seeds, "
          f"of {space.size}):")
    for name, row in needed.items():
        print(f"  {name:7s} {row['median']}  (reached in {row['reached']} runs)")

    offline = {"profiled": offline_mode(prepared, space, lookup, front,
                                        profiled_predictor(path, protocol))}
    offline["profiled"]["profiled_runs"] = len(args.backends)
    predictors, warnings = find_predictors(args.backends, chosen=args.predictor)
    for line in warnings:
        print(f"  warning: {line}")
    if predictors:
        predict = PredictorLatency(predictors, profiled_predictor(path, protocol))
        for name, calibrate in (("predictors", True), ("predictors-uncalibrated", False)):
            offline[name] = offline_mode(prepared, space, lookup, front, predict, calibrate)
            offline[name]["latency"] = predict.describe(args.backends)
    else:
        print("  offline with predictors: none installed for these backends")
    for name, row in offline.items():
        sources = ", ".join(f"{b}: {v['source']}" for b, v in row.get("latency", {}).items())
        print(f"offline ({name}{'; ' + sources if sources else ''}): {row['measured']} "
              f"measurements (of {space.size}); HV of the measured predicted front / brute-force "
              f"HV = {row['hv_ratio_vs_brute']:.3f}; / its own predicted HV = "
              f"{row['hypervolume_ratio']:.3f}; anchors predicted/measured: "
              + ", ".join(f"{b} {a['predicted_ms']:.3f}/{a['measured_ms']:.3f} ms"
                          for b, a in row["anchors"].items()) + f" ({row['seconds']:.0f} s)")
    return {"model": family, "space": space.describe(), "brute_force_s": round(brute_s, 1),
            "front": [{"id": s.id, "exec_time": s.exec_time, "max_rss": s.max_rss,
                       "config": space.config(s.id)} for s in front],
            "measurements_to_95pct_hv": needed, "offline": offline}


def brute_force_pass(space, evaluator, dump: Path, seed: int) -> dict:
    """Every assignment measured once, in an order shuffled by ``seed``, resumed from ``dump``:
    one round of each. Rounds run as whole passes, so a slow spell of the host moves one round
    of many assignments rather than every round of a few (as bench_truth.py found for models)."""
    study = Study(space, evaluator, dump=dump)
    if dump.exists():
        study.resume()
    order = list(range(space.size))
    random.Random(seed).shuffle(order)
    for ident in order:
        study.evaluate(ident)
    study.save()
    return study.solutions


def median_solution(rounds: list) -> Solution:
    """One assignment's rounds as one solution: the median time and peak memory, infeasible
    where any round failed."""
    failed = next((r for r in rounds if not r.feasible), None)
    if failed is not None:
        return failed
    return Solution(rounds[0].id, statistics.median(r.exec_time for r in rounds),
                    statistics.median(r.max_rss for r in rounds),
                    partitions=rounds[0].partitions)


def offline_mode(prepared, space, lookup, front, predict, calibrate: bool = True) -> dict:
    """Offline search replayed on the brute-force measurements: what it measures, and the HV of
    the measured predicted front against the brute-force front and its own prediction."""
    start = time.monotonic()
    result = offline_search(prepared, Study(space, lookup.__getitem__), predict,
                            calibrate=calibrate)
    measured_front = [lookup[i].objectives for i in result.predicted.archive.front
                      if lookup[i].feasible]
    summary = result.summary()
    return {**{k: summary[k] for k in ("measured", "saved", "hypervolume_ratio", "anchors")},
            "hv_ratio_vs_brute": hypervolume_ratio([s.objectives for s in front],
                                                   measured_front),
            "seconds": round(time.monotonic() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="onnxruntime-cpu,openvino-cpu-bf16")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per round")
    # One process is a noisy truth where processes of a model spread (8-40 % on the second
    # Xeon's VM, bench_stability.py): its lucky assignments then make the brute-force front.
    parser.add_argument("--rounds", type=int, default=1,
                        help="brute-force passes, each measuring every assignment once in a "
                             "fresh process (an assignment's latency: its median over them)")
    parser.add_argument("--seeds", type=int, default=10, help="replays per algorithm")
    parser.add_argument("--out", type=Path, help="results folder (default: a temporary one)")
    parser.add_argument("--predictor", action="append", default=[], metavar="BACKEND=NAME|PATH",
                        help="predictor of a backend for the offline mode (repeatable; default: "
                             "the installed one)")
    args = parser.parse_args()
    args.backends = args.backends.split(",")
    args.predictor = parse_predictors(tuple(args.predictor))
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-pareto-"))
    out.mkdir(parents=True, exist_ok=True)
    results = [bench_model(family, args, out) for family in args.models.split(",")]
    (out / "bench_pareto.json").write_text(json.dumps(results, indent=1))
    print(f"\nresults, dumps and front plots in {out}")


if __name__ == "__main__":
    main()
