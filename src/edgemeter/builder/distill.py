"""Distillation: one package that predicts as an ensemble does, at the cost of one build.

An ensemble (:mod:`edgemeter.predictor.ensemble`) walks every member's trees for every kernel,
so each prediction costs the sum of its members'. Here each regressor group gets one forest
fitted to the ensemble's own kernel parts (:meth:`~edgemeter.predictor.model.Predictor.
kernel_parts`: group scales and the members' speeds included) on the kernel rows its members
were trained on, and on the kernels of unmeasured zoo variants if given (:func:`zoo_kernels`),
so the package needs no model-term scales of its own. On the Xeon (2026-12-04)
forests of 20 trees fitted to 1.18 (the mean of 1.17 and 1.16) missed ±10 % on as few measured
models as 1.18 does and predicted a graph as fast as a single build (bench/RESULTS.md, "Session
of 22:26"); forests of 10 missed one more of 1,044 predictions on eighteen truths and predicted
a graph 15 % sooner ("Session of 23:50").

The distilled package keeps the first member's anchor, fingerprint and fusion rules, and no
training rows of its own: its rows are its members', which ship beside it; the unmeasured
kernels it was also fitted to are counted in its manifest, not kept.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from edgemeter.builder.train import NOT_FEATURES
from edgemeter.errors import ConfigError
from edgemeter.kernels.detect import Kernel
from edgemeter.predictor.model import Predictor, row_reader
from edgemeter.predictor.package import PredictorPackage, check_name
from edgemeter.predictor.regressors import check_int, make_regressor


def distill(predictor: Predictor, version: str, trees: int = 10, max_depth: int | None = 14,
            seed: int = 0, models: Sequence[Sequence[Kernel]] = ()) -> PredictorPackage:
    """A package named like ``predictor`` (an ensemble, or a single build), version ``version``,
    with a random forest of ``trees`` trees per group that every member covers, fitted to
    ``predictor``'s kernel parts on its members' distinct training rows and on the kernels of
    ``models`` (each a model's kernel list, as :func:`zoo_kernels` gives them).

    ``models`` are models nobody measured, such as zoo variants: ``predictor``'s own
    parts are their targets, so the forest follows it on models like those too. The training
    rows alone are sampled configurations, and between them the forest may stray: fitted to
    1.33 on them alone, 1.34 put 66 of 648 zoo variants more than 2 % from 1.33, a ViT 27 %.

    ``max_depth`` bounds each tree: the targets are an ensemble's smooth predictions, not
    measurements, and the numpy engine walks one level per step. Fitted to 1.18 (ad hoc, 666
    predictions of eleven truths), 14 levels missed ±10 % as rarely as unbounded trees (2 and 3,
    RMSPE 3.78 and 3.77 %) and predicted a graph about 0.07 ms sooner; 12 levels missed 2
    (3.87 %), 10 levels 10, 8 levels 16."""
    check_name("predictor version", version)
    check_int("trees", trees, 1)
    check_int("max_depth", max_depth, 1, allow_none=True)
    if predictor.speed_ratio != 1.0 or predictor.level != 1.0:
        raise ConfigError(f"{predictor.label} is calibrated to another machine speed: distil it "
                          "as loaded, at its own")
    # Members at the predictor's speed: an ensemble's, each put at its first member's.
    members: Sequence[Predictor] = getattr(predictor, "members_at_speed", [predictor])
    counts = {m.model_term.node_count for m in members}
    if len(counts) > 1:
        raise ConfigError(f"{predictor.label}: its members count a model's overhead over "
                          f"different things ({', '.join(sorted(counts))})")
    first = members[0].package
    shared = [g for g in first.regressors if all(g in m.package.regressors for m in members)]
    # Per group, each distinct row (read as the predictor reads kernels) and a kernel of it.
    readers = {group: row_reader(first.feature_names(group)) for group in shared}
    found: dict[str, dict[tuple, Kernel]] = {group: {} for group in shared}
    for group in shared:
        for member in members:
            for row in member.package.training_data.get(group, ()):
                type_ = str(row["type"])  # CSV cells are read as numbers where they parse
                if predictor.group(type_) != group:  # grouped otherwise today
                    continue
                features = {k: v for k, v in row.items()
                            if k not in NOT_FEATURES and v is not None}
                found[group].setdefault(readers[group](features), Kernel(type_, [], features))
    if not any(found.values()):
        raise ConfigError(f"{predictor.label}: no regressor group has training rows in every "
                          "member's package to fit on")
    unmeasured = [kernel for model in models for kernel in model]
    for kernel in unmeasured:
        group = predictor.group(kernel.type)
        if group in found:
            found[group].setdefault(readers[group](kernel.features), kernel)
    fitted = {group: rows for group, rows in found.items() if rows}
    flat = [k for rows in fitted.values() for k in rows.values()]
    targets = iter(predictor.kernel_parts(flat))  # every group's trees in one pass

    regressors = {}
    for group, rows in fitted.items():
        try:
            X = np.array(list(rows), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{predictor.label}: a {group} training row has a feature that "
                              f"is not a number ({exc})") from None
        y = np.fromiter(targets, dtype=np.float64, count=len(rows))
        names = first.feature_names(group)
        regressors[group] = make_regressor("rf", n_estimators=trees, max_depth=max_depth,
                                           random_state=seed).fit(X, y, feature_names=names)

    # Each member's overhead, and fallback rates with its model-term scale, at the predictor's
    # speed (slope 1), averaged.
    term = {"scale": 1.0, "node_count": counts.pop(),
            "per_node_ms": _mean_at_speed([m.model_term.per_node_ms for m in members], members),
            "intercept_ms": _mean_at_speed([m.model_term.intercept_ms for m in members],
                                           members)}
    extra = {**first.extra, "model_term": term, "distilled": {
        "from": predictor.label, "members": [m.version for m in members], "trees": trees,
        "max_depth": max_depth, "rows": {group: len(rows) for group, rows in fitted.items()},
        "unmeasured_kernels": len(unmeasured)}}
    if all("fallback" in m.package.extra for m in members):
        extra["fallback"] = {key: _mean_at_speed([m.package.extra["fallback"][key]
                                                   * m.model_term.scale for m in members],
                                                  members)
                             for key in ("ms_per_gflop", "ms_per_mb", "ms_per_kernel")}
    missing = {**first.missing_kernels,
               **{g: f"not every member of {predictor.label} covers it"
                  for g in first.regressors if g not in shared},
               **{g: f"no member of {predictor.label} carries its training rows"
                  for g in shared if g not in fitted}}
    return PredictorPackage(
        name=first.name, version=version, backend=first.backend, regressors=regressors,
        fusion_rules=first.fusion_rules, runtime_versions=first.runtime_versions,
        fingerprint=first.fingerprint, missing_kernels=missing, extra=extra)


def zoo_kernels(predictor: Predictor, per_family: int, seed: int = 1000,
                progress: bool = False) -> list[list[Kernel]]:
    """The kernels ``predictor`` splits each of ``per_family`` random variants of every zoo
    family into, model by model (built in memory, nothing measured): rows for :func:`distill`
    to fit on beside the training rows; none for ``per_family`` 0. The default seed is the one
    the builds train on, none an evaluation set uses."""
    from tqdm import tqdm

    from edgemeter import zoo

    check_int("per_family", per_family, 0)
    rng = np.random.default_rng(seed)
    models: list[list[Kernel]] = []
    with warnings.catch_warnings(), tqdm(total=per_family * len(zoo.FAMILIES), unit="model",
                                         desc="zoo kernels", disable=not progress) as bar:
        warnings.simplefilter("ignore")  # torch's tracer on the zoo's attention reshapes
        for family in sorted(zoo.FAMILIES):
            for _ in range(per_family):
                module, shape = zoo.build(family, zoo.sample_variant(family, rng))
                models.append(predictor.detect(module, input_shape=list(shape))[1])
                bar.update()
    return models


def _mean_at_speed(values: Sequence[float], members: Sequence[Predictor]) -> float:
    """The mean of each member's ``value`` times its speed ratio."""
    return float(np.mean([v * m.speed_ratio for v, m in zip(values, members)]))
