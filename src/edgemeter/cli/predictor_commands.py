"""``edgemeter predictors list|info|register|unregister|port``: manage installed predictors."""
from __future__ import annotations

import json
from typing import Any

import click

from edgemeter.cli import echo_table

# Shared by every command that loads a predictor by name.
VERSION_OPTION = click.option("--version", "version", metavar="V",
                              help="Predictor version (default: the one built on a machine "
                                   "like this, else the newest).")


@click.group()
def predictors() -> None:
    """List, inspect, register, unregister and port latency predictors."""


@predictors.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(as_json: bool) -> None:
    """List shipped and registered predictors (* marks the default: of the default name, the
    version built on a machine like this one, else the newest)."""
    from edgemeter.errors import ConfigError
    from edgemeter.predictor.registry import find_predictor, list_predictors

    found = list_predictors()
    try:
        chosen = find_predictor().path
    except ConfigError:  # no default shipped, or it is broken: nothing to mark
        chosen = None
    here = {p.path: p.problem is None and not p.machine_differences() for p in found}
    if as_json:
        click.echo(json.dumps([{"name": p.name, "version": p.version, "backend": p.backend,
                                "origin": p.origin, "default": p.path == chosen,
                                "this_machine": here[p.path], "path": str(p.path),
                                "kernels": list(p.kernels), "members": list(p.members),
                                "distilled_from": p.distilled_from, "problem": p.problem}
                               for p in found], indent=2))
        return
    if not found:
        click.echo("No predictors installed. Register one with: edgemeter predictors register PATH")
        return
    rows = [("", "NAME", "VERSION", "BACKEND", "KERNELS", "ORIGIN", "CREATED", "BUILT ON")]
    for p in found:
        version = (f"{p.version} (mean of {', '.join(p.members)})" if p.members else
                   f"{p.version} ({p.distilled_from.removeprefix(p.name + ' ')} distilled)"
                   if p.distilled_from else p.version)
        rows.append(("*" if p.path == chosen else "", p.name, version,
                     p.backend or f"BROKEN: {p.problem}", str(len(p.kernels)) if p.kernels else "",
                     p.origin, p.created[:10],
                     "" if p.problem else "this machine kind" if here[p.path] else "another"))
    echo_table(rows)


@predictors.command()
@click.argument("name")
@VERSION_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def info(name: str, version: str | None, as_json: bool) -> None:
    """Show a predictor's backend, build machine and per-kernel accuracy."""
    from edgemeter.predictor import fingerprint
    from edgemeter.predictor.registry import describe, find_predictor

    manifest = describe(find_predictor(name, version))
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    runtimes = ", ".join(f"{k} {v}" for k, v in manifest["runtime_versions"].items()) or "-"
    built_on = manifest["fingerprint"]
    click.echo(f"{manifest['name']} {manifest['version']}"
               f"{' (default)' if manifest['default'] else ''}\n"
               f"  backend:   {manifest['backend']}\n"
               f"  runtimes:  {runtimes}\n"
               f"  built on:  {built_on.get('cpu_model', '?')}"
               f"{' (' + built_on['cpu_id'] + ')' if built_on.get('cpu_id') else ''}, "
               f"{built_on.get('cpu_count', '?')} CPUs, {manifest['created']}, "
               f"edgemeter {manifest['edgemeter_version']}\n"
               f"  location:  {manifest['path']} ({manifest['origin']})")
    if manifest.get("members"):
        click.echo(f"  members:   {', '.join(manifest['members'])} (their mean; what follows "
                   "is the first's)")
    distilled = manifest.get("extra", {}).get("distilled")
    fitted_rows = {}
    if isinstance(distilled, dict):  # free-form in the manifest: read what is there
        members = distilled.get("members")
        mean = f" (mean of {', '.join(map(str, members))})" if isinstance(members, list) else ""
        depth = distilled.get("max_depth")
        levels = f" of at most {depth} levels" if isinstance(depth, int) else ""
        unmeasured = distilled.get("unmeasured_kernels")
        more = (f" and on {unmeasured} kernels of unmeasured models"
                if isinstance(unmeasured, int) and unmeasured else "")
        click.echo(f"  distilled: from {distilled.get('from', '?')}{mean}, "
                   f"{distilled.get('trees', '?')} trees{levels} per kernel fitted to its "
                   f"predictions on its members' rows{more} (SAMPLES)")
        fitted_rows = distilled.get("rows") if isinstance(distilled.get("rows"), dict) else {}
    ported = manifest.get("extra", {}).get("ported")
    if isinstance(ported, dict) and isinstance(ported.get("level"), dict):
        level = ported["level"].get("median")
        times = f"{level:.3f}x" if isinstance(level, (int, float)) else "?"
        click.echo(f"  ported:    from {ported.get('from', '?')}, its regressors; "
                   f"{ported['level'].get('models', '?')} reference models ran {times} its "
                   "predictions here")
    anchor = manifest.get("extra", {}).get("anchor")
    if isinstance(anchor, dict) and isinstance(anchor.get("anchor_ms"), (int, float)):
        click.echo(f"  anchor:    {anchor['anchor_ms']:.3f} ms at the build's machine speed; "
                   f"{_slope_line(anchor.get('sensitivity'))}")
    rows = [("KERNEL", "ALGO", "SAMPLES", "RMSPE %", "±5 %", "±10 %")]
    for kernel, entry in sorted(manifest["kernels"].items()):
        acc = entry["accuracy"]
        samples = entry.get("samples") or fitted_rows.get(kernel, "")
        rows.append((kernel, entry.get("algo", "?"), str(samples),
                     *(_pct(acc.get(key)) for key in ("rmspe", "within_5", "within_10"))))
    echo_table(rows, indent="  ")
    for kernel, why in sorted(manifest["missing_kernels"].items()):
        click.echo(f"  missing:   {kernel} ({why})")
    for diff in fingerprint.differences(built_on, manifest["runtime_versions"]):
        click.echo(f"  warning:   {diff}")


