"""Does the speed anchor's time, against its time at the build, tell when to trust it alone?

``predict --calibrate`` rescales by the anchor timed now; ``predict --calibrate-models`` by the
level of reference models measured now. For every stored truth (a measured dataset folder with
reference models, as ``bench_accuracy.py --reference 1`` and ``dataset generate --reference 1``
make them) judged by every given predictor whose backend and settings measured it: the ratio of
the truth's median anchor time to the predictor's build anchor time (what ``--calibrate`` sees),
the share of predictions within ±10 % with the anchor alone (the truth put at build speed by
the anchor timed beside each of its rounds: the predictor's own error, drift aside), the share
with the anchor timed once, when the references' first three rounds ran (what ``--calibrate``
would have given then), and the share at the level of those references' rounds, as measured
(what ``--calibrate-models`` would have given then). The last two judge the truth as measured,
so a machine that drifts within a truth costs both alike. Then, per predictor and over all,
the same pooled over the truths whose anchor ran at most ``--edge`` times its build time and
over those above it (by default the edge beyond which ``predict --calibrate`` warns,
:data:`edgemeter.predictor.calibration.TRUSTED_ANCHOR_RATIO`).

    .venv/bin/python bench/bench_anchor_ratio.py --predictor onnxruntime-cpu-1t:1.43 \\
        --predictor openvino-cpu-f32-1t:1.6 DATASET ...
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path


def judge(predictor, folder: Path) -> dict | None:
    """One truth's figures for ``predictor``; None where its backend and settings did not
    measure ``folder`` or the folder has no reference models or no anchor."""
    from edgemeter.dataset.evaluate import evaluate
    from edgemeter.dataset.measure import measurements_file, read_measurements
    from edgemeter.predictor.calibration import LEVEL_ROUNDS

    settings = predictor.package.extra.get("backend_settings")
    if not measurements_file(folder, predictor.backend).exists() or not any(
            r["config"] == settings for r in read_measurements(folder, predictor.backend)):
        return None
    result = evaluate(predictor, folder, reference_rounds=LEVEL_ROUNDS)
    if not (result.anchored and result.references):
        return None
    anchor_ms = statistics.median(row["anchor_ms"] for row in result.rows)
    # The references' rows are cut to their first rounds, and so is the anchor beside them.
    then = statistics.median(row["anchor_ms"] for row in result.references)
    at_then = evaluate(predictor.calibrated(then), folder, reference_rounds=LEVEL_ROUNDS)
    return {"predictor": predictor.label, "folder": str(folder),
            "ratio": anchor_ms / predictor.anchor_ms,
            "predictions": len(result.rows), "alone": result.overall["within_10"],
            "once": at_then.overall_as_measured["within_10"],
            "references": result.leveled_as_measured["within_10"]}


COLUMNS = ("alone", "once", "references")


def pooled(truths: list[dict], key: str) -> float:
    """The share within ±10 % over every prediction of ``truths``."""
    return (sum(t[key] * t["predictions"] for t in truths)
            / sum(t["predictions"] for t in truths))


def band_line(name: str, truths: list[dict]) -> str:
    if not truths:
        return f"{name:<28}{0:>7}"
    spans = " ".join(f"{min(t[k] for t in truths):.1f}–{max(t[k] for t in truths):.1f} %"
                     for k in COLUMNS)
    shares = "".join(f"{pooled(truths, k):>12.1f} %" for k in COLUMNS)
    return (f"{name:<28}{len(truths):>7}{sum(t['predictions'] for t in truths):>13}{shares}"
            f"   per truth {spans}")


def main() -> None:
    from edgemeter.predictor.calibration import TRUSTED_ANCHOR_RATIO

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path, help="measured dataset folders")
    parser.add_argument("--predictor", action="append", required=True, metavar="NAME[:VERSION]",
                        help="a predictor to judge the folders it measured with (repeatable)")
    parser.add_argument("--edge", type=float, default=TRUSTED_ANCHOR_RATIO,
                        help="the anchor ratio that splits the truths (default: the one "
                             "predict --calibrate warns beyond)")
    args = parser.parse_args()

    from edgemeter import load_predictor
    from edgemeter.errors import EdgemeterError

    truths = []
    try:
        for spec in args.predictor:
            name, _, version = spec.partition(":")
            predictor = load_predictor(name, version or None)
            for folder in args.datasets:
                found = judge(predictor, folder)
                if found:
                    truths.append(found)
                    print(f"{found['predictor']:<28}{found['folder'][-40:]:<42}"
                          f"{found['ratio']:>6.2f}x"
                          + "".join(f"{found[k]:>8.1f} %" for k in COLUMNS), flush=True)
    except EdgemeterError as error:
        parser.exit(1, f"error: {error}\n")
    if not truths:
        parser.exit(1, "error: no folder holds reference models measured by a given predictor\n")
    groups = {label: [t for t in truths if t["predictor"] == label]
              for label in dict.fromkeys(t["predictor"] for t in truths)}
    if len(groups) > 1:
        groups["all"] = truths
    for label, group in groups.items():
        print(f"\n{label:<28}{'truths':>7}{'predictions':>13}{'±10 % alone':>14}"
              f"{'anchor once':>14}{'refs':>14}")
        print(band_line(f"anchor at most {args.edge:g}x",
                        [t for t in group if t["ratio"] <= args.edge]))
        print(band_line(f"anchor above {args.edge:g}x",
                        [t for t in group if t["ratio"] > args.edge]))


if __name__ == "__main__":
    main()
