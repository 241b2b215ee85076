"""``edgemeter workspace``, ``edgemeter fusion-test`` and ``edgemeter build``: thin shells over
edgemeter.builder."""
from __future__ import annotations

import click


@click.group()
def workspace() -> None:
    """Create a predictor-builder workspace (commented YAML configs)."""


@workspace.command("create")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--backend", "-b", required=True, help="Backend to build for (edgemeter backends).")
@click.option("--threads", "-t", type=int, default=1, show_default=True,
              help="Threads the runtime may use.")
@click.option("--force", is_flag=True, help="Overwrite the configs of an existing workspace.")
def create(directory: str, backend: str, threads: int, force: bool) -> None:
    """Write DIRECTORY/configs/{backend,fusion_test,build}.yaml for BACKEND."""
    from edgemeter.builder.workspace import CONFIG_DIR, FILES, create_workspace

    ws = create_workspace(directory, backend, overwrite=force, threads=threads)
    for file in FILES:
        click.echo(f"wrote {ws.path / CONFIG_DIR / file}")
    click.echo(f"edit them, then: edgemeter build --workspace {ws.path}")


def _workspace_option(fn):
    return click.option("--workspace", "-w", "directory", required=True,
                        type=click.Path(file_okay=False), help="Workspace folder.")(fn)


@click.command("fusion-test")
@_workspace_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def fusion_test(directory: str, quiet: bool) -> None:
    """Find which op pairs the workspace's backend fuses; writes results/fusion_rules.yaml."""
    from edgemeter.builder.collect import Collector
    from edgemeter.builder.fusion_test import run_fusion_test
    from edgemeter.builder.workspace import load_workspace
    from edgemeter.store import Store

    ws = load_workspace(directory)
    with Store(ws.path) as store:
        collector = Collector(store, ws.backend["backend"], ws.backend_config(), ws.protocol())
        result = run_fusion_test(ws, collector, log=click.echo, progress=not quiet)
    fused = [f"{p.first}→{p.second}" for p in result.pairs if p.fused]
    unclear = [f"{p.first}→{p.second}" for p in result.pairs if not p.clear and p.graph is None]
    click.echo(f"fused pairs ({len(fused)} of {len(result.pairs)}): {', '.join(fused) or 'none'}")
    click.echo(f"multiple consumers: {result.multiple_consumers}")
    if unclear:
        click.echo(f"not clear after the repeats (decided by the mean): {', '.join(unclear)}")
    click.echo(f"{len(result.disagreements())} disagreements between timing and graph; "
               f"rules: {result.path}")


@click.command()
@_workspace_option
@click.option("--budget", help="Wall-time budget (90s, 30m, 1h); default: build.yaml's.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--retrain", is_flag=True,
              help="Train again on the measurements the workspace holds, measuring nothing new "
                   "(after changing statistic, algo or trees).")
def build(directory: str, budget: str | None, quiet: bool, retrain: bool) -> None:
    """Build a latency predictor package for the workspace's backend (resumable)."""
    from edgemeter.builder.build import build as run_build
    from edgemeter.builder.workspace import parse_duration
    from edgemeter.errors import ConfigError

    try:
        budget_s = parse_duration(budget) if budget is not None else None
    except ValueError as exc:
        raise ConfigError(f"--budget {budget!r}: expected {exc}") from None
    report = run_build(directory, budget_s, progress=not quiet, log=click.echo,
                       retrain=retrain)
    click.echo(report.format())
    if report.stopped:
        raise SystemExit(1)
