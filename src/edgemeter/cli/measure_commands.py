"""``edgemeter measure`` and ``edgemeter backends``: thin shells over edgemeter.backends."""
from __future__ import annotations

import json
import sys
from typing import Any

import click


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any] | None:
    import yaml

    from edgemeter.errors import ConfigError

    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"bad --option '{pair}': expected NAME=VALUE")
        options[name.strip()] = yaml.safe_load(value)  # "2" -> 2, "true" -> True
    return options or None


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--backend", "-b", help="Backend name (see `edgemeter backends list`).")
@click.option("--threads", "-t", type=int, help="Threads the runtime may use (default 1).")
@click.option("--option", "-o", "options", multiple=True, metavar="NAME=VALUE",
              help="Backend option, repeatable.")
@click.option("--rounds", type=int, help="Rounds always run, each in a fresh process.")
@click.option("--max-rounds", type=int, help="Most rounds while the spread is over target.")
@click.option("--target-cv", type=float, help="Spread target: CV of the round medians.")
@click.option("--target-sem", type=float,
              help="Instead: the median's relative standard error (0.02 = 2 %).")
@click.option("--repeats", type=int, help="Timed runs per round.")
@click.option("--warmup", type=int, help="Untimed runs per round.")
@click.option("--timeout", "timeout_s", type=float, help="Seconds before a round is killed.")
@click.option("--interleave", is_flag=True, default=None,
              help="Round r of every model before round r+1 of any (steadier on a shared host).")
@click.option("--workspace", "-w", type=click.Path(file_okay=False),
              help="Folder whose store keeps results; measured models are skipped on rerun.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML config (default: WORKSPACE/backend.yaml if present).")
