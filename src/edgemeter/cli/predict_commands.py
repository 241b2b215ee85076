"""``edgemeter predict``, ``edgemeter dataset generate|measure`` and ``edgemeter evaluate``.

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

from edgemeter.backends.protocol import REFERENCE
from edgemeter.cli.predictor_commands import VERSION_OPTION

# Files a folder argument predicts; anything else inside is skipped and listed.
MODEL_SUFFIXES = (".onnx", ".tflite", ".json")


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
def predict(models: tuple[str, ...], name: str | None, version: str | None,
            input_shape: tuple[str, ...], fmt: str, calibrate: bool) -> None:
    """Predict the latency of models without running them.

    A FOLDER predicts every .onnx, .tflite and IR .json file inside it."""
    from edgemeter.errors import EdgemeterError
    from edgemeter.predictor.model import load_predictor

    predictor = load_predictor(name, version)
    if calibrate:
        predictor = predictor.calibrated()
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
    _table(rows)
    if len(results) == 1:  # one model: where its time goes, the slowest kernels first
        p = results[0]
        click.echo("")
        top = sorted(p.kernels, key=lambda k: -k["latency_ms"])[:10]
        rows = [("KERNEL", "NODES", "ms", "SHARE", "")]
        rows += [(k["type"], str(len(k["nodes"])), f"{k['latency_ms']:.4f}",
                  f"{k['latency_ms'] / p.latency_ms:.1%}", "" if k["covered"] else "fallback")
                 for k in top]
        _table(rows)
        rest = len(p.kernels) - len(top)
        click.echo(f"{rest} more kernels; " if rest > 0 else "", nl=False)
        click.echo(f"{p.overhead_ms:.4f} ms runtime overhead (per node and per model)")
    for p in results:
        for warning in p.warnings:
            click.echo(f"warning: {p.model}: {warning}", err=True)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


# -- dataset ------------------------------------------------------------------------------------

@click.group()
def dataset() -> None:
    """Generate and measure a benchmark dataset of random zoo models."""


@dataset.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder (created; an existing one is completed, not redone).")
@click.option("--per-family", default=10, show_default=True, type=click.IntRange(min=1),
              help="Random variants per family.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the variants (use another seed for a held-out set).")
@click.option("--families", multiple=True, metavar="NAME",
              help="Families to include (repeatable or comma-separated; default: all).")
@click.option("--canonical", is_flag=True,
              help="Each family once at its published configuration instead of random "
                   "variants (--per-family and --seed do not apply).")
def generate(out: Path, per_family: int, seed: int, families: tuple[str, ...],
             canonical: bool) -> None:
    """Write random variants of the zoo's families as ONNX files plus index.jsonl."""
    from edgemeter.dataset import generate as run

    names = [f for item in families for f in item.split(",") if f] or None
    entries = run(out, per_family=per_family, seed=seed, families=names, progress=True,
                  canonical=canonical)
    click.echo(f"{len(entries)} models in {out / 'index.jsonl'}")


@dataset.command("measure")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--backend", required=True, help="Backend to measure on (edgemeter backends).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--rounds", default=REFERENCE["rounds"], show_default=True,
              type=click.IntRange(min=1),
              help="Fresh processes per model; the result is the median of their medians "
                   "(interleaved, 9 make a truth that repeats; 3 for a quick look).")
@click.option("--repeats", default=REFERENCE["repeats"], show_default=True,
              type=click.IntRange(min=1), help="Timed runs per round.")
@click.option("--interleave/--consecutive", default=True, show_default=True,
              help="Round r of every model before round r+1 of any (steadier on a shared "
                   "host), or each model's rounds back to back.")
def measure_cmd(folder: Path, backend: str, threads: int, rounds: int, repeats: int,
                interleave: bool) -> None:
    """Measure every model of a dataset (resumable: measured models are skipped)."""
    from edgemeter.dataset import measure as run

    done = run(folder, backend, threads=threads, rounds=rounds, repeats=repeats,
               interleave=interleave, progress=True)
    failed = [m for m in done if not m.ok]
    click.echo(f"{len(done) - len(failed)} measured, {len(failed)} failed: "
               f"{folder / f'measurements-{backend}.jsonl'}")
    for m in failed:
        click.echo(f"  failed: {m.model}: {m.error}", err=True)


@click.command()
@click.option("--predictor", "-p", "name", metavar="NAME",
              help="Predictor name or package path (default: the shipped default).")
@VERSION_OPTION
@click.option("--dataset", "folder", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--backend", help="Measurements to compare with (default: the predictor's backend).")
@click.option("--threads", type=click.IntRange(min=1),
              help="Use measurements taken with this many threads (needed if several).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Report folder (default: DATASET/report-<predictor>).")
def evaluate(name: str | None, version: str | None, folder: Path, backend: str | None,
             threads: int | None, out: Path | None) -> None:
    """Compare a predictor with a measured dataset: ±5/±10% shares, RMSPE, plot, report."""
    from edgemeter.dataset import evaluate as run
    from edgemeter.dataset.evaluate import bands_line, relative_line
    from edgemeter.predictor.model import load_predictor

    predictor = load_predictor(name, version)
    out = out or folder / f"report-{predictor.name}-{predictor.version}"
    result = run(predictor, folder, backend=backend, threads=threads, out=out)
    overall = result.overall
    click.echo(f"{predictor.label} on {overall['n']} models of {folder}: "
               f"{overall['within_5']:.1f}% within ±5%, {overall['within_10']:.1f}% within ±10%, "
               f"RMSPE {overall['rmspe']:.1f}%"
               + (" (truth at the predictor's machine speed, by the speed anchor)"
                  if result.anchored else ""))
    if result.anchored:
        raw = result.overall_as_measured
        click.echo(f"as measured, without the anchor: {raw['within_5']:.1f}% within ±5%, "
                   f"{raw['within_10']:.1f}% within ±10%, RMSPE {raw['rmspe']:.1f}%")
    click.echo(bands_line(result.bands))
    click.echo(relative_line(result.relative))
    click.echo(f"report: {out / 'report.md'}")
