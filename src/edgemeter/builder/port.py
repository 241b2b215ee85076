"""Porting: a package built on one CPU, put at another's speed by measuring minutes, not
rebuilding.

A package's regressors say how kernels compare with each other on the CPU they were measured
on; its model term and speed anchor say how fast that CPU ran them. On a second Xeon VM (cpu
family 6, model 207, 2026-12-07, seed 19300, two truths) the first Xeon's 2-thread 1.4 ordered
the models as the truths did (90.7 and 85.2 % within ±10 % relative, each truth's median ratio
taken out) while its anchor put 48.1 and 40.7 % within; a 2-thread build made on that VM in 30
minutes put 46.3 % within on both, 48.1 and 46.3 % relative. A port keeps the regressors and
measures what differs: reference models (:func:`~edgemeter.predictor.calibration.measure_level`,
each beside the speed anchor) give the level that scales the model term and the anchor time the
new version's predictions are at, under this machine's fingerprint. Ported there, 1.4 put 90.7
and 81.5 % within with the anchor alone (bench/RESULTS.md, "Session of 14:22").
"""
from __future__ import annotations

import dataclasses
import statistics
from datetime import datetime, timezone
from typing import Any

from edgemeter.errors import ConfigError, EdgemeterError
from edgemeter.predictor.model import ModelTerm, Predictor
from edgemeter.predictor.package import PredictorPackage, check_name

# Fresh processes per reference model: as a benchmark truth measures (LEVEL_ROUNDS' note).
PORT_ROUNDS = 9


def port(predictor: Predictor, version: str, rounds: int = PORT_ROUNDS,
         **options: Any) -> PredictorPackage:
    """``predictor``'s package as ``version`` for this machine: every model-term coefficient
    times the reference models' level measured now (``rounds`` fresh processes each;
    ``options`` as :func:`~edgemeter.predictor.calibration.measure_level` takes them), the
    speed anchor's time beside them as its anchor, this machine's fingerprint and runtime
    versions, and the measurement kept in ``extra["ported"]``. The regressors, fusion rules
    and training rows are the source's."""
    from edgemeter.backends.anchor import ANCHOR_VERSION
    from edgemeter.builder.train import scaled_model_term
    from edgemeter.predictor import fingerprint
    from edgemeter.predictor.calibration import measure_level
    from edgemeter.predictor.ensemble import Ensemble

    check_name("predictor version", version)
    if isinstance(predictor, Ensemble):
        raise ConfigError(f"{predictor.label} is an ensemble: port one package (a distilled "
                          "one predicts as the ensemble does)")
    if predictor.speed_ratio != 1.0 or predictor.level != 1.0:
        raise ConfigError(f"{predictor.label} is calibrated to another machine speed: port it "
                          "as loaded, at its own")
    source = predictor.package
    if version == source.version:
        raise ConfigError(f"{predictor.label}: a port needs a version of its own")
    found = measure_level(predictor, rounds=rounds, anchor=True, **options)
    anchors = [row["anchor_ms"] for row in found["rows"]]
    if not all(isinstance(a, (int, float)) and a > 0 for a in anchors):
        raise EdgemeterError(f"the speed anchor was not timed beside the reference models on "
                             f"{predictor.backend}: nothing to put the port's speed at")
    # The references ran interleaved over the same minutes: the median of the anchor's times
    # beside them goes with the median of their ratios.
    anchor_ms = statistics.median(anchors)
    term = source.extra.get("model_term", dataclasses.asdict(ModelTerm()))
    anchor = source.extra.get("anchor")
    kept = anchor if isinstance(anchor, dict) and anchor.get("version") == ANCHOR_VERSION else {}
    runtimes = list(source.runtime_versions)
    level = {k: found[k] for k in ("models", "median", "error", "quartiles", "spread",
                                   "expected_within_10")}
    return dataclasses.replace(
        source, version=version, fingerprint=fingerprint.current(runtimes),
        runtime_versions=fingerprint.runtime_versions(runtimes),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), source=None,
        extra={**source.extra,
               "model_term": scaled_model_term(term, found["median"]),
               "anchor": {**kept, "version": ANCHOR_VERSION, "anchor_ms": anchor_ms},
               "ported": {"from": predictor.label, "from_fingerprint": source.fingerprint,
                          "rounds": rounds, "level": level,
                          "anchor_ms": [min(anchors), max(anchors)],
                          "rows": found["rows"]}})


def summary(package: PredictorPackage) -> str:
    """What a port measured, in one line (``predictors port`` and the build script print it)."""
    found = package.extra["ported"]["level"]
    return (f"{found['models']} reference models ran {found['median']:.3f}x its predictions "
            f"(±{100 * found['error']:.1f}%, {100 * found['spread']:.1f}% apart), the speed "
            f"anchor {package.extra['anchor']['anchor_ms']:.3f} ms beside them")
