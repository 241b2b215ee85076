"""``edgemeter dataset generate|measure`` and ``edgemeter evaluate``: the benchmark dataset and
how a predictor scores on it. Kept out of ``predict``'s module, which must stay light: these
import the measurement backends."""
from __future__ import annotations

from pathlib import Path

import click

from edgemeter.backends.protocol import REFERENCE, REFERENCE_SEM
from edgemeter.cli.predictor_commands import VERSION_OPTION


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
                   "variants (--per-family, --seed and --reference do not apply).")
@click.option("--reference", default=0, show_default=True, type=click.IntRange(min=0),
              help="More variants per family, marked as reference models: measured with the "
                   "others, not scored, they set the level 'evaluate' also reports.")
def generate(out: Path, per_family: int, seed: int, families: tuple[str, ...],
             canonical: bool, reference: int) -> None:
    """Write random variants of the zoo's families as ONNX files plus index.jsonl."""
    from edgemeter.dataset import generate as run

    names = [f for item in families for f in item.split(",") if f] or None
    entries = run(out, per_family=per_family, seed=seed, families=names, progress=True,
                  canonical=canonical, reference=reference)
    marked = sum(bool(e.get("reference")) for e in entries)
    click.echo(f"{len(entries)} models in {out / 'index.jsonl'}"
               + (f" ({marked} of them reference models)" if marked else ""))


@dataset.command("measure")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--backend", required=True, help="Backend to measure on (edgemeter backends).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--rounds", default=REFERENCE["rounds"], show_default=True,
              type=click.IntRange(min=1),
              help="Fresh processes per model; the result is the median of their medians "
                   "(interleaved, 9 make a truth that repeats; 3 for a quick look).")
@click.option("--max-rounds", default=None, type=click.IntRange(min=1),
              help="Add rounds past --rounds, up to this many, while the median's standard "
                   f"error is above {REFERENCE_SEM:.0%} (the models whose processes spread "
                   "most get them; default: none).")
@click.option("--repeats", default=REFERENCE["repeats"], show_default=True,
              type=click.IntRange(min=1), help="Timed runs per round.")
@click.option("--interleave/--consecutive", default=True, show_default=True,
              help="Round r of every model before round r+1 of any (steadier on a shared "
                   "host), or each model's rounds back to back.")
def measure_cmd(folder: Path, backend: str, threads: int, rounds: int, max_rounds: int | None,
                repeats: int, interleave: bool) -> None:
    """Measure every model of a dataset (resumable: measured models are skipped)."""
    from edgemeter.dataset import measure as run

    done = run(folder, backend, threads=threads, rounds=rounds, max_rounds=max_rounds,
               repeats=repeats, interleave=interleave, progress=True)
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
    from edgemeter.dataset.evaluate import bands_line, leveled_line, relative_line
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
    if result.leveled:
        click.echo(leveled_line(result.leveled))
    click.echo(f"report: {out / 'report.md'}")
