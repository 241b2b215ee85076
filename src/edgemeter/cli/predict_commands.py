"""``edgemeter predict``.

Only click and the standard library at module level: ``predict`` must answer in well under a
second, so the predictor (numpy, onnx) is imported when the command runs, and nothing on its path
imports scikit-learn or torch.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

from edgemeter.cli import echo_table
from edgemeter.cli.predictor_commands import VERSION_OPTION

# Files a folder argument predicts; anything else inside is skipped and listed.
MODEL_SUFFIXES = (".onnx", ".tflite", ".json")
# Below this expected share within ±10 % (from the reference models' spread), --calibrate-models
# warns: 95 % is a spread of about 5 %, which references reached only in the host's worst hours
# on the Xeon VM of 2026-12-04/05 (see metrics.expected_within).
TRUSTED_WITHIN_10 = 95.0


def _expand(args: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Model paths as given (files) or found (folders, recursively), and skipped files."""
    models, skipped = [], []
    for arg in args:
        path = Path(arg)
        if not path.is_dir():
            models.append(arg)
            continue
        for found in sorted(p for p in path.rglob("*") if p.is_file()):
            (models if found.suffix.lower() in MODEL_SUFFIXES else skipped).append(str(found))
    return models, skipped


@click.command()
@click.argument("models", nargs=-1, required=True, metavar="MODEL|FOLDER...")
@click.option("--predictor", "-p", "name", metavar="NAME",
              help="Predictor name, or a package folder/.zip (default: the shipped default).")
@VERSION_OPTION
@click.option("--input-shape", "input_shape", multiple=True, metavar="[NAME=]DxDx...",
              help="Static shape of an input with dynamic dimensions (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
@click.option("--calibrate", is_flag=True,
              help="Time the speed anchor on this machine first (about a second; needs the "
                   "predictor's runtime) and predict at its speed now.")
@click.option("--calibrate-models", is_flag=True,
              help="Measure reference zoo models on this machine first (about 35 s; needs "
                   "the predictor's runtime and torch) and predict at the level they ran at: "
                   "unlike the anchor, they feel what other processes on the host do to "
                   "larger models, and how far apart they run says how far to trust a single "
                   "prediction now.")
@click.option("--calibrate-rounds", type=click.IntRange(min=1), metavar="N",
              help="With --calibrate-models: fresh processes per reference model (default 3; "
                   "9 measure the level as a benchmark truth does, in about 2.5 times as "
                   "long).")
def predict(models: tuple[str, ...], name: str | None, version: str | None,
            input_shape: tuple[str, ...], fmt: str, calibrate: bool,
            calibrate_models: bool, calibrate_rounds: int | None) -> None:
    """Predict the latency of models without running them.

    A FOLDER predicts every .onnx, .tflite and IR .json file inside it."""
    from edgemeter.errors import EdgemeterError
    from edgemeter.predictor.model import load_predictor

    if calibrate_rounds is not None and not calibrate_models:
        raise click.UsageError("--calibrate-rounds says how --calibrate-models measures: give "
                               "both")
    predictor = load_predictor(name, version)
    if calibrate:
        predictor = predictor.calibrated()
        for caveat in (predictor.anchor_caveat, predictor.speed_caveat):
            if caveat:
                click.echo(f"edgemeter: warning: {caveat}", err=True)
    if calibrate_models:
        rounds = {} if calibrate_rounds is None else {"rounds": calibrate_rounds}
        predictor = predictor.leveled(progress=fmt == "table", **rounds)
        found = predictor.reference_level
        click.echo(f"edgemeter: {found['models']} reference models ran {found['median']:.3f}x "
                   f"the predictions (±{100 * found['error']:.1f}%), {100 * found['spread']:.1f}% "
                   f"apart (sd): about {found['expected_within_10']:.0f}% of models within ±10% "
                   "of predictions at that level; predicting at it", err=True)
        if found["expected_within_10"] < TRUSTED_WITHIN_10:
            click.echo("edgemeter: warning: this machine moves models unevenly now; a single "
                       "model's prediction is less certain than usual", err=True)
    paths, skipped = _expand(models)
    if skipped:
        click.echo(f"edgemeter: skipped {len(skipped)} non-model file(s): {', '.join(skipped)}",
                   err=True)
    from_folder = set(paths) - set(models)
    detected, names, failed = [], [], []
    for path in paths:
        try:
            detected.append(predictor.detect(path, list(input_shape) or None))
            names.append(path)
        except EdgemeterError as exc:
            if path not in from_folder:
                raise  # a model named on the command line must work: one line, exit 2
            failed.append(f"{path}: {exc}")
    results = predictor.predict_detected(detected, names)
    _print_predictions(results, fmt)
    for line in failed:
        click.echo(f"edgemeter: could not predict {line}", err=True)
    if failed:
        sys.exit(1)


def _print_predictions(results: list, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([_json_row(p) for p in results], indent=1))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["model", "predictor", "latency_ms", "kernels", "coverage_kernels",
                         "coverage_flops", "warnings"])
        for p in results:
            writer.writerow([p.model, p.predictor, f"{p.latency_ms:.4f}", len(p.kernels),
                             f"{p.coverage['kernels']:.3f}", f"{p.coverage['flops']:.3f}",
                             " | ".join(p.warnings)])
    else:
        _print_table(results)


def _json_row(p) -> dict:
    return {"model": p.model, "predictor": p.predictor, "latency_ms": p.latency_ms,
            "kernels": [{"type": k["type"], "nodes": k["nodes"], "latency_ms": k["latency_ms"],
                         "covered": k["covered"]} for k in p.kernels],
            "overhead_ms": p.overhead_ms, "coverage": p.coverage, "warnings": p.warnings}


def _print_table(results: list) -> None:
    if not results:
        return
    click.echo(f"predictor: {results[0].predictor}")
    rows = [("MODEL", "LATENCY ms", "KERNELS", "COVERED (kernels / FLOPs)")]
    rows += [(p.model, f"{p.latency_ms:.3f}", str(len(p.kernels)),
              f"{p.coverage['kernels']:.0%} / {p.coverage['flops']:.0%}") for p in results]
    echo_table(rows)
    if len(results) == 1:  # one model: where its time goes, the slowest kernels first
        p = results[0]
        click.echo("")
        top = sorted(p.kernels, key=lambda k: -k["latency_ms"])[:10]
        # The first node names the kernel where the model defines it: what a user can act on.
        rows = [("KERNEL", "ms", "SHARE", "NODES", "")]
        rows += [(k["type"], f"{k['latency_ms']:.4f}", f"{k['latency_ms'] / p.latency_ms:.1%}",
                  k["nodes"][0] + (f" +{len(k['nodes']) - 1}" if len(k["nodes"]) > 1 else ""),
                  "" if k["covered"] else "fallback")
                 for k in top]
        echo_table(rows)
        rest = len(p.kernels) - len(top)
        click.echo(f"{rest} more kernels; " if rest > 0 else "", nl=False)
        click.echo(f"{p.overhead_ms:.4f} ms runtime overhead (per node and per model)")
    for p in results:
        for warning in p.warnings:
            click.echo(f"warning: {p.model}: {warning}", err=True)


# -- dataset ------------------------------------------------------------------------------------
