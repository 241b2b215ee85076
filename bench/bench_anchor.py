"""Do measurements taken at different moments agree: raw medians, anchored medians, fastest runs?

Measures a few zoo models with the full protocol and the speed anchor every ``--every`` seconds
for ``--duration`` seconds, then prints, per model, the spread across time of the raw medians,
of the anchored ones (``median_ms`` put at one machine speed with the anchor timed beside it)
and of the fastest timed run (``min_ms``, the ``statistic: min`` of builds), and the slope of
each model's log median on the cycle's median anchor time. If the machine's speed drifts and the
anchor tracks it, the anchored spread is smaller and the slope near 1; if neighbours only add
time, the fastest run's spread is smaller. ``--backend`` may be given several times: each cycle
then measures every model on each backend in turn, so their anchors are judged over the same
moments. ``--family`` picks the zoo families measured (one fixed variant each), so a family a
predictor misses can be set beside those it does not.

    .venv/bin/python bench/bench_anchor.py --duration 3600 --every 180 --out bench/results/anchor.jsonl
    .venv/bin/python bench/bench_anchor.py --backend openvino-cpu-f32 --backend onnxruntime-cpu ...
    .venv/bin/python bench/bench_anchor.py --family resnext --family regnet --family resnet ...

Each cycle appends its measurements to ``--out`` (jsonl), so a long run can be watched and
summarised while it goes (``--summarise-only``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_BACKEND = "onnxruntime-cpu"
DEFAULT_FAMILIES = ("mobilenetv2", "resnet", "efficientnet", "vit", "shufflenetv2", "squeezenet")


def export_models(folder: Path, families: list[str]) -> list[Path]:
    from edgemeter import zoo

    paths = []
    for family in families:
        path = folder / f"{family}.onnx"
        if not path.exists():
            # Seeded by the family's place in the zoo: its variant is the same in every run.
            seed = [777, list(zoo.FAMILIES).index(family)]
            module, shape = zoo.build(family, zoo.sample_variant(family,
                                                                 np.random.default_rng(seed)))
            zoo.export_onnx(module, shape, path)
        paths.append(path)
    return paths


def summarise(records: list[dict]) -> None:
    by_backend: dict[str, list[dict]] = {}
    for r in records:
        # Records written before --backend took several carry none: they are the default's.
        by_backend.setdefault(r.get("backend", DEFAULT_BACKEND), []).append(r)
    for backend, rows in sorted(by_backend.items()):
        print(f"backend {backend}:")
        summarise_backend(rows)


def summarise_backend(records: list[dict]) -> None:
    from edgemeter.backends.anchor import at_speed

    speed = statistics.median(r["anchor_ms"] for r in records)
    # The slope regresses on each cycle's median anchor, which is less noisy than one
    # measurement's: noise in the regressor pulls a slope toward 0.
    cycle_anchor = {c: statistics.median(r["anchor_ms"] for r in records if r["cycle"] == c)
                    for c in {r["cycle"] for r in records}}
    cycles = len(cycle_anchor)
    print(f"{cycles} cycles, {len(records)} measurements; anchor median {speed:.4f} ms "
          f"(min {min(r['anchor_ms'] for r in records):.4f}, "
          f"max {max(r['anchor_ms'] for r in records):.4f})")
    print(f"{'model':14}{'raw CV %':>10}{'anchored CV %':>15}{'fastest CV %':>14}"
          f"{'raw max/min':>13}{'anchored max/min':>18}{'fastest max/min':>17}"
          f"{'slope on anchor':>17}")
    for family in dict.fromkeys(r["model"] for r in records):  # in the order measured
        raw = np.array([r["median_ms"] for r in records if r["model"] == family])
        anchor = np.array([cycle_anchor[r["cycle"]] for r in records if r["model"] == family])
        fixed = np.array([at_speed(r["median_ms"], r["anchor_ms"], speed)
                          for r in records if r["model"] == family])
        fastest = np.array([r.get("min_ms", np.nan) for r in records if r["model"] == family])
        if raw.size < 2:
            continue
        print(f"{family:14}{100 * raw.std() / raw.mean():>10.1f}"
              f"{100 * fixed.std() / fixed.mean():>15.1f}"
              f"{100 * fastest.std() / fastest.mean():>14.1f}{raw.max() / raw.min():>13.2f}"
              f"{fixed.max() / fixed.min():>18.2f}{fastest.max() / fastest.min():>17.2f}"
              f"{slope(anchor, raw):>17.2f}")


def slope(anchor: np.ndarray, model: np.ndarray) -> float:
    """How far the model's median moves, on log scales, when the anchor moves: 1 where the anchor
    tracks it (the ``at_speed`` correction is right), below 1 where the anchor moves more. Read
    it only where the anchor moved well beyond its noise over the run."""
    if np.ptp(np.log(anchor)) == 0:
        return float("nan")
    return float(np.polyfit(np.log(anchor), np.log(model), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3600)
    parser.add_argument("--every", type=float, default=180)
    parser.add_argument("--backend", action="append",
                        help="backend to measure, repeatable: each cycle measures every model on "
                             "each in turn, so their anchors are compared over the same moments "
                             f"(default {DEFAULT_BACKEND})")
    parser.add_argument("--family", action="append",
                        help="zoo family to measure, repeatable (default: "
                             f"{', '.join(DEFAULT_FAMILIES)})")
    parser.add_argument("--out", type=Path, default=Path("bench/results/anchor.jsonl"))
    parser.add_argument("--summarise-only", action="store_true")
    args = parser.parse_args()

    from edgemeter import zoo
    from edgemeter.backends import Protocol, backend_class, measure
    from edgemeter.errors import EdgemeterError

    if not args.summarise_only:
        backends = args.backend or [DEFAULT_BACKEND]
        families = args.family or list(DEFAULT_FAMILIES)
        try:  # a misspelt name ends here, not after the first cycle's other measurements
            for backend in backends:
                backend_class(backend)
            for family in families:
                zoo.get_family(family)
        except EdgemeterError as exc:
            parser.exit(2, f"bench_anchor.py: {exc}\n")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        scratch = tempfile.TemporaryDirectory(prefix="bench-anchor-")  # removed at exit
        paths = export_models(Path(scratch.name), families)
        protocol = Protocol(warmup=5, repeats=20, rounds=3, max_rounds=3, anchor=True)
        start, cycle = time.monotonic(), 0
        while time.monotonic() - start < args.duration:
            began = time.monotonic()
            with open(args.out, "a") as f:
                for backend, path in itertools.product(backends, paths):
                    m = measure(path, backend, {"threads": 1}, protocol)
                    if m.ok:
                        f.write(json.dumps({"cycle": cycle, "time": time.time(),
                                            "backend": backend,
                                            "model": path.stem, "median_ms": m.median_ms,
                                            "min_ms": m.min_ms,
                                            "anchor_ms": m.anchor_ms}) + "\n")
            cycle += 1
            time.sleep(max(0.0, args.every - (time.monotonic() - began)))
    summarise([json.loads(line) for line in args.out.read_text().splitlines()])


if __name__ == "__main__":
    main()