def _slope_line(sensitivity: Any) -> str:
    """How each model follows the anchor, as the predictor reads it (slope 1 where the manifest
    holds no usable line: ``info`` describes a package, it does not refuse one)."""
    from edgemeter.backends.anchor import Sensitivity

    values = [(sensitivity or {}).get(k) for k in ("per_log_flops", "centre")]
    usable = all(isinstance(v, (int, float)) for v in values)
    return f"models follow it by {Sensitivity(*values) if usable else Sensitivity()}"


@predictors.command("register")
@click.argument("path", type=click.Path(exists=True))
@click.option("--force", is_flag=True, help="Replace a registered predictor of the same version.")
def register_cmd(path: str, force: bool) -> None:
    """Check the predictor package at PATH (folder or .zip) and install a copy."""
    from edgemeter.predictor.registry import register

    info = register(path, overwrite=force)
    click.echo(f"Registered {info.label} ({info.backend}, {len(info.kernels)} kernels) "
               f"in {info.path}")


@predictors.command("unregister")
@click.argument("name")
@VERSION_OPTION
def unregister_cmd(name: str, version: str | None) -> None:
    """Remove a registered predictor (every version unless --version is given)."""
    from edgemeter.predictor.registry import unregister

    for info in unregister(name, version):
        click.echo(f"Unregistered {info.label}")


@predictors.command("port")
@click.argument("name")
@VERSION_OPTION
@click.option("--as", "new_version", required=True, metavar="V",
              help="The version to write for this machine.")
@click.option("--out", required=True, type=click.Path(),
              help="Where to write the package (a folder, or a file ending in .zip).")
@click.option("--rounds", type=click.IntRange(min=1), metavar="N",
              help="Fresh processes per reference model (default 9, as a benchmark truth).")
def port_cmd(name: str, version: str | None, new_version: str, out: str,
             rounds: int | None) -> None:
    """Put a predictor built on another CPU at this machine's speed: measure reference zoo
    models and the speed anchor here (minutes; needs the predictor's runtime and torch) and
    write it as version V with this machine's fingerprint. `predictors register` installs it."""
    from pathlib import Path

    from edgemeter.builder.port import port, summary
    from edgemeter.errors import ConfigError
    from edgemeter.predictor.model import load_predictor
    from edgemeter.predictor.package import save_package

    if Path(out).exists():  # before minutes of measuring, not after
        raise ConfigError(f"{out} already exists: give --out a new path")
    predictor = load_predictor(name, version)
    package = port(predictor, new_version, progress=True,
                   **({} if rounds is None else {"rounds": rounds}))
    path = save_package(package, out)
    click.echo(f"Ported {predictor.label} as {package.name} {package.version}: "
               f"{summary(package)}; written to {path}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