@click.option("--profile", is_flag=True, help="Also collect per-node times from the profiler.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              help="table, or JSON Lines (one object per model).")
def measure(models: tuple[str, ...], backend: str | None, threads: int | None,
            options: tuple[str, ...], rounds: int | None, max_rounds: int | None,
            target_cv: float | None, target_sem: float | None, repeats: int | None,
            warmup: int | None, timeout_s: float | None, interleave: bool | None,
            workspace: str | None, config_file: str | None, profile: bool, fmt: str) -> None:
    """Measure the latency of MODELS on a real backend: median of fresh-process rounds ± spread.

    Exit code 1 when a measurement failed (the others are still measured and reported)."""
    from edgemeter.backends import measure_models
    from edgemeter.backends.config import MeasureConfig
    from edgemeter.store import Store

    flags = {"rounds": rounds, "max_rounds": max_rounds, "target_cv": target_cv,
             "target_sem": target_sem, "repeats": repeats, "warmup": warmup,
             "timeout_s": timeout_s, "interleave": interleave}
    protocol = {key: value for key, value in flags.items() if value is not None}
    config = MeasureConfig.resolve(config_file, workspace, backend=backend, threads=threads,
                                   options=_parse_options(options), protocol=protocol or None)
    store = Store(workspace) if workspace else None
    progress = iter(range(1, len(models) + 1))

    def report(m: Any, reused: bool) -> None:
        note = "from workspace" if reused else (f"{m.median_ms:.4g} ms" if m.ok else "FAILED")
        click.echo(f"[{next(progress)}/{len(models)}] {m.model}: {note}", err=True)
        click.echo(json.dumps(measurement_json(m)) if fmt == "json" else format_table(m))

    try:
        results = measure_models(models, config.backend, config.backend_config(),
                                 config.make_protocol(), profile=profile, store=store,
                                 on_result=report)
    finally:
        if store is not None:
            store.close()
    sys.exit(1 if any(not m.ok for m in results) else 0)


def measurement_json(m: Any) -> dict[str, Any]:
    from edgemeter.backends.kernel_times import measured_kernel_times

    times = measured_kernel_times(m)
    return {"model": m.model, "backend": m.backend, "config": m.config,
            "median_ms": m.median_ms, "min_ms": m.min_ms, "spread": m.spread, "stable": m.stable,
            "round_medians_ms": m.round_medians_ms, "samples": m.samples_ms, "env": m.env,
            "anchor_ms": m.anchor_ms, "others_cores": m.others_cores,
            "kernels": times.kernels if times else [],
            "unattributed_ms": times.unattributed_ms if times else None,
            "reattributed_ms": times.reattributed_ms if times else None,
            "node_times_ms": m.node_times_ms, "error": m.error}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


# Other processes using this many cores during a round make a measurement worth a warning.
BUSY_CORES = 0.5


def format_table(m: Any) -> str:
    if not m.ok:
        return f"{m.model}  {m.backend}  FAILED: {m.error}"
    s = m.spread
    lines = [f"{m.model}  {m.backend}  {m.median_ms:.4f} ms ± {s['iqr_ms']:.4f} (IQR)  "
             f"CV between rounds {_pct(s['cv_between'])}, within {_pct(s['cv_within'])}  "
             f"{len(m.round_medians_ms)} rounds x {len(m.samples_ms) // len(m.round_medians_ms)}"
             f"  {'stable' if m.stable else 'UNSTABLE'}  fastest {m.min_ms:.4f} ms"]
    if m.others_cores is not None and m.others_cores >= BUSY_CORES:
        lines.append(f"  warning: other processes kept {m.others_cores:.1f} cores busy while "
                     "this was measured; through shared caches and memory that slows larger "
                     "models (5-20 % seen here)")
    if m.node_times_ms:
        from edgemeter.backends.kernel_times import measured_kernel_times

        # Per edgemeter kernel where the model's graph and the backend's fusion rules are
        # known, per runtime node otherwise.
        times, total = measured_kernel_times(m), sum(m.node_times_ms.values())
        if times:
            head = "kernel"
            rows = [(f"{k['type']} {k['nodes'][0]}", k["latency_ms"]) for k in times.kernels]
            rows.append(("(unattributed: runtime-inserted nodes)", times.unattributed_ms))
        else:
            head, rows = "node", list(m.node_times_ms.items())
        width = max(len(name) for name, _ in rows)
        lines.append(f"  {head:<{width}}  {'ms':>9}  share")
        for name, ms in sorted(rows, key=lambda row: -row[1]):
            lines.append(f"  {name:<{width}}  {ms:>9.4f}  {100 * ms / total:5.1f}%")
        lines.append(f"  {'profiled sum':<{width}}  {total:>9.4f}")
        if times and times.reattributed_ms:
            lines.append(f"  (kernel times include {times.reattributed_ms:.4f} ms, "
                         f"{100 * times.reattributed_ms / total:.1f}%, of runtime-inserted nodes "
                         "charged to the kernel they feed)")
    elif m.profiled:
        lines.append("  (this backend exposes no per-node times)")
    return "\n".join(lines)


@click.group()
def backends() -> None:
    """List the backends and check that one works."""


@backends.command("list")
def list_command() -> None:
    """Built-in, registered and plug-in backends, and whether their runtime is installed."""
    from edgemeter.backends import list_backends

    infos = list_backends()
    width = max(len(i.name) for i in infos)
    for i in infos:
        state = "ok" if i.available else f"missing: pip install 'edgemeter[{i.extra}]'" \
            if i.extra else "broken"
        click.echo(f"{i.name:<{width}}  {i.source:<10}  {state:<10}  {i.description}")


@backends.command("connect")
@click.argument("name")
@click.option("--threads", "-t", type=int, default=1, show_default=True)
@click.option("--option", "-o", "options", multiple=True, metavar="NAME=VALUE")
def connect_command(name: str, threads: int, options: tuple[str, ...]) -> None:
    """Load backend NAME's runtime and print a hello with its environment."""
    from edgemeter.backends import get_backend

    backend = get_backend(name, threads=threads, **(_parse_options(options) or {}))
    click.echo(backend.test_connection())
    for key, value in backend.environment().items():
        click.echo(f"  {key}: {value}")
