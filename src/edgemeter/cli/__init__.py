"""The ``edgemeter`` command: a thin shell over the library.

Subcommands live in their own modules and are imported only when invoked, so ``edgemeter --help``
never pays for onnx, torch or a runtime.
"""
from __future__ import annotations

import importlib
import sys

import click

from edgemeter import __version__
from edgemeter.errors import EdgemeterError

# name -> ("module:attribute" of a click command, one-line help). The module is imported only
# when the command runs; the help line here keeps the top-level --help free of imports.
COMMANDS = {
    "predict": ("edgemeter.cli.predict_commands:predict",
                "Predict a model's latency without running it (per-kernel breakdown)."),
    "dataset": ("edgemeter.cli.dataset_commands:dataset",
                "Generate and measure a benchmark dataset of random zoo models."),
    "evaluate": ("edgemeter.cli.dataset_commands:evaluate",
                 "Compare a predictor with measured models: ±5/±10%, RMSPE, plot, report."),
    "backends": ("edgemeter.cli.measure_commands:backends",
                 "List the measurement backends and check that one works."),
    "measure": ("edgemeter.cli.measure_commands:measure",
                "Measure a model's latency on a real backend (median ± spread)."),
    "ir": ("edgemeter.cli.graph_commands:ir", "Import a model and write its graph IR as JSON."),
    "kernels": ("edgemeter.cli.graph_commands:kernels",
                "Split a model into the kernels a runtime executes."),
    "pareto": ("edgemeter.cli.pareto_commands:pareto",
               "Pareto front of per-operator backend assignments (latency vs memory)."),
    "predictors": ("edgemeter.cli.predictor_commands:predictors",
                   "List, inspect, register and unregister latency predictors."),
    "workspace": ("edgemeter.cli.builder_commands:workspace",
                  "Create a predictor-builder workspace (commented YAML configs)."),
    "fusion-test": ("edgemeter.cli.builder_commands:fusion_test",
                    "Find which op pairs a backend fuses; write a fusion rules file."),
    "build": ("edgemeter.cli.builder_commands:build",
              "Build a latency predictor for a backend (resumable, with a time budget)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgemeter")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Predict and measure the latency of deep-learning models on devices and runtimes."""
    ctx.obj = {"debug": debug}


def echo_table(rows: list[tuple[str, ...]], indent: str = "") -> None:
    """Left-aligned columns as wide as their widest cell, the first row the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        code = cli.main(args=argv, prog_name="edgemeter", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("edgemeter: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except EdgemeterError as exc:
        if debug:
            raise
        click.echo(f"edgemeter: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("edgemeter: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # the machine's fault, not the input's: a full disk, a path in the way
        if debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"edgemeter: error: {exc.strerror or exc}{where}", err=True)
        sys.exit(1)
    # Without standalone mode, ctx.exit(n) comes back as a return value.
    if isinstance(code, int) and code:
        sys.exit(code)
