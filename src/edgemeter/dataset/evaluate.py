"""``evaluate``: a predictor against a measured dataset, per model, per family and overall.

Figures are those of :mod:`edgemeter.predictor.metrics` (share within ±5% and ±10% of the
measured median, RMSPE). The report folder holds ``results.csv`` (one row per model),
``summary.json``, ``scatter.png`` and ``report.md``.

This machine's speed drifts (up to 1.7x within half an hour), so a dataset measured at another
moment than the predictor's build is off by the drift alone. When both carry the speed anchor
(:mod:`edgemeter.backends.anchor`), the truth each prediction is compared with is the measured
median put at the predictor's machine speed, each round by the anchor timed in it and the
model's own slope on the anchor (:meth:`~edgemeter.predictor.model.Predictor.at_own_speed`);
``overall_as_measured`` keeps the raw comparison.

The anchor is small enough to run from the core's own caches, and the host's neighbours slow
what does not: the same 90 models measured at 13:41 and, on the same Xeon VM, at 04:58 the next
morning ran 8.4 % slower in median while the anchor beside them ran 0.3 % faster; in anchor
units the two truths agreed within ±10 % for 61 % of the models, for 99 % once their median
ratio was divided out (bench/bench_truth_hours.py, 2026-12-05). A dataset generated with
reference models (``generate(..., reference=1)``) measures a few more zoo variants in the same
passes: they are not scored, and the median of their truth over their predicted latency, the
*level*, puts every prediction at the speed the machine ran them at (``leveled``);
``leveled_as_measured`` does the same with the measured latencies, anchor aside, as ``edgemeter
predict --calibrate-models`` would (:mod:`edgemeter.predictor.calibration`).
"""
from __future__ import annotations

import csv
import json
import platform
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import Any

from edgemeter.backends.anchor import paired_rounds
from edgemeter.backends.protocol import paired_anchor_ms
from edgemeter.dataset.generate import read_index
from edgemeter.dataset.measure import measurements_file, read_measurements
from edgemeter.errors import ConfigError


@dataclass
class Evaluation:
    predictor: str
    backend: str
    dataset: str
    config: dict[str, Any]
    rows: list[dict[str, Any]]                  # one per scored model, see results.csv
    overall: dict[str, float]                   # metrics.accuracy of all models
    families: dict[str, dict[str, float]]       # the same per family
    bands: dict[str, dict[str, float]]          # the same per band of truth (latency_band)
    anchored: bool = False                      # truth put at the predictor's machine speed
    statistic: str = "median"                   # the measured latency compared: median or min
    overall_as_measured: dict[str, float] = field(default_factory=dict)  # raw medians
    relative: dict[str, float] = field(default_factory=dict)  # metrics.relative_accuracy
    warnings: dict[str, int] = field(default_factory=dict)  # distinct warning -> models
    files: dict[str, str] = field(default_factory=dict)     # what was written, by kind
    # With reference models: metrics.level of their truth over predicted latency, and the
    # figures of the scored models with every prediction times that level (empty without
    # references).
    leveled: dict[str, Any] = field(default_factory=dict)
    leveled_as_measured: dict[str, Any] = field(default_factory=dict)  # the same, raw medians
    references: list[dict[str, Any]] = field(default_factory=list)  # rows of reference models

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in ("rows", "references")}


# Upper edges (ms) of the latency bands the evaluation reports apart: on the Zen 4 truths of
# 2026-12-01 the misses of predictor 1.7 were in the small models (ten truths: 70 % within ±10 %
# below 1 ms, 87 % at 1-2 ms, 99.6 % at 8-16 ms).
BAND_EDGES_MS = (1.0, 2.0, 4.0, 8.0, 16.0)


def latency_band(ms: float) -> str:
    """The band of :data:`BAND_EDGES_MS` a latency falls in, as a label ("2-4 ms")."""
    lower = 0.0
    for upper in BAND_EDGES_MS:
        if ms < upper:
            return f"< {upper:g} ms" if lower == 0 else f"{lower:g}-{upper:g} ms"
        lower = upper
    return f">= {lower:g} ms"


