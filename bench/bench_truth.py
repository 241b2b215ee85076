"""How repeatable is a dataset's measured truth: rounds back to back, or interleaved?

Measures every model of a dataset ``--blocks`` times with each scheme, alternating (block 1
consecutive, block 1 interleaved, block 2 consecutive, ...), so both schemes see the same hours
of the host. Consecutive: each model's ``--rounds`` fresh processes back to back (seconds apart).
Interleaved (``Protocol.interleave``, the default of ``edgemeter dataset measure``): round r of
every model before round r + 1 of any, so each model's rounds are minutes apart. Then, for each
scheme and statistic (median of round medians, fastest run), the share of models whose two
measurements from different blocks agree within ±10 % (and ±5 %), over every pair of blocks.
A predictor cannot agree with a truth more often than the truth agrees with itself. Last, the
same agreement from the median of each model's first k rounds only, k = 1 .. ``--rounds``: how
many rounds a repeatable truth needs.

    .venv/bin/python bench/bench_truth.py --dataset DS --blocks 4 --out bench/results/truth.jsonl
    .venv/bin/python bench/bench_truth.py --dataset DS --blocks 2 --rounds 9 --schemes interleaved

``DS`` is a folder made by ``edgemeter dataset generate``; nothing is written into it. Every
measurement is appended to ``--out`` as it completes (``--summarise-only`` reads it back).
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

SCHEMES = ("consecutive", "interleaved")
STATISTICS = {"median": "median_ms", "fastest": "min_ms"}


def agreement(a: dict[str, float], b: dict[str, float], tolerance_pct: float) -> float:
    """Share (%) of the models of both measurements whose ``a`` is within the tolerance of
    their ``b``."""
    from edgemeter.predictor.metrics import within

    common = sorted(a.keys() & b.keys())
    return within([b[f] for f in common], [a[f] for f in common], tolerance_pct)


def summarise(records: list[dict]) -> None:
    blocks = sorted({r["block"] for r in records})
    schemes = [s for s in SCHEMES if any(r["scheme"] == s for r in records)]
    truths = {}  # (scheme, block) -> file -> record
    for r in records:
        truths.setdefault((r["scheme"], r["block"]), {})[r["file"]] = r
    n_models = max(len(t) for t in truths.values())
    complete = [b for b in blocks
                if all(len(truths.get((s, b), {})) == n_models for s in schemes)]
    print(f"{len(complete)} complete blocks of {n_models} models")
    if len(complete) < 2:
        return
    first = truths[(schemes[0], complete[0])]
    for b in complete:
        for scheme in schemes:
            t = truths[(scheme, b)]
            ratio = statistics.median(t[f]["median_ms"] / first[f]["median_ms"] for f in t)
            started = time.strftime("%H:%M", time.localtime(next(iter(t.values()))["started"]))
            print(f"  block {b} {scheme:<12} from {started}  median latency / block "
                  f"{complete[0]} {schemes[0]}'s: {ratio:.3f}")
    sets = [(scheme, b) for b in complete for scheme in schemes]
    if len(sets) >= 3:  # a slope through two points is no slope
        sensitivity(records, sets)
    pairs = list(itertools.combinations(complete, 2))

    def print_agreement(label: str, values: dict[int, dict[str, float]]) -> None:
        for tolerance in (10, 5):
            shares = [agreement(values[x], values[y], tolerance) for x, y in pairs]
            print(f"  {label}±{tolerance:>2}%  {statistics.median(shares):5.1f}%   "
                  + " ".join(f"{s:.0f}" for s in shares))

    print(f"truth against itself, {len(pairs)} pairs of blocks (median of pairs, then each pair):")
    for stat, key in STATISTICS.items():
        for scheme in schemes:
            print_agreement(f"{stat:<8}{scheme:<13}",
                            {b: {f: r[key] for f, r in truths[(scheme, b)].items() if r[key]}
                             for b in complete})
    print("the median of each model's first k rounds only:")
    for scheme in schemes:
        rounds = min(len(r["round_medians_ms"]) for b in complete
                     for r in truths[(scheme, b)].values() if r["round_medians_ms"])
        for k in range(1, rounds + 1):
            print_agreement(f"{scheme:<13}{k:>2} rounds  ",
                            {b: {f: statistics.median(r["round_medians_ms"][:k])
                                 for f, r in truths[(scheme, b)].items()
                                 if r["round_medians_ms"]}
                             for b in complete})


def sensitivity(records: list[dict], sets: list[tuple[str, int]]) -> None:
    """How much each family moves when the host slows: per model, the slope of its log latency
    on the set's median log latency (1: moves with the set; 2: twice as much)."""
    import numpy as np

    by_set: dict[tuple[str, int], dict[str, float]] = {key: {} for key in sets}
    for r in records:
        if (r["scheme"], r["block"]) in by_set and r["median_ms"]:
            by_set[(r["scheme"], r["block"])][r["file"]] = r["median_ms"]
    files = sorted(set.intersection(*(set(v) for v in by_set.values())))
    logs = np.log([[by_set[key][f] for key in sets] for f in files])
    logs -= np.median(logs, axis=1, keepdims=True)
    shift = np.median(logs, axis=0)
    if np.ptp(shift) == 0:
        return
    slopes = {}
    for f, row in zip(files, logs):
        slopes.setdefault(Path(f).name.split("-")[0], []).append(np.polyfit(shift, row, 1)[0])
    print(f"the set's median latency moved {100 * np.ptp(shift):.1f} % across the "
          f"{len(sets)} measurements; each family's move relative to it (median slope):")
    print("  " + ", ".join(f"{family} {statistics.median(s):.2f}"
                           for family, s in sorted(slopes.items(),
                                                   key=lambda kv: statistics.median(kv[1]))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--backend", default="onnxruntime-cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--schemes", default=",".join(SCHEMES),
                        help="comma-separated, of: " + ", ".join(SCHEMES))
    parser.add_argument("--out", type=Path, default=Path("bench/results/truth.jsonl"))
    parser.add_argument("--summarise-only", action="store_true")
    args = parser.parse_args()

    if not args.summarise_only:
        from edgemeter.backends import Protocol, measure_models
        from edgemeter.dataset import read_index

        entries = read_index(args.dataset)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as out:
            for block in range(args.blocks):
                for scheme in args.schemes.split(","):
                    protocol = Protocol(rounds=args.rounds, max_rounds=args.rounds, anchor=True,
                                        interleave=scheme == "interleaved")
                    start, files = time.time(), iter(e["file"] for e in entries)

                    def record(m, reused) -> None:
                        out.write(json.dumps({
                            "block": block, "scheme": scheme, "file": next(files),
                            "started": start, "median_ms": m.median_ms, "min_ms": m.min_ms,
                            "round_medians_ms": m.round_medians_ms, "anchor_ms": m.anchor_ms,
                            "others_cores": m.others_cores, "error": m.error}) + "\n")
                        out.flush()

                    measure_models([args.dataset / e["file"] for e in entries], args.backend,
                                   {"threads": args.threads}, protocol, on_result=record)
                    print(f"block {block} {scheme}: {time.time() - start:.0f} s", flush=True)
    summarise([json.loads(line) for line in args.out.read_text().splitlines()])


if __name__ == "__main__":
    main()
