"""Rebuild the predictors shipped with edgemeter from real measurements on this machine.

    python scripts/build_predictors.py                      # all four, 30 min each
    python scripts/build_predictors.py --only onnxruntime-cpu-1t --budget 45m
    python scripts/build_predictors.py --priors             # regenerate data/priors/ first
    python scripts/build_predictors.py --repack             # every shipped one in today's format
    python scripts/build_predictors.py --repack --only onnxruntime-cpu-1t --version 1.26 \
        --trees 15                               # keep each regressor's first 15 trees
    python scripts/build_predictors.py --only onnxruntime-cpu-1t --version 1.1   # another CPU
    python scripts/build_predictors.py --only openvino-cpu-f32-1t --version 1.1 --retrain
    python scripts/build_predictors.py --only onnxruntime-cpu-1t --version 1.32 --retrain \
        --fresh-configs --workdir D   # a Zen 4 build: D/onnxruntime-cpu-1t is a copy of
                                      # bench/bench_build.py's 30-minute workspace (ws-30m)
    python scripts/build_predictors.py --only onnxruntime-cpu-1t --version 1.15 --retrain \
        --fresh-configs --reference-models 0     # a workspace's trees without the level step
    python scripts/build_predictors.py --only onnxruntime-cpu-1t --version 1.36 \
        --fresh-configs --zoo-seed 2000 --workdir D   # trained on other zoo variants than
                                                      # the default seed's
    python scripts/build_predictors.py --only onnxruntime-cpu-1t --version 1.45 \
        --fresh-configs --zoo-family-weights none --workdir D   # without the target's weight
    python scripts/build_predictors.py --only onnxruntime-cpu-1t --version 1.33 \
        --ensemble 1.26,1.29,1.32                # the mean of builds in the package data
    python scripts/build_predictors.py --only onnxruntime-cpu-1t --version 1.35 \
        --distill 1.33 --distill-zoo 20          # one forest per group fitted to 1.33's kernels
                                                 # and to its kernels of 20 zoo variants a family
    python scripts/build_predictors.py --only onnxruntime-cpu-2t --version 1.6 \
        --port 1.4              # 1.4 at this CPU's speed: reference models measured here

Each CPU a predictor is built on gets its own version: ``find_predictor`` picks, by default, the
newest version built on a machine like the one it runs on.

Each target is an ordinary builder workspace (under --workdir, kept between runs, so an
interrupted rebuild resumes without re-measuring); its package is then written, zipped, to
``src/edgemeter/data/predictors/<name>/<version>.zip`` and ``index.json`` names the default. Run it
on a quiet machine: the predictors are only as good as the timings.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "src" / "edgemeter" / "data" / "predictors"
VERSION = "1.0"  # the default of --version
DEFAULT = "onnxruntime-cpu-1t"

# name -> (backend, threads, backend options)
TARGETS = {
    "onnxruntime-cpu-1t": ("onnxruntime-cpu", 1, {}),
    "onnxruntime-cpu-2t": ("onnxruntime-cpu", 2, {}),
    "openvino-cpu-f32-1t": ("openvino-cpu-f32", 1, {}),
    "litert-xnnpack-1t": ("litert-xnnpack", 1, {}),
}
# Build settings for shipped packages: fewer trees keep the packages under 20 MB (retrained
# with 30 instead of 50, 1.12 scored the same on three Zen 4 truths, 100 % within ±10 % either
# way, with 0.6 of the regressor bytes); the shipped fusion rules (observed in each runtime's
# optimised graph) rather than a re-test, so that shipped predictors and 'edgemeter kernels'
# split models the same way.
SETTINGS = {"trees": 30, "zoo_train_variants": 64, "zoo_eval_variants": 1, "iterations": 10,
            "enabled": False}
# Settings of one target on top of SETTINGS. GhostNet variants stray most from their kernels'
# sum; six of them per round of the others won GhostNet in three pairs of 30-minute Zen 4
# builds, weighted against unweighted (on five fresh truths, 86-90 % of its predictions within
# ±10 % against 67-81 %), and in both pairs on a Xeon VM (2026-12-06). Builds before 2026-12-06
# (1.38 and earlier) had no weight.
TARGET_SETTINGS = {"onnxruntime-cpu-1t": {"zoo_family_weights": {"ghostnet": 6}}}


def build_target(name: str, workdir: Path, budget: str, overwrite_configs: bool,
                 version: str, retrain: bool, overrides: dict[str, Any] | None = None) -> Path:
    """Build ``name`` in ``workdir`` and ship it; ``overrides``: workspace settings that
    differ from SETTINGS and TARGET_SETTINGS (``reference_models``, ``zoo_seed``,
    ``zoo_family_weights``), written with fresh configs."""
    from edgemeter.builder import build, create_workspace, load_workspace
    from edgemeter.builder.workspace import parse_duration

    backend, threads, options = TARGETS[name]
    ws_dir = workdir / name
    keep_configs = (ws_dir / "configs").is_dir() and not overwrite_configs
    if keep_configs and overrides:
        flags = " and ".join("--" + key.replace("_", "-") for key in overrides)
        verb = "changes" if len(overrides) == 1 else "change"
        raise SystemExit(f"{name}: {flags} {verb} the workspace's configs; add "
                         "--fresh-configs (measurements are kept)")
    if not keep_configs:
        create_workspace(ws_dir, backend, overwrite=True, threads=threads, options=options,
                         name=name, version=version, budget=budget,
                         **{**SETTINGS, **TARGET_SETTINGS.get(name, {}), **(overrides or {})})
    ws = load_workspace(ws_dir)
    report = build(ws, parse_duration(budget), retrain=retrain)
    print(f"\n== {name}\n{report.format()}")
    if report.package is None:
        raise SystemExit(f"{name}: the build made no package")
    return ship(report.package, name, version)


def ship(package: Path, name: str, version: str, trees: int | None = None) -> Path:
    """Copy a built package into the shipped predictors as ``<name>/<version>.zip`` (zipped,
    the training CSVs take a third of the room), with each regressor's first ``trees`` trees
    if given."""
    import dataclasses

    from edgemeter.predictor import load_package, save_package

    built = load_package(package)
    if trees is not None:
        built = dataclasses.replace(built, regressors={
            group: regressor.first_trees(trees) for group, regressor in built.regressors.items()})
    if built.version != version:  # a workspace keeps the version of its configs
        raise SystemExit(f"{name}: the workspace builds version {built.version}, not {version} "
                         "(add --fresh-configs to rewrite its configs; measurements are kept)")
    folder, target = SHIPPED / name / version, SHIPPED / name / f"{version}.zip"
    if folder.exists():
        shutil.rmtree(folder)
    # Written beside the target and moved over it: the package may be the shipped zip itself.
    return save_package(built, target, overwrite=True)


def distill_shipped(name: str, source: str, version: str, trees: int | None,
                    zoo_per_family: int) -> Path:
    """Ship ``version`` of ``name`` fitted to the shipped version ``source`` (an ensemble's
    predictions, at the cost of one build: :mod:`edgemeter.builder.distill`), ``trees`` per
    forest (None: distill's default), on its members' training rows and the kernels of
    ``zoo_per_family`` unmeasured zoo variants per family."""
    from edgemeter import load_predictor
    from edgemeter.builder.distill import distill, zoo_kernels
    from edgemeter.predictor import save_package

    predictor = load_predictor(name, source)
    models = zoo_kernels(predictor, zoo_per_family, progress=True)
    options = {} if trees is None else {"trees": trees}
    package = distill(predictor, version, models=models, **options)
    return save_package(package, SHIPPED / name / f"{version}.zip", overwrite=True)


def port_shipped(name: str, source: str, version: str) -> Path:
    """Ship ``version`` of ``name``: the shipped version ``source`` put at this machine's speed
    by reference models and the speed anchor measured here (:mod:`edgemeter.builder.port`)."""
    from edgemeter import load_predictor
    from edgemeter.builder.port import port, summary
    from edgemeter.predictor import save_package

    package = port(load_predictor(name, source), version, progress=True)
    print(f"{name} {source} -> {version}: {summary(package)}")
    return save_package(package, SHIPPED / name / f"{version}.zip", overwrite=True)


def family_weights(text: str) -> dict[str, int]:
    """``--zoo-family-weights``: 'none' or FAMILY=N,..., checked by the workspace setting's own
    check."""
    from edgemeter.builder.workspace import SCHEMA

    weights: dict[str, object] = {}
    if text != "none":
        for item in text.split(","):
            family, _, weight = item.partition("=")
            weights[family] = int(weight) if weight.isdigit() else weight
    try:
        return SCHEMA["build.yaml"]["zoo_family_weights"].check(weights)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected 'none' or FAMILY=N,...: {exc}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(TARGETS), action="append",
                        help="build only these predictors (repeatable)")
    parser.add_argument("--version", default=None,
                        help=f"the package version to build (default {VERSION}) or repack "
                             "(default: every shipped one); one per machine kind")
    parser.add_argument("--budget", default="30m", help="wall-time budget per predictor")
    parser.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "edgemeter-build",
                        help="where the workspaces (and their measurements) live")
    parser.add_argument("--fresh-configs", action="store_true",
                        help="rewrite the workspaces' configs (measurements are kept)")
    parser.add_argument("--priors", action="store_true",
                        help="first recompute src/edgemeter/data/priors/ from the zoo")
    parser.add_argument("--retrain", action="store_true",
                        help="train on what the workspace holds (after a builder change): no "
                             "new zoo models or kernels, only reference-level and held-out "
                             "models it lacks")
    parser.add_argument("--reference-models", type=int, metavar="N",
                        help="with --fresh-configs: reference-level models (0: no level "
                             "step; default: the builder's)")
    parser.add_argument("--zoo-seed", type=int, metavar="S",
                        help="with --fresh-configs: seed of the zoo variants the build trains "
                             "on (default: the builder's, 1000); a member of an ensemble "
                             "trained on other variants than its fellows errs apart from them")
    parser.add_argument("--zoo-family-weights", type=family_weights, metavar="F=N,...|none",
                        help="with --fresh-configs: training variants of these families per "
                             "one of the others' in place of the target's own (TARGET_SETTINGS); "
                             "'none' builds without weights")
    parser.add_argument("--ensemble", metavar="V1,V2,...",
                        help="write --version as the mean of these shipped versions of the "
                             "--only predictor (measure nothing)")
    parser.add_argument("--distill", metavar="V",
                        help="write --version as one package fitted to the predictions of the "
                             "shipped version V of the --only predictor, an ensemble's at a "
                             "single build's cost (measures nothing)")
    parser.add_argument("--distill-zoo", type=int, default=0, metavar="N",
                        help="with --distill: fit also to V's predictions for the kernels of N "
                             "unmeasured zoo variants per family, so the package follows V "
                             "on models like them (default 0)")
    parser.add_argument("--port", metavar="V",
                        help="write --version as the shipped version V of the --only predictor "
                             "at this machine's speed: reference models and the speed anchor "
                             "measured here (minutes), the regressors V's")
    parser.add_argument("--repack", action="store_true",
                        help="measure nothing: write the shipped packages again in the current "
                             "file format (after a format change)")
    parser.add_argument("--trees", type=int, metavar="N",
                        help="with --repack: keep each regressor's first N trees (a smaller "
                             "package, at the accuracy of fewer trees); with --distill: the "
                             "trees of each fitted forest (default 10)")
    args = parser.parse_args()

    if args.priors:
        from edgemeter.builder import sampling
        written = sampling.write_priors(sampling.compute_priors(), sampling.priors_dir())
        print(f"priors: {', '.join(p.name for p in written)}")
    if args.trees is not None and not (args.repack or args.distill):
        raise SystemExit("--trees trims shipped packages or sizes distilled ones: use it with "
                         "--repack or --distill")
    if args.distill_zoo and not args.distill:
        raise SystemExit("--distill-zoo says what --distill fits on: use it with --distill")
    for option in ("ensemble", "distill", "port"):
        if getattr(args, option) and not (args.only and len(args.only) == 1 and args.version):
            raise SystemExit(f"--{option} needs one --only predictor and the --version to write")
    for name in args.only or list(TARGETS):
        if args.port:
            targets = [port_shipped(name, args.port, args.version)]
        elif args.distill:
            targets = [distill_shipped(name, args.distill, args.version, args.trees,
                                       args.distill_zoo)]
        elif args.ensemble:
            from edgemeter.predictor.ensemble import write_ensemble
            targets = [write_ensemble(SHIPPED / name, name, args.version,
                                      args.ensemble.split(","))]
        elif args.repack:
            versions = [args.version] if args.version else sorted(
                p.stem for p in (SHIPPED / name).glob("*.zip"))
            targets = [ship(SHIPPED / name / f"{v}.zip", name, v, args.trees) for v in versions]
        else:
            keys = ("reference_models", "zoo_seed", "zoo_family_weights")
            overrides = {key: getattr(args, key) for key in keys
                         if getattr(args, key) is not None}
            targets = [build_target(name, args.workdir, args.budget, args.fresh_configs,
                                    args.version or VERSION, args.retrain, overrides)]
        for target in targets:
            print(f"shipped: {target} ({target.stat().st_size / 1e6:.1f} MB)")
    (SHIPPED / "index.json").write_text(json.dumps({"default": DEFAULT}, indent=2) + "\n")
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    print(f"shipped predictors: {size / 1e6:.1f} MB in {SHIPPED}")


if __name__ == "__main__":
    from edgemeter.errors import EdgemeterError

    try:
        sys.exit(main())
    except EdgemeterError as exc:  # one line, as the CLI gives it
        sys.exit(f"build_predictors: error: {exc}")
