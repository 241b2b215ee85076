"""Which model families keep a predictor from the accuracy goal, over many stored truths?

Each dataset folder given is one truth (a measured dataset, or a sibling of one measured again
later) and is judged as ``edgemeter evaluate`` judges it. Every scored model's prediction is
put at two levels: the truth's own (its models' median of predicted over measured, which
``relative_accuracy`` takes out) and, where the truth has reference models, theirs (what
``predict --calibrate-models`` measures). Per family, pooled over the truths: the predictions
within ±10 % at each level, the median error at the truth's own level, and how far apart the
family's models sit (the sd of each model's median error over its truths: what a better model
of the family could win back, the hour's noise aside). Two columns tell how steady the truths
themselves are: how far a model's errors sit apart over its truths (pooled sd; its prediction
is the same in each, so this is its measurements moving) and how much its time moves from one
fresh process to the next within a measurement (the median sd of the log round medians). One
more tells whether a family's errors move with the machine's speed: where the truths were timed
beside the speed anchor, the slope of the family's log truth over prediction (at the
predictor's speed, the anchor alone) on the log of each truth's median anchor time. It is 0
where the anchor's correction fits the family, above 0 where the family slows more than the
anchor says (predicted low on a slow machine); read it only where the truths' anchors, whose
span the header gives, moved well beyond their noise. Last, the same over all families, and
without the family that scores lowest, which shows whether one family holds the goal back.

    .venv/bin/python bench/bench_families.py --predictor onnxruntime-cpu-1t \\
        acc*/dataset-s1[234]?00 acc*/dataset-s1[234]?00-again-onnxruntime-cpu-1t
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

def truth_rows(result, rounds: dict[str, list[float]]) -> list[dict]:
    """One row per scored model of an :class:`~edgemeter.dataset.evaluate.Evaluation`: its
    prediction over its truth at the truth's own level and at its reference models' (None
    without references), how much its round medians (``rounds``, by file) move (None with
    fewer than two), and with a truth put at speed by the anchor, the prediction over it as
    the anchor alone leaves it and the truth's median anchor time (else None)."""
    scale = result.relative["scale"]
    leveled = result.leveled["median"] if result.leveled else None
    anchor = (float(np.median([row["anchor_ms"] for row in result.rows]))
              if result.anchored else None)
    folder = Path(result.dataset)
    # A sibling measured again links to the first folder's models: one model, two truths.
    return [{"model": str((folder / row["file"]).resolve()), "family": row["family"],
             "own": row["predicted_ms"] / scale / row["truth_ms"],
             "references": (leveled * row["predicted_ms"] / row["truth_ms"]
                            if leveled is not None else None),
             "rounds_sd": (float(np.std(np.log(rounds[row["file"]])))
                           if len(rounds.get(row["file"], ())) > 1 else None),
             "alone": row["predicted_ms"] / row["truth_ms"], "anchor": anchor}
            for row in result.rows]


def _within(ratios: list[float]) -> float | None:
    """The share of predictions (over truth, at a level) within ±10 %, as every figure of
    edgemeter's counts it; None without any."""
    from edgemeter.predictor.metrics import within

    return within(np.ones(len(ratios)), ratios, 10) if ratios else None


def figures(rows: list[dict]) -> dict:
    """Predictions, the share within ±10 % at the truths' own and at the references' level,
    the median error at the own level (%), the sd of the models' median errors (%), the pooled
    sd of each model's errors over its truths (%; None without a model in two truths) and the
    median sd of a measurement's log round medians (%; None without rounds) and the slope of
    the log truth over prediction on the log truth's anchor (:func:`anchor_slope`)."""
    own = [r["own"] for r in rows]
    by_model: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(np.log(r["own"]))
    model_errors = [np.median(v) for v in by_model.values()]
    repeated = [v for v in by_model.values() if len(v) > 1]
    squares = sum(float(np.sum(np.square(np.array(v) - np.mean(v)))) for v in repeated)
    freedom = sum(len(v) - 1 for v in repeated)
    rounds_sd = [r["rounds_sd"] for r in rows if r["rounds_sd"] is not None]
    return {"predictions": len(rows), "models": len(by_model),
            "own": _within(own),
            "references": _within([r["references"] for r in rows if r["references"] is not None]),
            "median_error": 100 * (float(np.median(own)) - 1),
            "models_sd": 100 * float(np.std(model_errors)),
            "truths_sd": 100 * np.sqrt(squares / freedom) if freedom else None,
            "rounds_sd": 100 * float(np.median(rounds_sd)) if rounds_sd else None,
            "anchor_slope": anchor_slope([(r["anchor"], r["alone"]) for r in rows
                                          if r["anchor"]])}


