"""Do two measurement protocols read the same models alike: raw latency, anchor, anchored?

A build measures its training models with its workspace's protocol (`backend.yaml`: 5 warm-up
and 20 timed runs per process), while truths, a build's reference level and its held-out models
use the reference protocol (10 and 30, nine rounds). Both put a latency at one machine speed with
the speed anchor timed in the same process. If the two read the anchor or the model differently
at the same moment, every build carries that difference into its predictions of truths.

This measures new zoo variants in ``--passes`` passes; in each, every model gets one round
(a fresh process) with each protocol, back to back, the order alternating, so that the host's
moves, which take minutes, reach both alike. It prints, per zoo family and overall, the median
over passes of B / A for the raw medians, the anchor times and the anchored latencies (model
over anchor), and, for each protocol, how the anchor's time follows the size of the model it is
paired with (slope of ln anchor on ln model ms, each pass's level taken out).

    .venv/bin/python bench/bench_protocols.py --per-family 2 --passes 6 --workdir /tmp/bench-protocols
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SEED = 9100  # no build or truth uses this zoo seed


def protocol_from(text: str):
    """One round of ``text``'s settings (``warmup=5,repeats=20``), with the anchor."""
    from edgemeter.backends.protocol import Protocol

    settings = {k: int(v) for k, v in (item.split("=") for item in text.split(",") if item)}
    return Protocol.from_dict({**settings, "rounds": 1, "max_rounds": 1, "anchor": True})


def spread(values: np.ndarray) -> str:
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return f"{q2:.3f} [{q1:.3f}, {q3:.3f}]"


def anchor_size_slope(rows: list[dict]) -> float:
    model = np.log([r["median_ms"] for r in rows])
    anchor = np.log([r["anchor_ms"] for r in rows])
    for p in {r["pass"] for r in rows}:
        mask = np.array([r["pass"] == p for r in rows])
        anchor[mask] -= np.median(anchor[mask])
    return float(np.polyfit(model, anchor, 1)[0])


def summarise(rows: list[dict]) -> None:
    paired: dict[tuple[str, int], dict[str, dict]] = {}
    for r in rows:
        paired.setdefault((r["model"], r["pass"]), {})[r["protocol"]] = r
    models = sorted({m for (m, _), pair in paired.items() if len(pair) == 2})

    def ratio(model: str, key) -> float:
        """Median over passes of B over A, each pass's two rounds taken back to back."""
        return float(np.median([key(pair["B"]) / key(pair["A"])
                                for (m, _), pair in paired.items()
                                if m == model and len(pair) == 2]))

    measures = {"raw": lambda r: r["median_ms"], "anchor": lambda r: r["anchor_ms"],
                "anchored": lambda r: r["median_ms"] / r["anchor_ms"]}
    table = {name: np.array([ratio(m, key) for m in models]) for name, key in measures.items()}
    family = np.array([m.split("-")[0] for m in models])
    print(f"{len(models)} models, {len({r['pass'] for r in rows})} passes; B / A, median "
          "[quartiles] over models of each model's median over passes")
    print(f"{'family':14}{'n':>3}  {'raw':>24}  {'anchor':>24}  {'anchored':>24}")
    for name in sorted(set(family)) + ["all"]:
        mask = family == name if name != "all" else np.ones(len(models), bool)
        print(f"{name:14}{mask.sum():>3}  " + "  ".join(f"{spread(table[k][mask]):>24}"
                                                    for k in measures))
    for p in ("A", "B"):
        chosen = [r for r in rows if r["protocol"] == p]
        print(f"protocol {p}: anchor {np.median([r['anchor_ms'] for r in chosen]):.4f} ms in "
              f"median; ln anchor on ln model ms: slope {anchor_size_slope(chosen):+.4f}")


def counts(settings) -> str:
    return f"warmup={settings['warmup']},repeats={settings['repeats']}"


def main() -> None:
    from edgemeter.backends.protocol import REFERENCE
    from edgemeter.builder.workspace import SCHEMA

    build = {k: SCHEMA["backend.yaml"][k].default for k in ("warmup", "repeats")}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", default=counts(build),
                        help="protocol A (default: a build workspace's, %(default)s)")
    parser.add_argument("--b", default=counts(REFERENCE),
                        help="protocol B (default: the reference protocol's, %(default)s)")
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--per-family", type=int, default=2)
    parser.add_argument("--backend", default="onnxruntime-cpu")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgemeter-bench-protocols"))
    parser.add_argument("--summarise-only", action="store_true")
    args = parser.parse_args()

    out = args.workdir / "measurements.jsonl"
    if not args.summarise_only:
        from edgemeter import dataset
        from edgemeter.backends.protocol import measure

        models = args.workdir / "dataset"
        dataset.generate(models, per_family=args.per_family, seed=SEED, progress=True)
        paths = sorted((models / "models").glob("*.onnx"))
        protocols = {"A": protocol_from(args.a), "B": protocol_from(args.b)}
        for p in range(args.passes):
            for i, path in enumerate(paths):
                for name in ("AB" if (p + i) % 2 == 0 else "BA"):
                    m = measure(path, args.backend, {"threads": 1}, protocols[name])
                    if m.ok and m.anchor_ms:
                        with open(out, "a") as f:
                            f.write(json.dumps({"pass": p, "protocol": name,
                                                "model": path.stem, "median_ms": m.median_ms,
                                                "anchor_ms": m.anchor_ms}) + "\n")
    summarise([json.loads(line) for line in out.read_text().splitlines()])


if __name__ == "__main__":
    main()
