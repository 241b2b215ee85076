"""The level: how much slower than a predictor says this machine runs models now, measured on
reference models.

The speed anchor (:mod:`edgemeter.backends.anchor`) is a sub-millisecond network that runs from
the core's own caches. A host's neighbours slow what leaves them: on a Xeon VM (2026-12-05) the
same 90 zoo models ran 8.4 % slower in median at 04:58 than at 13:41 the day before while the
anchor beside them ran 0.3 % faster (bench/bench_truth_hours.py). Reference models are zoo
variants like the models users predict: one per family of a fixed seed, measured on the
predictor's backend with its settings, and predicted; the median of measured over predicted is
the level (:func:`edgemeter.predictor.metrics.level`), and :meth:`Predictor.leveled
<edgemeter.predictor.model.Predictor.leveled>` multiplies every prediction by it.
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemeter.errors import EdgemeterError

if TYPE_CHECKING:
    from edgemeter.predictor.model import Predictor

# Zoo variants of this seed are the reference models; no build or benchmark draws from it.
REFERENCE_SEED = 20261205
LEVEL_PROTOCOL = {"warmup": 10, "repeats": 20}
# Fresh processes per reference model, a fixed number (adaptive rounds, up to eight, took 70 s
# for the 18 families on the Xeon, 2026-12-05). A level is a median over many models, so by
# default each gets a third of a truth's nine rounds. Nine measure it as a truth does: on the
# Zen 4 truths of 2026-12-05 (seeds 13500-14600, bench/bench_accuracy.py), 1.38 put 97.9 % of
# 1,296 predictions within ±10 % at the level of their nine-round references, 97.5 % with those
# cut to their first three rounds.
LEVEL_ROUNDS = 3
# Beyond this ratio of the anchor's time now to its time at the build, predict --calibrate
# warns (Predictor.speed_caveat). On the Xeon VM's 53 truths with reference models of its four
# packages (2026-12-06 10:01 to 12-07 05:11, bench/bench_anchor_ratio.py), where the anchor ran
# at most 1.15 times its build time it put 96.5 % of predictions within ±10 % and the
# references' level (three rounds, as measured) 94.3 %; above, 79.7 and 90.9 %, the references
# closer for every package. The edge was read off those truths; on the thirteen measured after
# it was chosen (05:36-08:33) it held: 91.5 and 83.7 % at or below it, 84.2 and 93.3 % above.
# Only the slow side was measured: a machine far faster than its build is not warned about.
TRUSTED_ANCHOR_RATIO = 1.15
# The second Xeon's figures time the anchor once, beside the references, as --calibrate does
# (bench_anchor_ratio.py's 'anchor once'; at or below the edge 73.1 and 71.9 % over 16 truths).
SLOW_ANCHOR_EVIDENCE = ("on a Xeon VM (cpu family 6, model 167), over 36 truths where it ran "
                        "above 1.15 times (four packages, 2026-12-06/07), the anchor alone put "
                        "80.7 % of held-out models within ±10 % and the level of reference "
                        "models 91.4 %; on another (cpu family 6, model 207), over 7 such "
                        "truths (2026-12-07), the anchor timed once put 50.0 % and the "
                        "references' level 66.1 %; --calibrate-models (Predictor.leveled) "
                        "measures that level")


def measure_level(predictor: Predictor, families: Sequence[str] | None = None,
                  per_family: int = 1, folder: str | Path | None = None,
                  rounds: int = LEVEL_ROUNDS, progress: bool = False,
                  anchor: bool = False) -> dict[str, Any]:
    """Measure reference models on ``predictor``'s backend now (``per_family`` variants of
    each of ``families``, default all but SSD; generated into ``folder``, default a temporary
    one; each in ``rounds`` fresh processes) and return their
    :func:`~edgemeter.predictor.metrics.level` (measured over predicted) with ``rows``, each
    model's measured and predicted ms and its rounds, and with ``anchor`` the speed anchor's
    time beside it (``anchor_ms``). Needs the backend's runtime, and torch to write the
    models."""
    from edgemeter.backends import Protocol, measure_models
    from edgemeter.dataset.generate import generate
    from edgemeter.predictor.metrics import level

    protocol = Protocol(**LEVEL_PROTOCOL, rounds=rounds, max_rounds=rounds, interleave=True,
                        anchor=anchor)
    with tempfile.TemporaryDirectory(prefix="edgemeter-level-") as scratch:
        where = Path(folder) if folder is not None else Path(scratch)
        entries = generate(where, per_family=per_family, seed=REFERENCE_SEED,
                           families=families, progress=progress)
        paths = [where / e["file"] for e in entries]
        settings = predictor.package.extra.get("backend_settings")
        measured = measure_models(paths, predictor.backend, settings, protocol)
        failed = [m for m in measured if not m.ok]
        if failed:
            raise EdgemeterError(f"cannot measure the reference models on {predictor.backend}: "
                                 f"{Path(failed[0].model).name}: {failed[0].error}")
        # Against the predictions before any level: a new level replaces the old one.
        statistic = predictor.package.extra.get("statistic", "median")
        rows = [{"model": e["file"], "measured_ms": m.latency_ms(statistic),
                 "predicted_ms": p.latency_ms / predictor.level,
                 "rounds": len(m.round_medians_ms),
                 **({"anchor_ms": m.anchor_ms} if anchor else {})}
                for e, m, p in zip(entries, measured, predictor.predict_batch(paths))]
    return {**level([r["measured_ms"] / r["predicted_ms"] for r in rows]), "rows": rows}