def anchor_slope(pairs: list[tuple[float, float]]) -> float | None:
    """The slope of ``ln(1 / alone)`` (truth over prediction) on ``ln anchor`` over
    ``(anchor, alone)`` pairs; None unless two truths' anchors differ."""
    if len({anchor for anchor, _ in pairs}) < 2:
        return None
    anchor, alone = np.array(pairs).T
    return float(np.polyfit(np.log(anchor), -np.log(alone), 1)[0])


def family_table(rows: list[dict]) -> tuple[dict[str, dict], dict, str, dict]:
    """Figures per family, over all rows, the family that scores lowest at the truths' own
    level, and the figures without it."""
    families: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        families[r["family"]].append(r)
    table = {name: figures(subset) for name, subset in sorted(families.items())}
    worst = min(table, key=lambda name: table[name]["own"])
    return table, figures(rows), worst, figures([r for r in rows if r["family"] != worst])


def _percent(value: float | None) -> str:
    return f"{value:>8.1f} %" if value is not None else f"{'—':>10}"


def _slope(value: float | None) -> str:
    return f"{value:>+14.2f}" if value is not None else f"{'—':>14}"


def lines(table: dict[str, dict], overall: dict, worst: str, without: dict) -> list[str]:
    out = [f"{'family':<20}{'predictions':>12}{'±10 % own':>12}{'±10 % refs':>12}"
           f"{'median err':>12}{'models sd':>11}{'truths sd':>11}{'rounds sd':>11}"
           f"{'anchor slope':>14}"]
    rows = [*table.items(), ("all", overall), (f"all but {worst}", without)]
    for name, f in rows:
        out.append(f"{name:<20}{f['predictions']:>12}{_percent(f['own']):>12}"
                   f"{_percent(f['references']):>12}{f['median_error']:>+10.1f} %"
                   f"{f['models_sd']:>9.1f} %{_percent(f['truths_sd']):>11}"
                   f"{_percent(f['rounds_sd']):>11}{_slope(f['anchor_slope'])}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path,
                        help="measured dataset folders, one truth each")
    parser.add_argument("--predictor", default=None,
                        help="predictor name or package path (default: this machine's default)")
    parser.add_argument("--version", default=None, help="predictor version (default: its default)")
    args = parser.parse_args()

    from edgemeter import load_predictor
    from edgemeter.dataset.evaluate import evaluate, measured_records
    from edgemeter.errors import EdgemeterError

    rows: list[dict] = []
    try:
        predictor = load_predictor(args.predictor, args.version)
        settings = predictor.package.extra.get("backend_settings")
        for folder in args.datasets:
            result = evaluate(predictor, folder)  # first: it says what is wrong with a folder
            records, _ = measured_records(folder, predictor.backend, None, settings)
            rounds = {r["file"]: r.get("round_medians_ms") or [] for r in records}
            rows += truth_rows(result, rounds)
    except EdgemeterError as error:
        parser.exit(1, f"error: {error}\n")
    anchors = sorted({r["anchor"] for r in rows if r["anchor"]})
    span = f"; the truths' anchors span {anchors[-1] / anchors[0]:.2f}x" if anchors else ""
    print(f"predictor {predictor.label}: {len(args.datasets)} truths, {len(rows)} predictions "
          f"of {len({r['model'] for r in rows})} models{span}")
    print("\n".join(lines(*family_table(rows))))


if __name__ == "__main__":
    main()
