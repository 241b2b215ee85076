"""``edgemeter pareto``: thin shell over edgemeter.pareto."""
from __future__ import annotations

from pathlib import Path

import click

DEFAULT_BACKENDS = "onnxruntime-cpu,openvino-cpu-f32,openvino-cpu-bf16"
# Brute force beyond this many assignments is surely a mistake (hours of measurements).
BRUTE_LIMIT = 100_000


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--backends", "-b", default=DEFAULT_BACKENDS, show_default=True,
              help="Comma-separated backends to assign operators to.")
@click.option("--mode", type=click.Choice(["name", "index"]), default="name", show_default=True,
              help="name: one choice per op kind; index: per (op kind, output size).")
@click.option("--algo", type=click.Choice(["brute", "random", "nsga2", "local"]),
              default="brute", show_default=True, help="Search algorithm.")
@click.option("--budget", type=int,
              help="Distinct assignments to measure in all (resumed ones count).")
@click.option("--offline", is_flag=True,
              help="Predict the front with latency predictors, measure only it.")
@click.option("--predictor", "-p", "predictors", multiple=True, metavar="BACKEND=NAME|PATH",
              help="With --offline: the predictor (name or package) of a backend, or "
                   "BACKEND=profiled for one profiled run (repeatable; default: the installed "
                   "predictor of each backend, else a profiled run).")
@click.option("--dump", required=True, type=click.Path(dir_okay=False),
              help="Output JSON, also the checkpoint that --resume continues from.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the front as a PNG.")
@click.option("--resume", is_flag=True, help="Continue from the solutions already in --dump.")
@click.option("--checkpoint-every", type=int, default=10, show_default=True,
              help="Save --dump every N measurements.")
@click.option("--threads", "-t", type=int, default=1, show_default=True)
@click.option("--rounds", type=int, default=1, show_default=True,
              help="Fresh-process rounds per assignment.")
@click.option("--repeats", type=int, default=20, show_default=True,
              help="Timed runs per round.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False),
              help="Partition models and plans (default: next to --dump).")
def pareto(model: str, backends: str, mode: str, algo: str, budget: int | None, offline: bool,
           predictors: tuple[str, ...], dump: str, plot: str | None, resume: bool,
           checkpoint_every: int, threads: int, rounds: int, repeats: int, seed: int,
           workdir: str | None) -> None:
    """Search assignments of MODEL's operators to BACKENDS for the Pareto front of latency
    against peak memory, measured on the real runtimes. Ctrl-C saves what is measured; rerun
    with --resume to go on."""
    from tqdm import tqdm

    from edgemeter.backends import Protocol
    from edgemeter.errors import ConfigError
    from edgemeter.pareto.executor import PartitionedEvaluator
    from edgemeter.pareto.partition import prepare_model
    from edgemeter.pareto.search import Study, run_search
    from edgemeter.pareto.space import build_space

    names = [b.strip() for b in backends.split(",") if b.strip()]
    chosen = parse_predictors(predictors)
    if chosen and not offline:
        raise ConfigError("--predictor is used by --offline only; add --offline")
    protocol = Protocol(warmup=max(2, repeats // 4), repeats=repeats, rounds=rounds,
                        max_rounds=rounds)
    if offline:
        from edgemeter.pareto.offline import PredictorLatency, find_predictors, profiled_predictor

        found, warnings = find_predictors(names, threads, chosen)
        for line in warnings:
            click.echo(f"edgemeter: warning: {line}", err=True)
        predict = PredictorLatency(found, profiled_predictor(model, protocol, threads))
    prepared = prepare_model(model)
    space = build_space(prepared, names, mode)
    click.echo(f"{Path(model).name}: {space.describe()}", err=True)
    if algo == "brute" and not offline and budget is None and space.size > BRUTE_LIMIT:
        raise ConfigError(f"{space.size:,} assignments are too many to brute-force: use "
                          "--algo random|nsga2|local with --budget, or --offline")
    dump_path = Path(dump)
    evaluator = PartitionedEvaluator(
        model, space, workdir or dump_path.with_name(dump_path.stem + ".work"),
        protocol=protocol, threads=threads)
    total = space.size if budget is None else min(budget, space.size)
    bar = tqdm(total=total if not offline else None, unit="assignment", dynamic_ncols=True)

    def progress(solution) -> None:
        bar.update()
        bar.set_postfix(front=len(study.archive), infeasible=sum(
            not s.feasible for s in study.solutions.values()))

    study = Study(space, evaluator, dump=dump_path, checkpoint_every=checkpoint_every)
    if resume and dump_path.exists():
        click.echo(f"resumed {study.resume()} solutions from {dump_path}", err=True)
    study.on_solution = progress
    try:
        if offline:
            from edgemeter.pareto.offline import offline_search

            result = offline_search(prepared, study, predict, budget, seed)
            study.extra["offline"] = {**result.summary(), "latency": predict.describe(names)}
        else:
            run_search(study, algo, budget, seed)
    except KeyboardInterrupt:
        bar.close()
        study.save()
        click.echo(f"interrupted: {study.measured} solutions saved to {dump_path}; rerun with "
                   "--resume to continue", err=True)
        raise
    bar.close()
    study.save()
    _report(study)
    if plot:
        from edgemeter.pareto.plot import plot_front
        plot_front(study.to_dict(), plot, title=f"{Path(model).name}: {space.describe()}")
        click.echo(f"front plot: {plot}", err=True)


def parse_predictors(values: tuple[str, ...]) -> dict[str, str]:
    """``("BACKEND=NAME|PATH", ...)`` -> {backend: name or path}."""
    from edgemeter.errors import ConfigError

    chosen: dict[str, str] = {}
    for value in values:
        backend, sep, name = (part.strip() for part in value.partition("="))
        if not (sep and backend and name):
            raise ConfigError(f"bad --predictor {value!r}: expected BACKEND=NAME|PATH "
                              "(e.g. openvino-cpu-f32=openvino-cpu-f32-1t)")
        if backend in chosen:
            raise ConfigError(f"--predictor gives backend {backend} twice")
        chosen[backend] = name
    return chosen


def _report(study) -> None:
    data = study.to_dict()
    click.echo(f"measured {study.measured} of {study.space.size:,} assignments "
               f"({len(data['infeasible'])} infeasible); front of {len(data['front'])}:")
    by_id = {s["id"]: s for s in data["solutions"]}
    for ident in data["front"]:
        s = by_id[ident]
        config = ", ".join(f"{k}={v}" for k, v in data["configs"][str(ident)].items())
        click.echo(f"  #{ident}: {s['exec_time']:.3f} ms  {s['max_rss'] / 1024:.1f} MiB  "
                   f"{s['partitions']} partition(s)  [{config}]")
    if "offline" in data:
        o = data["offline"]
        for backend, latency in o["latency"].items():
            anchor = o["anchors"][backend]
            coverage = (f", kernel coverage {latency['coverage']['kernels']:.0%}"
                        if "coverage" in latency else "")
            click.echo(f"offline: {backend} predicted by {latency['source']}{coverage}; "
                       f"all on it: predicted {anchor['predicted_ms']:.3f} ms, measured "
                       f"{anchor['measured_ms']:.3f} ms")
        click.echo(f"offline: scored {o['scored']:,} assignments by prediction, measured "
                   f"{o['measured']} ({o['saved']:,} saved); hypervolume of the measured over the "
                   f"predicted front: {o['hypervolume_ratio']:.3f}")