def measured_records(folder: Path, backend: str, threads: int | None,
                     settings: dict[str, Any] | None = None,
                     statistic: str = "median") -> tuple[list[dict], dict]:
    """Successful measurements of one backend setting: ``threads`` if given, else the
    predictor's own ``settings`` if it recorded them; several settings left need ``threads``."""
    key = f"{statistic}_ms"
    records = [r for r in read_measurements(folder, backend) if r["error"] is None]
    if threads is not None:
        records = [r for r in records if r["config"].get("threads") == threads]
    elif settings and any(r["config"] == settings for r in records):
        records = [r for r in records if r["config"] == settings]
    lacking = sum(not r.get(key) for r in records)
    if lacking:  # judging the others alone would hide models
        raise ConfigError(f"the predictor was trained on {statistic} latencies, which "
                          f"{lacking} of {len(records)} lines of "
                          f"{measurements_file(folder, backend).name} lack (an older edgemeter "
                          f"wrote them): run 'edgemeter dataset measure {folder} --backend "
                          f"{backend}' to add them from the stored measurements")
    if not records:
        raise ConfigError(f"no successful measurements for backend {backend}"
                          f"{f' with {threads} threads' if threads else ''} in {folder} "
                          f"(run 'edgemeter dataset measure {folder} --backend {backend}'); "
                          f"looked in {measurements_file(folder, backend).name}")
    configs = {json.dumps(r["config"], sort_keys=True) for r in records}
    if len(configs) > 1:
        raise ConfigError(f"{measurements_file(folder, backend).name} holds several settings "
                          f"({'; '.join(sorted(configs))}): choose one with --threads")
    return records, records[0]["config"]


def first_rounds(record: dict[str, Any], rounds: int, statistic: str) -> dict[str, Any]:
    """A measurement line as if its measurement had stopped after ``rounds`` rounds."""
    if statistic != "median":
        raise ConfigError(f"a {statistic} latency cannot be cut to its first rounds (the "
                          "samples are not in the measurement lines)")
    medians = record["round_medians_ms"][:rounds]
    anchors = (record.get("anchor_round_medians_ms") or [])[:rounds]
    return {**record, "round_medians_ms": medians, "anchor_round_medians_ms": anchors,
            "rounds": len(medians), "median_ms": statistics.median(medians),
            "anchor_ms": paired_anchor_ms(medians, anchors) if anchors else record["anchor_ms"]}


def evaluate(predictor: Any, folder: str | Path, backend: str | None = None,
             threads: int | None = None, out: str | Path | None = None,
             rounds: int | None = None, reference_rounds: int | None = None) -> Evaluation:
    """Predict every measured model of the dataset and compare; with ``out``, write the
    report there. ``predictor`` is a :class:`~edgemeter.predictor.model.Predictor`, or a name
    or package path for :func:`~edgemeter.predictor.model.load_predictor`. Reference models
    (marked in the index) are not scored: they set the level of :attr:`Evaluation.leveled`.
    ``rounds``: judge on each measurement's first ``rounds`` rounds only (a truth measured
    with ``max_rounds``, as the fixed-round truth it began as). ``reference_rounds``: the
    reference models' first rounds only, the scored models' kept (a level measured as ``predict
    --calibrate-models`` measures it, in fewer rounds than the truth)."""
    from edgemeter.predictor.metrics import accuracy, level, relative_accuracy
    from edgemeter.predictor.model import Predictor, load_predictor

    if not isinstance(predictor, Predictor):
        predictor = load_predictor(predictor)
    folder = Path(folder)
    backend = backend or predictor.backend
    index = {e["file"]: e for e in read_index(folder)}
    # The predictor was trained on one statistic of its measurements; the truth is the same.
    statistic = predictor.package.extra.get("statistic", "median")
    key = f"{statistic}_ms"
    records, config = measured_records(folder, backend, threads,
                                       predictor.package.extra.get("backend_settings"), statistic)
    records = [r for r in records if r["file"] in index]

    def cut(record: dict[str, Any]) -> dict[str, Any]:
        reference = index[record["file"]].get("reference", False)
        keep = reference_rounds if reference and reference_rounds is not None else rounds
        return record if keep is None else first_rounds(record, keep, statistic)

    records = [cut(r) for r in records]
    predictions = predictor.predict_batch([folder / r["file"] for r in records])
    anchored = predictor.anchor_ms is not None and all(r.get("anchor_ms") for r in records)
    rows, warnings = [], Counter()
    for record, p in zip(records, predictions):
        entry = index[record["file"]]
        truth = (predictor.at_own_speed(record[key], record["anchor_ms"], entry["flops"],
                                        paired_rounds(statistic, record.get("round_medians_ms"),
                                                      record.get("anchor_round_medians_ms")))
                 if anchored else record[key])
        rows.append({"file": record["file"], "family": entry["family"],
                     "flops": entry["flops"], "measured_ms": record[key],
                     "anchor_ms": record.get("anchor_ms"), "truth_ms": truth,
                     "predicted_ms": p.latency_ms,
                     "error_pct": 100 * (p.latency_ms - truth) / truth,
                     "coverage_kernels": p.coverage["kernels"],
                     "coverage_flops": p.coverage["flops"], "kernels": len(p.kernels),
                     "reference": bool(entry.get("reference", False))})
        warnings.update(set(p.warnings))
    references = [r for r in rows if r["reference"]]
    rows = [r for r in rows if not r["reference"]]
    if not rows:
        raise ConfigError(f"{folder} has reference models only: nothing to score")

    def figures(subset: list[dict[str, Any]], truth: str = "truth_ms") -> dict[str, float]:
        return accuracy([r[truth] for r in subset], [r["predicted_ms"] for r in subset])

    def at_level(truth: str) -> dict[str, Any]:
        """The references' level of ``truth`` and the scored models' figures at it."""
        found = level([r[truth] / r["predicted_ms"] for r in references])
        return {**found, **accuracy([r[truth] for r in rows],
                                    [found["median"] * r["predicted_ms"] for r in rows])}

    def grouped(group: Callable[[dict], str], order: str) -> dict[str, dict[str, float]]:
        """Figures per group of rows, the groups in the order of their rows' ``order`` key."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in sorted(rows, key=itemgetter(order)):
            groups.setdefault(group(row), []).append(row)
        return {name: figures(subset) for name, subset in groups.items()}

    result = Evaluation(predictor.label, backend, str(folder), config, rows, figures(rows),
                        grouped(itemgetter("family"), "family"),
                        grouped(lambda r: latency_band(r["truth_ms"]), "truth_ms"),
                        anchored, statistic, figures(rows, "measured_ms"),
                        relative_accuracy([r["truth_ms"] for r in rows],
                                          [r["predicted_ms"] for r in rows]),
                        dict(warnings.most_common()))
    if references:
        result.references = references
        result.leveled = at_level("truth_ms")
        # Without the anchor: what 'predict --calibrate-models' gives a user.
        result.leveled_as_measured = at_level("measured_ms")
    if out is not None:
        write_report(result, Path(out))
    return result


def write_report(result: Evaluation, out: Path) -> None:
    from edgemeter.dataset.plot import scatter

    out.mkdir(parents=True, exist_ok=True)
    result.files = {"csv": str(out / "results.csv"), "summary": str(out / "summary.json"),
                    "plot": str(out / "scatter.png"), "report": str(out / "report.md")}
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(result.rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(result.rows + result.references)
    (out / "summary.json").write_text(json.dumps(result.summary(), indent=1) + "\n")
    scatter(result.rows, out / "scatter.png",
            title=f"{result.predictor} vs {result.backend} "
                  f"({result.overall['within_10']:.1f}% within ±10%)")
    (out / "report.md").write_text(markdown(result))


def markdown(result: Evaluation) -> str:
    def line(name: str, f: dict[str, float]) -> str:
        return (f"| {name} | {f['n']} | {f['within_5']:.1f} | {f['within_10']:.1f} | "
                f"{f['rmspe']:.1f} |")

    def head(what: str) -> list[str]:
        return [f"| {what} | models | within ±5% (%) | within ±10% (%) | RMSPE (%) |",
                "|---|---:|---:|---:|---:|"]

    worst = sorted(result.rows, key=lambda r: -abs(r["error_pct"]))[:10]
    coverage = sum(r["coverage_flops"] for r in result.rows) / len(result.rows)
    text = [
        f"# {result.predictor} on {Path(result.dataset).name}", "",
        f"- backend: {result.backend}, settings {json.dumps(result.config, sort_keys=True)}",
        f"- dataset: `{result.dataset}`, {len(result.rows)} measured models"
        + (f" and {len(result.references)} reference models" if result.references else ""),
        ("- truth: the median of each model's round medians (fresh processes)"
         if result.statistic == "median" else
         "- truth: each model's fastest timed run (the predictor was trained on fastest runs)")
        + (", put at the predictor's machine speed by the speed anchor timed beside it "
           f"(as measured: {result.overall_as_measured['within_10']:.1f}% within ±10%, "
           f"RMSPE {result.overall_as_measured['rmspe']:.1f}%)" if result.anchored else ""),
        f"- machine: {platform.machine()} {platform.system()}, evaluated "
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- mean FLOPs coverage by trained regressors: {100 * coverage:.1f}%",
        f"- {relative_line(result.relative)}",
        *([f"- {leveled_line(result.leveled)}"] if result.leveled else []), "",
        "## Accuracy", "", *head("family"), line("**all**", result.overall),
        *(line(f, figures) for f, figures in result.families.items()), "",
        "By the truth's latency (where the misses gather):", "",
        *head("latency"), *(line(band, figures) for band, figures in result.bands.items()), "",
        "![measured vs predicted](scatter.png)", "",
        "## Largest errors", "",
        "| model | measured ms | truth ms | predicted ms | error (%) |", "|---|---:|---:|---:|---:|",
        *(f"| {r['file']} | {r['measured_ms']:.3f} | {r['truth_ms']:.3f} | "
          f"{r['predicted_ms']:.3f} | {r['error_pct']:+.1f} |" for r in worst), "",
    ]
    if result.warnings:
        text += ["## Warnings", "", *(f"- {n} models: {w}" for w, n in result.warnings.items()),
                 ""]
    return "\n".join(text)


def bands_line(bands: dict[str, dict[str, float]]) -> str:
    """Within ±10 % per latency band, in one sentence."""
    return "within ±10% by latency: " + ", ".join(
        f"{band} {f['within_10']:.1f}% ({f['n']})" for band, f in bands.items())


def relative_line(relative: dict[str, float]) -> str:
    """The figures blind to a factor shared by every model, in one sentence."""
    tau = relative["kendall_tau"]
    return (f"relative to each other: predictions are {relative['scale']:.3f}x the truth in "
            f"median; divided by that, {relative['within_5']:.1f}% within ±5%, "
            f"{relative['within_10']:.1f}% within ±10%; rank correlation (Kendall's tau) "
            + (f"{tau:.3f}" if tau is not None else "needs two models"))


def leveled_line(leveled: dict[str, Any]) -> str:
    """The figures at the level the reference models set, in one sentence."""
    return (f"at the level of {leveled['models']} reference models (their truth "
            f"{leveled['median']:.3f}x their prediction in median, ±{100 * leveled['error']:.1f}%,"
            f" {100 * leveled['spread']:.1f}% apart: {leveled['expected_within_10']:.0f}% "
            f"expected within ±10%): {leveled['within_5']:.1f}% within ±5%, "
            f"{leveled['within_10']:.1f}% within ±10%, RMSPE {leveled['rmspe']:.1f}%")
